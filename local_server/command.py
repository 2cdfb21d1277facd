"""``python -m local_server``: the options of ``occupancy-mlops local-server``, without
importing the rest of the CLI (the server starts even while another part of the project is broken)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


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
    """Serve the local ClearML API and file server until SIGTERM (not for production). Beyond
    loopback (--host other than 127.0.0.1/localhost) it needs your own --access-key and --secret-key."""
    from .runner import serve  # here: the CLI registers this command without loading the server
    from .settings import ServerSettings

    settings = ServerSettings(data_dir=data.resolve(), host=host, port=port)
    if access_key:
        settings = ServerSettings(
            settings.data_dir, host, port, access_key, secret_key or settings.secret_key
        )
    elif secret_key:
        raise typer.BadParameter("--secret-key needs --access-key", param_hint="--secret-key")
    serve(settings, log_level=log_level)


def main() -> None:
    typer.run(local_server_cmd)
