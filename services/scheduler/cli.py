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
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="launch nothing, register nothing: print what one poll would do now",
        ),
    ] = False,
) -> None:
    """Run one poll, as `run` does every interval, and exit: it launches the retrains that are due
    (registering the pipeline template if there is none) and prints what it did as JSON. With
    --dry-run it changes nothing and prints what the poll would do."""
    import time

    from occupancy_mlops.clearml_api import ClearmlApi
    from services.scheduler.app import NO_SERVER
    from services.scheduler.reconcile import Reconciler, StageError

    settings = _settings(config, project=project, queue=queue, tags=tag or None)
    _logging("warning")
    reconciler = Reconciler(ClearmlApi(), settings)
    try:
        if dry_run:
            plan = reconciler.plan()
            typer.echo(json.dumps({"dry_run": True, **asdict(plan)}))
            return
        deadline = time.monotonic() + 2 * settings.register_timeout_seconds
        result = reconciler.poll()
        while result.pending and time.monotonic() < deadline:  # another replica registers the template
            time.sleep(1)
            result = reconciler.poll()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except StageError as exc:  # the server could not be read, or the template not registered
        typer.echo(f"error: the poll failed at {exc}", err=True)
        raise typer.Exit(1) from exc
    except Exception as exc:
        if type(exc).__name__ != "MissingConfigError":
            raise
        typer.echo(f"error: {NO_SERVER}", err=True)
        raise typer.Exit(2) from exc
    result_json = {k: v for k, v in asdict(result).items() if k != "attempts"}
    typer.echo(json.dumps({"template_id": reconciler.template_id, **result_json}))
    if result.errors or result.pending:
        raise typer.Exit(1)
