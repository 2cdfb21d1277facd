"""The scheduler's configuration: a YAML file (the chart mounts one) overridden by environment variables.

Every key has a default; ``OCCUPANCY_SCHEDULER_<KEY>`` (upper case) overrides the file, e.g.
``OCCUPANCY_SCHEDULER_POLL_INTERVAL_SECONDS=2``. List values from the environment are comma-separated,
mappings are JSON. A bad file or value fails at start with a message naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services import settings_loader

ENV_PREFIX = "OCCUPANCY_SCHEDULER_"
CONFIG_ENV = "OCCUPANCY_SCHEDULER_CONFIG"
"""Environment variable naming the YAML file (the ``--config`` option wins over it)."""
ConfigError = settings_loader.ConfigError


class SchedulerSettings(BaseModel):
    """What the scheduler watches, what it launches, and how often."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project: str = Field("Occupancy", min_length=1)
    """ClearML project whose datasets are watched (every dataset name in it, also ones created later)."""
    tags: list[str] = Field(default_factory=lambda: ["Production"], min_length=1)
    """A dataset version is launched when it carries all of these tags."""
    queue: str = Field("services", min_length=1)
    """Queue the cloned pipeline controller is sent to (its steps go to the template's own queue)."""
    template_id: str = ""
    """Task to clone per version; empty: the newest task tagged ``template_tag`` in ``project``."""
    template_tag: str = Field("retrain-template", min_length=1)
    steps_queue: str = Field("training", min_length=1)
    """When no template exists yet, one is registered whose steps run on this queue."""
    register_template: bool = True
    """Register the pipeline template when none is found (otherwise: fail at start)."""
    dataset_parameter: str = Field("Args/dataset_id", pattern=r"^[^/]+/.+$")
    """Parameter of the template that receives the dataset version id (``section/name``)."""
    parameters: dict[str, str] = Field(default_factory=dict)
    """Further parameters set on every launched run, e.g. ``{"Args/eval_dataset_id": "..."}``."""
    poll_interval_seconds: float = Field(3.0, gt=0, le=3600)
    lookback_hours: float = Field(168.0, gt=0)
    """Versions whose last update is older than this are not considered (bounds every poll)."""
    max_versions_per_poll: int = Field(200, ge=1, le=10_000)
    """Newest versions considered per poll (one page of one query)."""
    claim_grace_seconds: float = Field(10.0, ge=0)
    """A draft run left by a scheduler that died before enqueuing it is enqueued after this long."""
    host: str = "0.0.0.0"
    port: int = Field(9090, ge=0, le=65535)
    """Port of ``/metrics``, ``/healthz`` and ``/readyz`` (0: a free port)."""
    log_level: str = Field("info", pattern=r"^(debug|info|warning|error)$")

    @field_validator("tags")
    @classmethod
    def _tags_not_blank(cls, tags: list[str]) -> list[str]:
        if any(not t.strip() for t in tags):
            raise ValueError("tags must not be blank")
        return tags


def load_settings(
    path: Path | None = None, *, environ: Mapping[str, str] | None = None, **overrides: Any
) -> SchedulerSettings:
    """Defaults ← YAML file (``path`` or ``$OCCUPANCY_SCHEDULER_CONFIG``) ← environment ← ``overrides``."""
    return settings_loader.load(
        SchedulerSettings, "scheduler", ENV_PREFIX, CONFIG_ENV, path, environ, overrides
    )
