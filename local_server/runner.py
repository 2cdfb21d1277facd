"""Run the local server: in the foreground (CLI, ``python -m``) or as a child process (tests, demo)."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
import uvicorn

from .app import create_app
from .settings import ServerSettings, UnsafeSettingsError


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def format_env(env: dict[str, str]) -> str:
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())


def serve(settings: ServerSettings, log_level: str = "warning") -> None:
    """Serve until SIGTERM/SIGINT. Prints the client environment first. Exits 2 with one line on
    stderr when the settings are unsafe (listening beyond loopback with the built-in credentials)."""
    try:
        settings.check_exposure()
    except UnsafeSettingsError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    print("# ClearML local server: point clients at it with", flush=True)
    print(format_env(settings.client_env()), flush=True)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
    )


@dataclass
class LocalServer:
    """A local server running as a child process, for tests and the demo."""

    settings: ServerSettings
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return self.settings.client_env()

    def start(self, timeout: float = 30.0) -> LocalServer:
        cmd = [
            sys.executable,
            "-m",
            "local_server",
            "--host",
            self.settings.host,
            "--port",
            str(self.settings.port),
            "--data",
            str(self.settings.data_dir),
            "--access-key",
            self.settings.access_key,
            "--secret-key",
            self.settings.secret_key,
        ]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.extra_env}
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"local server exited with {self.process.returncode}; see {self.log_path}")
            try:
                if requests.get(f"{self.settings.base_url}/healthz", timeout=1).ok:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"local server did not answer on {self.settings.base_url} in {timeout}s")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def local_server(data_dir: Path, host: str = "127.0.0.1", port: int | None = None) -> LocalServer:
    """A local server on a free port keeping its state in ``data_dir`` (not started yet)."""
    settings = ServerSettings(data_dir=data_dir, host=host, port=port or free_port(host))
    return LocalServer(settings=settings, log_path=data_dir / "server.log")
