"""The scheduler's configuration: a YAML file (the chart mounts one) overridden by environment variables.

Every key has a default; ``OCCUPANCY_SCHEDULER_<KEY>`` (upper case) overrides the file, e.g.
``OCCUPANCY_SCHEDULER_POLL_INTERVAL_SECONDS=2``. List values from the environment are comma-separated,
mappings are JSON. A bad file or value fails at start with a message naming the key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV_PREFIX = "OCCUPANCY_SCHEDULER_"
CONFIG_ENV = "OCCUPANCY_SCHEDULER_CONFIG"
"""Environment variable naming the YAML file (the ``--config`` option wins over it)."""


class ConfigError(ValueError):
    """A configuration problem, worded for the person who wrote the configuration."""


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


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    fields = SchedulerSettings.model_fields
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or key == CONFIG_ENV:
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name not in fields:
            raise ConfigError(f"{key}: unknown setting {name!r} (known: {', '.join(sorted(fields))})")
        annotation = str(fields[name].annotation)
        if annotation.startswith("list"):
            values[name] = [part.strip() for part in raw.split(",") if part.strip()]
        elif annotation.startswith("dict"):
            try:
                values[name] = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{key}: not a JSON object ({exc})") from exc
        else:
            values[name] = raw
    return values


def _from_file(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"configuration file {path} is not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"configuration file {path} must hold a mapping of settings, not {type(loaded).__name__}"
        )
    return loaded


def load_settings(
    path: Path | None = None, *, environ: Mapping[str, str] | None = None, **overrides: Any
) -> SchedulerSettings:
    """Defaults ← YAML file (``path`` or ``$OCCUPANCY_SCHEDULER_CONFIG``) ← environment ← ``overrides``."""
    environ = os.environ if environ is None else environ
    if path is None and environ.get(CONFIG_ENV):
        path = Path(environ[CONFIG_ENV])
    values: dict[str, Any] = _from_file(path) if path else {}
    values.update(_from_env(environ))
    values.update({k: v for k, v in overrides.items() if v is not None})
    source = f" in {path}" if path else ""
    try:
        return SchedulerSettings(**values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(root)"
            if err["type"] == "extra_forbidden":
                known = ", ".join(sorted(SchedulerSettings.model_fields))
                problems.append(f"{key}: unknown setting (known: {known})")
            else:
                problems.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError(f"bad scheduler configuration{source}: " + "; ".join(problems)) from None
