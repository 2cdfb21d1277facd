"""The autoscaler's configuration: a YAML file (the chart mounts one) overridden by environment
variables ``OCCUPANCY_AUTOSCALER_<KEY>``; unknown keys and bad values are refused, naming the key.

```yaml
namespace: mlops
pools:
  - queue: training            # the ClearML queue the pool's agents serve
    deployment: agents-training
    min_replicas: 0
    max_replicas: 4
    tasks_per_replica: 1
```
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services import settings_loader

ENV_PREFIX = "OCCUPANCY_AUTOSCALER_"
CONFIG_ENV = "OCCUPANCY_AUTOSCALER_CONFIG"
ConfigError = settings_loader.ConfigError
NAME = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
"""A Kubernetes object name (RFC 1123 label)."""


class PoolSettings(BaseModel):
    """One agent pool: a Deployment of clearml-agent daemons serving one queue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue: str = Field(min_length=1, max_length=200)
    deployment: str = Field(pattern=NAME)
    min_replicas: int = Field(0, ge=0, le=1000)
    max_replicas: int = Field(4, ge=1, le=1000)
    tasks_per_replica: int = Field(1, ge=1, le=100)
    """Tasks one agent runs at a time (1 for ``clearml-agent daemon`` without ``--services-mode``)."""

    @model_validator(mode="after")
    def _bounds(self) -> PoolSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} is above max_replicas {self.max_replicas}")
        return self


class AutoscalerSettings(BaseModel):
    """Which pools to scale, how often, and how cautiously."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = Field("default", pattern=NAME)
    """Namespace of the pools' Deployments (the chart sets the release's)."""
    pools: list[PoolSettings] = Field(default_factory=list, max_length=50)
    poll_interval_seconds: float = Field(10.0, gt=0, le=3600)
    scale_down_cooldown_seconds: float = Field(300.0, ge=0, le=86400)
    """A pool is scaled down only this long after its last scale change (up or down): agents that
    just finished a task often get the next one within minutes."""
    dry_run: bool = False
    """Decide and export the decisions, change nothing in the cluster."""
    host: str = "0.0.0.0"
    port: int = Field(9093, ge=0, le=65535)
    """Port of ``/metrics``, ``/healthz`` and ``/readyz`` (0: a free port)."""
    log_level: str = Field("info", pattern=r"^(debug|info|warning|error)$")

    @model_validator(mode="after")
    def _unique(self) -> AutoscalerSettings:
        for key in ("queue", "deployment"):
            names = [getattr(p, key) for p in self.pools]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"pools: {key} {', '.join(twice)} appears in more than one pool")
        return self


def load_settings(
    path: Path | None = None, *, environ: Mapping[str, str] | None = None, **overrides: Any
) -> AutoscalerSettings:
    """Defaults ← YAML file (``path`` or ``$OCCUPANCY_AUTOSCALER_CONFIG``) ← environment ← ``overrides``."""
    return settings_loader.load(
        AutoscalerSettings,
        "autoscaler",
        ENV_PREFIX,
        CONFIG_ENV,
        path=path,
        environ=environ,
        overrides=overrides,
    )
