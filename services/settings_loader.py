"""How every long-running service reads its settings: a YAML file (the chart mounts one), overridden
by ``<PREFIX><KEY>`` environment variables, overridden by command-line options; validated by the
service's pydantic model, unknown keys refused. A bad file or value raises :class:`ConfigError`
naming the key, on one line, which the services turn into exit status 2.

Environment values: lists are comma-separated, mappings are JSON, the rest as typed.
"""

from __future__ import annotations

import json
import os
import reprlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)
MAX_FILE_BYTES = 1 << 20
"""A settings file is a few lines; a bigger one (or ``/dev/zero``) is a mistake, not something to read."""

_short = reprlib.Repr()
_short.maxlevel, _short.maxlist, _short.maxdict, _short.maxstring, _short.maxother = 2, 4, 4, 60, 60


class ConfigError(ValueError):
    """A configuration problem, worded for the person who wrote the configuration (one line)."""


def one_line(text: str) -> str:
    return " ".join(text.split())


def short_repr(value: Any) -> str:
    """``repr`` of a setting's value, bounded (a YAML alias bomb or a long string stays short)."""
    return _short.repr(value)


class _SettingsLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a setting given twice (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key (a list or mapping): named by the caller
                continue
            if first != key_node.start_mark.line + 1:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"setting {key!r} is given twice (lines {first} and {key_node.start_mark.line + 1})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"{exc.problem or exc.context}{where}"
    return str(exc)


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
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ConfigError(f"{key}: not UTF-8 text (byte {exc.start} of the value)") from None
        annotation = str(fields[name].annotation)
        if annotation.startswith("list"):
            values[name] = [part.strip() for part in raw.split(",") if part.strip()]
        elif annotation.startswith("dict"):
            try:
                values[name] = json.loads(raw)
            except (json.JSONDecodeError, RecursionError) as exc:
                raise ConfigError(f"{key}: not a JSON object ({one_line(str(exc))[:200]})") from None
        else:
            values[name] = raw
    return values


def from_file(path: Path) -> dict[str, Any]:
    """The mapping a YAML file holds (empty file: no settings)."""
    what = f"configuration file {path}"
    try:
        if not path.exists():
            raise ConfigError(f"{what} does not exist")
        if path.is_dir():
            raise ConfigError(f"{what} is a directory, not a YAML file")
        if not path.is_file():
            raise ConfigError(f"{what} is not a regular file")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ConfigError(f"{what} is larger than {MAX_FILE_BYTES // 1024} KiB: not a settings file")
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} cannot be read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{what} is not UTF-8 text (byte {exc.start}, line {line})") from None
    try:
        loaded = yaml.load(text, Loader=_SettingsLoader)  # a SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} is not valid YAML: {one_line(_yaml_problem(exc))}") from None
    except RecursionError:
        raise ConfigError(f"{what} is not valid YAML: nested too deeply") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{what} must hold a mapping of settings, not {type(loaded).__name__}")
    for key in loaded:
        if not isinstance(key, str):
            raise ConfigError(
                f"{what}: setting names are text, not {short_repr(key)} ({type(key).__name__}); "
                "quote it if you meant a name"
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
    from_environment = from_env(model, environ, prefix, config_env)
    values.update(from_environment)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    values.update(given)
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
                continue
            origin = ""
            top = str(err["loc"][0]) if err["loc"] else ""
            if top in from_environment and top not in given:
                origin = f" from {prefix}{top.upper()}"
            problems.append(f"{key}: {err['msg']} (got {short_repr(err.get('input'))}{origin})")
        raise ConfigError(one_line(f"bad {what} configuration{source}: " + "; ".join(problems))) from None
