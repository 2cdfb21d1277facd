"""Settings of the local ClearML server."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ACCESS_KEY = "LOCALACCESSKEY0000000"
DEFAULT_SECRET_KEY = "local-secret-key-not-for-production-0000000000"
# an API call: the SDK splits events.add_batch at 15 MiB (api.http.max_req_size), "smaller than that
# configured in api server"
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_UPLOAD_BYTES = 4 * 1024 * 1024 * 1024  # one upload to the file server (dataset chunks are 512 MB)


class UnsafeSettingsError(ValueError):
    """Settings the server refuses to start with."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and addresses in 127.0.0.0/8 or ::1; false for 0.0.0.0, :: and the rest."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


@dataclass(frozen=True)
class ServerSettings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8008
    access_key: str = DEFAULT_ACCESS_KEY
    secret_key: str = DEFAULT_SECRET_KEY
    max_body_bytes: int = MAX_BODY_BYTES
    max_upload_bytes: int = MAX_UPLOAD_BYTES

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def files_url(self) -> str:
        return f"{self.base_url}/files"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "server.sqlite3"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "fileserver"

    def check_exposure(self) -> None:
        """Refuse to listen beyond loopback with the built-in credentials: anyone who can reach the
        port could read and write everything (the credentials are printed in this repository)."""
        if is_loopback(self.host):
            return
        built_in = [
            option
            for option, value, default in (
                ("--access-key", self.access_key, DEFAULT_ACCESS_KEY),
                ("--secret-key", self.secret_key, DEFAULT_SECRET_KEY),
            )
            if value == default
        ]
        if built_in:
            raise UnsafeSettingsError(
                f"refusing to listen on {self.host} with the built-in credentials: "
                f"set {' and '.join(built_in)} to your own values (or listen on 127.0.0.1)"
            )

    def client_env(self) -> dict[str, str]:
        """Environment variables that point the clearml SDK, agent and serving at this server."""
        return {
            "CLEARML_API_HOST": self.base_url,
            "CLEARML_WEB_HOST": f"{self.base_url}/ui",
            "CLEARML_FILES_HOST": self.files_url,
            "CLEARML_API_ACCESS_KEY": self.access_key,
            "CLEARML_API_SECRET_KEY": self.secret_key,
            "CLEARML_OFFLINE_MODE": "0",
        }
