"""The ``occupancy-mlops`` command: one subcommand per job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False
)


@app.callback()
def _root() -> None:
    """A fully automatic retraining loop for an IoT room-occupancy model on ClearML."""


@app.command("local-server")
def local_server_cmd(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port of the API and the file server (/files)")] = 8008,
    data: Annotated[Path, typer.Option(help="folder for the SQLite state and stored files")] = Path(
        ".local-server"
    ),
    access_key: Annotated[str | None, typer.Option(help="API access key clients must use")] = None,
    secret_key: Annotated[str | None, typer.Option(help="API secret key clients must use")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "warning",
) -> None:
    """Serve the local ClearML API and file server until SIGTERM (not for production)."""
    from services.local_server.runner import serve
    from services.local_server.settings import ServerSettings

    settings = ServerSettings(data_dir=data.resolve(), host=host, port=port)
    if access_key:
        settings = ServerSettings(
            settings.data_dir, host, port, access_key, secret_key or settings.secret_key
        )
    elif secret_key:
        raise typer.BadParameter("--secret-key needs --access-key", param_hint="--secret-key")
    serve(settings, log_level=log_level)


@app.command()
def demo(
    workdir: Annotated[
        Path, typer.Option(help="folder for the demo's server state, data and storage")
    ] = Path(".demo"),
    data: Annotated[
        Path | None,
        typer.Option(help="folder with datatraining.txt/datatest.txt (default: found or downloaded)"),
    ] = None,
    days: Annotated[int | None, typer.Option(min=1, help="only the first N days of data")] = None,
) -> None:
    """Run the loop on the embedded local ClearML server: no cluster, no external server."""
    from occupancy_mlops.demo import run_demo
    from training.data import DataNotFoundError

    try:
        run_demo(workdir.resolve(), data, days)
    except DataNotFoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="--data") from exc


def main() -> None:
    app()


if __name__ == "__main__":
    main()
