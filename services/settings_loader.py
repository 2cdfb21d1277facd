"""How every long-running service reads its settings: a YAML file (the chart mounts one), overridden
by ``<PREFIX><KEY>`` environment variables, overridden by command-line options; validated by the
service's pydantic model, unknown keys refused. A bad file or value raises :class:`ConfigError`
naming the key, which the services turn into exit status 2.

Environment values: lists are comma-separated, mappings are JSON, the rest as typed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration problem, worded for the person who wrote the configuration."""


def from_env(
    model: type[BaseModel], environ: Mapping[str, str], prefix: str, config_env: str
) -> dict[str, Any]:
    """The settings named by ``<prefix><KEY>`` variables (``config_env`` names the file, not a key)."""
    values: dict[str, Any] = {}
    fields = model.model_fields
    for key, raw in environ.items():
        if not key.startswith(prefix) or key == config_env:
            continue
        name = key[len(prefix) :].lower()
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


def from_file(path: Path) -> dict[str, Any]:
    """The mapping a YAML file holds (empty file: no settings)."""
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


def load(
    model: type[Model],
    what: str,
    prefix: str,
    config_env: str,
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Model:
    """Defaults ← YAML file (``path`` or ``$<config_env>``) ← environment ← ``overrides`` (None
    values ignored); ``what`` names the service in errors ("scheduler", "canary")."""
    environ = os.environ if environ is None else environ
    if path is None and environ.get(config_env):
        path = Path(environ[config_env])
    values: dict[str, Any] = from_file(path) if path else {}
    values.update(from_env(model, environ, prefix, config_env))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    source = f" in {path}" if path else ""
    try:
        return model(**values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(root)"
            if err["type"] == "extra_forbidden":
                known = ", ".join(sorted(model.model_fields))
                problems.append(f"{key}: unknown setting (known: {known})")
            else:
                problems.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError(f"bad {what} configuration{source}: " + "; ".join(problems)) from None
