"""The occupancy inference server as a test runs it: ``python -m services.serving run`` in a process
group of its own, with an isolated home and cache (models come from the file server)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from local_server.runner import free_port
from tests.conftest import run_python

POLL_MINUTES = 0.05

READING = {
    "date": "2015-02-04 17:51:00",
    "Temperature": 23.18,
    "Humidity": 27.272,
    "Light": 426.0,
    "CO2": 721.25,
    "HumidityRatio": 0.00479298805,
}


def serving_env(clearml_env: dict[str, str]) -> dict[str, str]:
    """Models and preprocess code go to the file server, as with a default clearml-serving setup."""
    env = dict(clearml_env)
    env.pop("CLEARML_DEFAULT_OUTPUT_URI", None)
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("occupancy-mlops")), *args],
        env=env,
        cwd=env["HOME"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def setup_service(env: dict[str, str], project: str, name: str) -> str:
    proc = cli(env, "serving", "setup", "--project", project, "--name", name)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return str(json.loads(proc.stdout.strip().splitlines()[-1])["service_id"])


def apply_arms(
    env: dict[str, str],
    service_id: str,
    champion: tuple[str, str] | None,
    canary: tuple[str, str] | None = None,
    weight: float = 0.0,
) -> bool:
    """``services.serving.deploy.apply_arms`` in a child process; whether it wrote."""
    out = run_python(
        f"""
        from services.serving.deploy import Arm, apply_arms
        champion = {champion!r}
        canary = {canary!r}
        wrote = apply_arms({service_id!r}, Arm(*champion) if champion else None,
                           Arm(*canary) if canary else None, {weight!r})
        print("WROTE=" + str(wrote))
        """,
        env,
    )
    return [x for x in out.splitlines() if x.startswith("WROTE=")][-1] == "WROTE=True"


@dataclass
class ServingServer:
    proc: subprocess.Popen[bytes]
    url: str
    home: Path

    @property
    def log(self) -> Path:
        return self.home / "serving.log"

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""

    @classmethod
    def start(
        cls,
        env: dict[str, str],
        service_id: str,
        home: Path,
        workers: int = 1,
        extra_env: dict[str, str] | None = None,
    ) -> ServingServer:
        port = free_port()
        home.mkdir(parents=True, exist_ok=True)
        app_env = dict(
            env,
            HOME=str(home),
            CLEARML_CACHE_DIR=str(home / "cache"),
            CLEARML_CONFIG_FILE=str(home / "clearml.conf"),
            **(extra_env or {}),
        )
        (home / "clearml.conf").write_text("sdk { development { report_use_subprocess: false } }\n")
        cmd = [
            sys.executable, "-m", "services.serving", "run", "--service-id", service_id, "--port", str(port),
            "--workers", str(workers), "--poll-minutes", str(POLL_MINUTES),
            "--metrics-dir", str(home / "metrics"),
        ]  # fmt: skip
        with (home / "serving.log").open("wb") as out:
            proc = subprocess.Popen(
                cmd, env=app_env, cwd=home, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        return cls(proc=proc, url=f"http://127.0.0.1:{port}", home=home)

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"serving exited ({self.proc.returncode}) waiting for {what}:\n{self.log_tail()}")
            try:
                return check()
            except (AssertionError, requests.RequestException) as exc:
                last = exc
            time.sleep(0.2)
        pytest.fail(f"timed out waiting for {what} ({last!r}):\n{self.log_tail()}")

    def wait_ready(self, timeout: float = 60) -> dict[str, Any]:
        def ready() -> dict[str, Any]:
            resp = requests.get(f"{self.url}/readyz", timeout=5)
            assert resp.status_code == 200, resp.text
            return dict(resp.json())

        return dict(self.wait_for("readiness", ready, timeout))

    def post(self, body: Any, **kwargs: Any) -> requests.Response:
        return requests.post(f"{self.url}/serve/occupancy", json=body, timeout=30, **kwargs)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


@dataclass
class Deployment:
    env: dict[str, str]
    service_id: str
    champion: str
    canary: str | None
    server: ServingServer


@contextlib.contextmanager
def deploy(
    local: Any,
    home: Path,
    project: str,
    service: str,
    bias_shifts: list[float],
    *,
    workers: int = 1,
    extra_env: dict[str, str] | None = None,
    canary_weight: float | None = None,
    drift_reference: dict[str, Any] | None = None,
) -> Iterator[Deployment]:
    """A serving service with the first bundle as champion (and the second as canary at
    ``canary_weight``), its inference server started and ready; stopped at the end.
    ``drift_reference``: the bundles' ``metadata["drift_reference"]`` (none by default)."""
    from tests.conftest import client_env
    from tests.serving.models import register_bundles

    env = serving_env(client_env(local, home / "client"))
    service_id = setup_service(env, project, service)
    ids = register_bundles(
        env, project, "occupancy-mlp", bias_shifts, dataset_id="ds-42", drift_reference=drift_reference
    )
    canary = ids[1] if len(ids) > 1 else None
    if canary_weight is not None and canary is not None:
        assert apply_arms(env, service_id, (ids[0], "1"), (canary, "2"), canary_weight)
    else:
        assert apply_arms(env, service_id, (ids[0], "1"))
    srv = ServingServer.start(env, service_id, home / "serving", workers=workers, extra_env=extra_env)
    try:
        srv.wait_ready()
        srv.wait_for("a first answer", lambda: srv.post(READING).raise_for_status(), 60)
        yield Deployment(env, service_id, ids[0], canary, srv)
    finally:
        srv.stop()
