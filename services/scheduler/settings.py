"""The scheduler's configuration: a YAML file (the chart mounts one) overridden by environment variables.

Every key has a default; ``OCCUPANCY_SCHEDULER_<KEY>`` (upper case) overrides the file, e.g.
``OCCUPANCY_SCHEDULER_POLL_INTERVAL_SECONDS=2``. List values from the environment are comma-separated,
mappings are JSON. A bad file or value fails at start with one line naming the key: wrong types
(``true`` is not a number), values out of bounds, non-finite numbers (``.inf``, ``.nan``), control
characters, tags the server would read as query operators, ``parameters`` keys that are not
``section/name``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from services import settings_loader

ENV_PREFIX = "OCCUPANCY_SCHEDULER_"
CONFIG_ENV = "OCCUPANCY_SCHEDULER_CONFIG"
"""Environment variable naming the YAML file (the ``--config`` option wins over it)."""
ConfigError = settings_loader.ConfigError
PARAMETER = r"^[^/\s]([^/]*[^/\s])?/\S(.*\S)?$"
"""A task parameter: ``section/name``, e.g. ``Args/dataset_id`` (no spaces around either part)."""
NUMBERS = (
    "poll_interval_seconds",
    "lookback_hours",
    "max_versions_per_poll",
    "claim_grace_seconds",
    "port",
    "unready_after_failures",
    "register_timeout_seconds",
)


class SchedulerSettings(BaseModel):
    """What the scheduler watches, what it launches, and how often."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    project: str = Field("Occupancy", min_length=1, max_length=200)
    """ClearML project whose datasets are watched (every dataset name in it, also ones created later)."""
    tags: list[str] = Field(default_factory=lambda: ["Production"], min_length=1, max_length=20)
    """A dataset version is launched when it carries all of these tags."""
    queue: str = Field("services", min_length=1, max_length=200)
    """Queue the cloned pipeline controller is sent to (its steps go to the template's own queue)."""
    template_id: str = Field("", pattern=r"^([0-9a-f]{32})?$")
    """Task to clone per version; empty: the newest task tagged ``template_tag`` in ``project``."""
    template_tag: str = Field("retrain-template", min_length=1, max_length=200)
    steps_queue: str = Field("training", min_length=1, max_length=200)
    """When no template exists yet, one is registered whose steps run on this queue."""
    register_template: bool = True
    """Register the pipeline template when none is found (otherwise: fail at start)."""
    register_timeout_seconds: float = Field(120.0, ge=1, le=3600)
    """Registering the template (a child process) is killed after this long and retried on the next
    poll; another replica takes over a registration lock twice this old."""
    dataset_parameter: str = Field("Args/dataset_id", max_length=200)
    """Parameter of the template that receives the dataset version id (``section/name``)."""
    parameters: dict[str, str] = Field(default_factory=dict, max_length=100)
    """Further parameters set on every launched run, e.g. ``{"Args/eval_dataset_id": "..."}``."""
    poll_interval_seconds: float = Field(3.0, ge=0.1, le=3600)
    lookback_hours: float = Field(168.0, gt=0, le=87600)
    """Versions whose last update is older than this are not considered (bounds every poll; at most
    ten years)."""
    max_versions_per_poll: int = Field(200, ge=1, le=10_000)
    """Newest versions considered per poll (one page of one query)."""
    claim_grace_seconds: float = Field(10.0, ge=0, le=86400)
    """A draft run left by a scheduler that died before enqueuing it is enqueued after this long."""
    unready_after_failures: int = Field(3, ge=1, le=1000)
    """``/readyz`` answers 503 after this many polls in a row failed, or launches in a row failed."""
    host: str = Field("0.0.0.0", min_length=1, max_length=255, pattern=r"^[^\s/]+$")
    port: int = Field(9090, ge=0, le=65535)
    """Port of ``/metrics``, ``/healthz`` and ``/readyz`` (0: a free port)."""
    log_level: str = Field("info", pattern=r"^(debug|info|warning|error)$")

    @field_validator(*NUMBERS, mode="before")
    @classmethod
    def _not_a_boolean(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("a number is needed, not true/false")
        return value

    @field_validator("project", "queue", "steps_queue", "template_tag", "host", "dataset_parameter")
    @classmethod
    def _printable(cls, value: str) -> str:
        _check_text(value)
        return value

    @field_validator("dataset_parameter")
    @classmethod
    def _section_name(cls, value: str) -> str:
        if not re.fullmatch(PARAMETER, value):
            raise ValueError(f"parameter {value!r} is not section/name, e.g. Args/dataset_id")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str]) -> list[str]:
        for tag in tags:
            _check_tag(tag)
        return tags

    @field_validator("template_tag")
    @classmethod
    def _template_tag(cls, tag: str) -> str:
        _check_tag(tag)
        return tag

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, parameters: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        for key, value in parameters.items():
            _check_text(key, what=f"parameter {key!r}")
            if not re.fullmatch(PARAMETER, key) or len(key) > 200:
                raise ValueError(f"parameter {key!r} is not section/name, e.g. Args/eval_dataset_id")
            _check_text(value, what=f"the value of {key}")
            if key == info.data.get("dataset_parameter"):
                raise ValueError(
                    f"{key!r} is the dataset_parameter, which receives the version id of each run"
                )
        return parameters


def _check_text(value: str, what: str = "the value") -> None:
    for i, char in enumerate(value):
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise ValueError(f"{what} holds a control character or invalid text at position {i}")


def _check_tag(tag: str) -> None:
    _check_text(tag)
    if not tag.strip():
        raise ValueError("tags must not be blank")
    if tag != tag.strip():
        raise ValueError(f"tag {tag!r} starts or ends with spaces")
    if tag.startswith(("-", "__$")):
        raise ValueError(f"tag {tag!r} starts with '-' or '__$', which ClearML reads as a query operator")


def load_settings(
    path: Path | None = None, *, environ: Mapping[str, str] | None = None, **overrides: Any
) -> SchedulerSettings:
    """Defaults ← YAML file (``path`` or ``$OCCUPANCY_SCHEDULER_CONFIG``) ← environment ← ``overrides``."""
    return settings_loader.load(
        SchedulerSettings, "scheduler", ENV_PREFIX, CONFIG_ENV, path, environ, overrides
    )
