"""Shared fixtures: a local ClearML server and isolated client environments.

Flows that call ``Task.init`` or run an agent run in child processes (``run_python``), as a user's
script would: the clearml SDK keeps per-process global state (current task, session), so two
flows in one interpreter would leak into each other.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from clearml.backend_api import Session
from clearml.backend_api.session.client import APIClient

from local_server import LocalServer, local_server
from occupancy_mlops.client_env import client_env as shared_client_env
from training.data import locate_occupancy_data

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """One local server for the session (flows use their own projects to stay apart)."""
    srv = local_server(tmp_path_factory.mktemp("local-server"))
    srv.start()
    yield srv
    srv.stop()


def client_env(srv: LocalServer, home: Path) -> dict[str, str]:
    """An environment for a ClearML client process with its own home, cache and storage."""
    return {**shared_client_env(srv.env, home), "PYTHONPATH": str(REPO)}


@pytest.fixture
def clearml_env(server: LocalServer, tmp_path: Path) -> dict[str, str]:
    return client_env(server, tmp_path / "client")


def login_token(srv: LocalServer) -> str:
    """A bearer token from ``auth.login`` with the server's own credentials."""
    res = requests.get(
        f"{srv.settings.base_url}/v2.31/auth.login",
        auth=(srv.settings.access_key, srv.settings.secret_key),
        timeout=10,
    )
    res.raise_for_status()
    return str(res.json()["data"]["token"])


def api_client(env: dict[str, str]) -> APIClient:
    """The SDK's own API client, pointed at the server named in a client environment."""
    return APIClient(
        session=Session(
            api_key=env["CLEARML_API_ACCESS_KEY"],
            secret_key=env["CLEARML_API_SECRET_KEY"],
            host=env["CLEARML_API_HOST"],
        )
    )


def run_python(code: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 300) -> str:
    """Run a Python snippet in a child process; fail the test with its output if it fails."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=cwd or Path(env["HOME"]),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"child process failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc.stdout


@pytest.fixture(scope="session")
def occupancy_dir() -> Path:
    """The real UCI data: ``$OCCUPANCY_DATA``, ``../shared/data/occupancy``, or downloaded once."""
    return locate_occupancy_data()
