"""``occupancy-mlops autoscaler ...`` (and ``python -m services.autoscaler ...``): ``run`` scales the
agent pools until SIGTERM; ``once`` prints what a pass decides and changes nothing (a dry run)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from services.autoscaler.settings import AutoscalerSettings, ConfigError, load_settings

autoscaler_app = typer.Typer(
    help="Scale the ClearML agent pools' Deployments on their queues' depth.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="YAML settings file (default: $OCCUPANCY_AUTOSCALER_CONFIG)")
]
KubeconfigOption = Annotated[
    str | None, typer.Option(help="kubeconfig file (default: in-cluster, else $KUBECONFIG)")
]


def _settings(config: Path | None, **overrides: Any) -> AutoscalerSettings:
    try:
        return load_settings(config, **overrides)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@autoscaler_app.command()
def run(
    config: ConfigOption = None,
    kubeconfig: KubeconfigOption = None,
    dry_run: Annotated[bool | None, typer.Option("--dry-run", help="decide, change nothing")] = None,
    port: Annotated[int | None, typer.Option(help="port of /metrics, /healthz, /readyz")] = None,
) -> None:
    """Scale every configured pool, one pass every poll_interval_seconds, until SIGTERM."""
    from services.autoscaler.app import serve

    settings = _settings(config, dry_run=dry_run, port=port)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("clearml").setLevel(logging.WARNING)
    serve(settings, kubeconfig)


@autoscaler_app.command()
def once(config: ConfigOption = None, kubeconfig: KubeconfigOption = None) -> None:
    """One pass in dry-run mode: print each pool's decision as JSON; scale nothing."""
    from services.autoscaler.app import build_reconciler

    settings = _settings(config, dry_run=True)
    result = build_reconciler(settings, kubeconfig).poll()
    for d in result.decisions:
        typer.echo(
            json.dumps(
                {
                    "pool": d.pool,
                    "replicas": d.current,
                    "desired": d.desired,
                    "action": d.action,
                    "reason": d.reason,
                }
            )
        )
    for error in result.errors:
        typer.echo(f"error: {error}", err=True)
    if result.errors:
        raise typer.Exit(1)
