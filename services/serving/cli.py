"""``occupancy-mlops serving ...`` (and ``python -m services.serving ...``)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from services.serving.launcher import DEFAULT_POLL_MINUTES, DEFAULT_PORT

serving_app = typer.Typer(
    help="The occupancy endpoint on clearml-serving: set up the service, run the inference server.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

DEFAULT_PROJECT = "Occupancy"
DEFAULT_NAME = "occupancy-serving"
ProjectOption = Annotated[str, typer.Option(help="ClearML project of the serving service")]
NameOption = Annotated[str, typer.Option(help="name of the serving service task")]
ServiceOption = Annotated[
    str | None,
    typer.Option(
        "--service-id", help="serving service task id (default: $CLEARML_SERVING_TASK_ID, else by name)"
    ),
]


def _quiet() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("clearml").setLevel(logging.WARNING)


def _resolve(service_id: str | None, project: str, name: str) -> str:
    from services.serving.deploy import find_service

    found = service_id or os.environ.get("CLEARML_SERVING_TASK_ID") or find_service(project, name)
    if not found:
        typer.echo(
            f"error: no serving service {name!r} in project {project!r}: run `occupancy-mlops serving setup` "
            "or pass --service-id",
            err=True,
        )
        raise typer.Exit(2)
    return found


@serving_app.command()
def setup(project: ProjectOption = DEFAULT_PROJECT, name: NameOption = DEFAULT_NAME) -> None:
    """Find or create the serving service task and upload the endpoint code (idempotent); prints its id."""
    from services.serving.deploy import ensure_service

    _quiet()
    service_id = ensure_service(project, name)
    typer.echo(json.dumps({"service_id": service_id, "project": project, "name": name}))


@serving_app.command()
def run(
    service_id: ServiceOption = None,
    project: ProjectOption = DEFAULT_PROJECT,
    name: NameOption = DEFAULT_NAME,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="port of /serve, /metrics, /healthz, /readyz")
    ] = (DEFAULT_PORT),
    workers: Annotated[int, typer.Option(min=1, max=64, help="uvicorn worker processes")] = 1,
    poll_minutes: Annotated[
        float,
        typer.Option(
            min=0.001, help="minutes between serving configuration polls (CLEARML_SERVING_POLL_FREQ)"
        ),
    ] = DEFAULT_POLL_MINUTES,
    metrics_dir: Annotated[
        Path | None,
        typer.Option(help="folder for multiprocess metrics (emptied at start; default: a new temp dir)"),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "warning",
) -> None:
    """Serve POST /serve/occupancy with the real clearml-serving inference app until SIGTERM."""
    from services.serving.drift import DriftSettings
    from services.serving.launcher import RunOptions, check_feedback_env, exec_server

    try:
        check_feedback_env(os.environ)
        DriftSettings.from_env(os.environ)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if log_level.lower() not in ("critical", "error", "warning", "info", "debug", "trace"):
        typer.echo(f"error: --log-level: unknown level {log_level!r}", err=True)
        raise typer.Exit(2)
    sid = _resolve(service_id, project, name)
    exec_server(RunOptions(sid, host, port, workers, poll_minutes, log_level.lower(), metrics_dir))


@serving_app.command()
def status(
    service_id: ServiceOption = None,
    project: ProjectOption = DEFAULT_PROJECT,
    name: NameOption = DEFAULT_NAME,
) -> None:
    """Print the stored serving configuration: arms (model id, version) and the traffic split, as JSON."""
    from services.serving.deploy import read_arms

    logging.getLogger("clearml").setLevel(logging.WARNING)
    typer.echo(json.dumps(read_arms(_resolve(service_id, project, name)), indent=2))
