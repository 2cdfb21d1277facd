"""Settings of the local ClearML server."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_ACCESS_KEY = "LOCALACCESSKEY0000000"
DEFAULT_SECRET_KEY = "local-secret-key-not-for-production-0000000000"


@dataclass(frozen=True)
class ServerSettings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8008
    access_key: str = DEFAULT_ACCESS_KEY
    secret_key: str = DEFAULT_SECRET_KEY

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
