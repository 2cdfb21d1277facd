"""``occupancy-mlops canary ...`` (and ``python -m services.canary ...``).

``run`` is the controller; ``status`` reads the model registry; ``promote``, ``rollback``, ``pause`` and
``resume`` are registry transitions made by a person (reason ``manual: ...``): the running controller
sees them on its next pass and serving follows.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from services.canary.settings import CanarySettings, ConfigError, load_settings

if TYPE_CHECKING:
    from training.registry import ModelRegistry, RegistryState

canary_app = typer.Typer(
    help="The canary controller: new models rolled out in steps, promoted or rolled back on live metrics.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="YAML settings file (default: $OCCUPANCY_CANARY_CONFIG)"),
]
ProjectOption = Annotated[str | None, typer.Option(help="ClearML project of the model registry")]
ModelNameOption = Annotated[str | None, typer.Option(help="registry name of the model")]
ReasonOption = Annotated[str, typer.Option(help="why (recorded as 'manual: REASON')")]
ModelOption = Annotated[str | None, typer.Option("--model", help="model id (default: the current canary)")]


def _settings(config: Path | None, **overrides: Any) -> CanarySettings:
    try:
        return load_settings(config, **overrides)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("clearml").setLevel(logging.WARNING)


PrometheusOption = Annotated[str | None, typer.Option(help="Prometheus base URL")]
ServiceOption = Annotated[str | None, typer.Option(help="clearml-serving service task id")]


@canary_app.command()
def run(
    config: ConfigOption = None,
    project: ProjectOption = None,
    model_name: ModelNameOption = None,
    prometheus_url: PrometheusOption = None,
    service_id: ServiceOption = None,
    port: Annotated[int | None, typer.Option(help="port of /metrics, /healthz, /readyz")] = None,
) -> None:
    """Roll out new candidates as canaries and promote or roll them back, until SIGTERM."""
    from services.canary.app import serve

    settings = _settings(
        config,
        project=project,
        model_name=model_name,
        prometheus_url=prometheus_url,
        service_id=service_id,
        port=port,
    )
    _logging(settings.log_level)
    try:
        serve(settings)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@canary_app.command()
def once(
    config: ConfigOption = None,
    project: ProjectOption = None,
    model_name: ModelNameOption = None,
    prometheus_url: PrometheusOption = None,
    service_id: ServiceOption = None,
) -> None:
    """Run one pass and print what it did as JSON (to see what `run` would do)."""
    from services.canary.app import build_reconciler

    settings = _settings(
        config, project=project, model_name=model_name, prometheus_url=prometheus_url, service_id=service_id
    )
    _logging("warning")
    try:
        result = build_reconciler(settings).poll()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except Exception as exc:
        typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(asdict(result)))
    if result.errors:
        raise typer.Exit(1)


def _registry(settings: CanarySettings) -> ModelRegistry:
    from training.registry import ModelRegistry

    return ModelRegistry(settings.project, settings.model_name)


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def status_rows(state: RegistryState) -> list[tuple[str, str, str, str]]:
    """(version, model id, state, detail) per model, newest version first."""
    rows = []
    for model_id, name in state.states.items():
        version = state.versions.get(model_id)
        detail = state.reasons.get(model_id, "")
        if state.canary is not None and state.canary.model_id == model_id:
            c = state.canary
            detail = (
                f"step {c.step + 1} at {c.weight:.0%}, passes {c.passes}, failures {c.failures}"
                + (", PAUSED" if c.paused else "")
                + f"; since {_when(c.step_started_at)}; {c.last_reason}"
            )
        rows.append((str(version) if version is not None else "-", model_id, name, detail))
    rows.sort(key=lambda r: -int(r[0]) if r[0].isdigit() else 0)
    return rows


@canary_app.command()
def status(
    config: ConfigOption = None,
    project: ProjectOption = None,
    model_name: ModelNameOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="the registry state as JSON")] = False,
) -> None:
    """The model registry: champion, canary (step, weight, analyses), candidates, history of states."""
    from rich.console import Console
    from rich.table import Table

    settings = _settings(config, project=project, model_name=model_name)
    _logging("warning")
    state = _call(lambda: _registry(settings).read())
    if as_json:
        typer.echo(state.to_json())
        return
    if not state.states:
        typer.echo(f"no {settings.model_name} models in the registry of {settings.project!r} yet")
        return
    table = Table(
        title=f"{settings.model_name} in {settings.project} (registry generation {state.generation}, "
        f"updated {_when(state.updated_at)})",
        title_justify="left",
    )
    for column in ("version", "model", "state", "detail"):
        table.add_column(column, overflow="fold")
    for row in status_rows(state):
        table.add_row(*row)
    Console(width=160).print(table)


def _call(fn: Any) -> Any:
    from training.registry import RegistryError, TransitionRefused

    try:
        return fn()
    except TransitionRefused as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(1) from exc
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


def _target(registry: ModelRegistry, model: str | None) -> tuple[str, RegistryState]:
    state: RegistryState = _call(registry.read)
    if model:
        return model, state
    if state.canary is None:
        typer.echo("refused: no canary is running (name a model with --model)", err=True)
        raise typer.Exit(1)
    return state.canary.model_id, state


def _report(state: RegistryState, model_id: str) -> None:
    version = state.versions.get(model_id, "-")
    now = state.states.get(model_id)
    typer.echo(f"model {model_id} (version {version}) is {now}: {state.reasons.get(model_id, '')}")


@canary_app.command()
def promote(
    reason: ReasonOption,
    model: ModelOption = None,
    config: ConfigOption = None,
    project: ProjectOption = None,
    model_name: ModelNameOption = None,
) -> None:
    """Promote the canary to champion now (the champion becomes a former champion)."""
    registry = _registry(_settings(config, project=project, model_name=model_name))
    model_id, _ = _target(registry, model)
    _report(_call(lambda: registry.promote(model_id, f"manual: {reason}")), model_id)


@canary_app.command()
def rollback(
    reason: ReasonOption,
    model: ModelOption = None,
    config: ConfigOption = None,
    project: ProjectOption = None,
    model_name: ModelNameOption = None,
) -> None:
    """Roll the canary (or a waiting candidate, with --model) back; serving keeps the champion.
    With --model naming the champion (no canary running): the former champion serves again."""
    registry = _registry(_settings(config, project=project, model_name=model_name))
    model_id, _ = _target(registry, model)
    _report(_call(lambda: registry.rollback(model_id, f"manual: {reason}")), model_id)


def _set_paused(
    paused: bool, reason: str, config: Path | None, project: str | None, model_name: str | None
) -> None:
    registry = _registry(_settings(config, project=project, model_name=model_name))
    model_id, _ = _target(registry, None)
    state = _call(lambda: registry.update_canary(model_id, paused=paused, last_reason=f"manual: {reason}"))
    canary = state.canary
    word = "paused" if paused else "resumed"
    weight = f" at {canary.weight:.0%}" if canary else ""
    typer.echo(f"canary {model_id} {word}{weight}: manual: {reason}")


@canary_app.command()
def pause(
    reason: ReasonOption,
    config: ConfigOption = None,
    project: ProjectOption = None,
    model_name: ModelNameOption = None,
) -> None:
    """Hold the canary at its weight: no analysis, no step, until resume."""
    _set_paused(True, reason, config, project, model_name)


@canary_app.command()
def resume(
    reason: ReasonOption,
    config: ConfigOption = None,
    project: ProjectOption = None,
    model_name: ModelNameOption = None,
) -> None:
    """Let a paused canary be judged again (the next analysis one interval from now)."""
    _set_paused(False, reason, config, project, model_name)
