"""The canary controller's configuration: a YAML file (the chart mounts one) overridden by environment
variables.

Every key has a default; ``OCCUPANCY_CANARY_<KEY>`` (upper case) overrides the file, e.g.
``OCCUPANCY_CANARY_ANALYSIS_INTERVAL_SECONDS=10``. List values from the environment are comma-separated.
A bad file or value fails at start with a message naming the key.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services import settings_loader

ENV_PREFIX = "OCCUPANCY_CANARY_"
CONFIG_ENV = "OCCUPANCY_CANARY_CONFIG"
"""Environment variable naming the YAML file (the ``--config`` option wins over it)."""
ConfigError = settings_loader.ConfigError
REPLACED = ("max_psi", "max_ks")
"""Keys of earlier versions: PSI and KS over the probability bins failed good canaries (issue 11)."""


class CanarySettings(BaseModel):
    """Which model the controller rolls out, in which steps, and how a step is judged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project: str = Field("Occupancy", min_length=1)
    """ClearML project of the model registry (its events live in ``<project>/.registry``)."""
    model_name: str = Field("occupancy-mlp", min_length=1)
    """Registry name of the model (one registry per model name)."""
    service_id: str = ""
    """The clearml-serving service task; empty: the one named ``service_name`` in ``project``."""
    service_name: str = Field("occupancy-serving", min_length=1)
    steps: list[float] = Field(default_factory=lambda: [0.10, 0.25, 0.50, 1.00], min_length=1)
    """Canary traffic share per step, strictly increasing, each in (0, 1]."""
    poll_interval_seconds: float = Field(2.0, gt=0, le=3600)
    """How often the registry is read and serving made to match it."""
    analysis_interval_seconds: float = Field(30.0, ge=1, le=86400)
    """Length of one analysis window; a step is judged this long after it started (or the last analysis),
    over the traffic since then."""
    serving_settle_seconds: float = Field(5.0, ge=0, le=600)
    """Traffic of the first seconds of a step is not judged: inference servers pick a new weight up
    within ``CLEARML_SERVING_POLL_FREQ`` (3 s by default), and until then the arms' shares of the
    traffic differ from the step's, so two arms would be compared over different slices of time."""
    passes_per_step: int = Field(1, ge=1, le=100)
    """Consecutive passing analyses that move the canary to the next step (or promote it after the last)."""
    failure_threshold: int = Field(2, ge=1, le=100)
    """Failed analyses at one step that roll the canary back."""
    prometheus_url: str = Field("http://127.0.0.1:9090", pattern=r"^https?://")
    """Base URL of the Prometheus server that scrapes serving (its HTTP API ``/api/v1/query``)."""
    query_timeout_seconds: float = Field(5.0, gt=0, le=120)
    endpoint: str = Field("occupancy", min_length=1)
    """Public serving endpoint whose metrics are judged (the ``endpoint`` label)."""
    max_error_ratio: float = Field(0.05, ge=0, le=1)
    """The canary fails when its server-error ratio exceeds this ..."""
    error_ratio_margin: float = Field(0.01, ge=0, le=1)
    """... and also the champion's ratio plus this margin (an ailing champion is not the canary's fault)."""
    max_p95_latency_ratio: float = Field(2.0, ge=1)
    """The canary's p95 latency may be at most this many times the champion's ..."""
    p95_latency_slack_ms: float = Field(20.0, ge=0)
    """... plus this absolute slack (sub-millisecond latencies double from noise alone)."""
    max_shift: float = Field(0.1, gt=0, le=1)
    """The canary fails when its predicted probabilities lie further than this from the champion's
    (earth mover's distance of the two histograms, in probability units: 0.1 is ten points on
    average) and further than sampling alone explains."""
    min_requests: int = Field(30, ge=1)
    """Requests each arm needs in the window; below it the analysis is "not enough traffic"."""
    min_labels: int = Field(50, ge=1)
    """Labeled readings (``POST /feedback/``) each arm needs in the window for the accuracy check;
    below it the check is skipped (and says so), never failed."""
    max_accuracy_drop: float = Field(0.02, ge=0, le=1)
    """The canary fails the accuracy check when its accuracy on the labeled readings is below the
    champion's by more than this (0.02: two points) ..."""
    accuracy_alpha: float = Field(0.001, gt=0, le=0.2)
    """... and by more than a one-sided two-proportion test at this significance level allows for
    chance: two arms serving the same model fail with probability ``accuracy_alpha``."""
    host: str = "0.0.0.0"
    port: int = Field(9092, ge=0, le=65535)
    """Port of ``/metrics``, ``/healthz`` and ``/readyz`` (0: a free port)."""
    log_level: str = Field("info", pattern=r"^(debug|info|warning|error)$")

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            old = [key for key in REPLACED if key in data]
            if old:
                raise ValueError(
                    f"{', '.join(old)}: replaced by max_shift (the canary's probabilities against the "
                    "champion's, in probability units; docs/canary.md)"
                )
        return data

    @field_validator("steps")
    @classmethod
    def _steps_increasing(cls, steps: list[float]) -> list[float]:
        if any(not 0 < s <= 1 for s in steps):
            raise ValueError("every step must be a traffic share in (0, 1], e.g. 0.1 for 10 %")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError("steps must be strictly increasing")
        return steps


def load_settings(
    path: Path | None = None, *, environ: Mapping[str, str] | None = None, **overrides: Any
) -> CanarySettings:
    """Defaults ← YAML file (``path`` or ``$OCCUPANCY_CANARY_CONFIG``) ← environment ← ``overrides``."""
    return settings_loader.load(
        CanarySettings, "canary", ENV_PREFIX, CONFIG_ENV, path=path, environ=environ, overrides=overrides
    )
