"""``occupancy-mlops scheduler ...`` (and ``python -m services.scheduler ...``)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from services.scheduler.settings import ConfigError, SchedulerSettings, load_settings

scheduler_app = typer.Typer(
    help="The trigger scheduler: one retraining pipeline per tagged dataset version, exactly once.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="YAML settings file (default: $OCCUPANCY_SCHEDULER_CONFIG)"),
]
ProjectOption = Annotated[str | None, typer.Option(help="ClearML project whose datasets are watched")]
QueueOption = Annotated[str | None, typer.Option(help="queue the launched pipeline controllers go to")]
TagOption = Annotated[list[str] | None, typer.Option("--tag", help="tag a version needs (repeat)")]


def _settings(config: Path | None, **overrides: Any) -> SchedulerSettings:
    try:
        return load_settings(config, **overrides)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("clearml").setLevel(logging.WARNING)


@scheduler_app.command()
def run(
    config: ConfigOption = None,
    project: ProjectOption = None,
    queue: QueueOption = None,
    tag: TagOption = None,
    poll_interval: Annotated[float | None, typer.Option(help="seconds between polls")] = None,
    port: Annotated[int | None, typer.Option(help="port of /metrics, /healthz, /readyz")] = None,
) -> None:
    """Watch for tagged dataset versions and launch a retrain for each, until SIGTERM."""
    from services.scheduler.app import serve

    settings = _settings(
        config, project=project, queue=queue, tags=tag or None, poll_interval_seconds=poll_interval, port=port
    )
    _logging(settings.log_level)
    try:
        serve(settings)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@scheduler_app.command()
def once(
    config: ConfigOption = None,
    project: ProjectOption = None,
    queue: QueueOption = None,
    tag: TagOption = None,
) -> None:
    """Run one poll and print what it did as JSON (for a cron job, or to see what `run` would do)."""
    from services.scheduler.api import ApiCallError
    from services.scheduler.app import build_loop

    settings = _settings(config, project=project, queue=queue, tags=tag or None)
    _logging("warning")
    try:
        loop = build_loop(settings)
        result = loop.reconciler.poll()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except ApiCallError as exc:
        typer.echo(f"error: cannot read the ClearML server: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps({"template_id": loop.reconciler.template_id, **asdict(result)}))
    if result.errors:
        raise typer.Exit(1)
