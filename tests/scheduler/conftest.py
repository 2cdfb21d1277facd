"""Helpers for scheduler flows: run the scheduler as its own process, make dataset versions with the
real SDK in another, and read the launched runs back from the server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from occupancy_mlops.local_stack import LISTENING, scheduler_env
from tests.conftest import api_client

MAKE_VERSIONS = """
import json, os, sys, time
from pathlib import Path
from clearml import Dataset

p = json.loads(os.environ["FLOW_PARAMS"])
root = Path(p["work"])
out = []
for i, spec in enumerate(p["versions"]):
    folder = root / f"v{i}"
    folder.mkdir(parents=True)
    (folder / f"day{i}.csv").write_text(f"date,Light,Occupancy\\n2015-02-04 10:{i % 60:02d},400,1\\n")
    ds = Dataset.create(dataset_project=p["project"], dataset_name=spec["name"],
                        parent_datasets=[out[-1]["id"]] if out and out[-1]["name"] == spec["name"] else None)
    ds.add_files(path=str(folder))
    if spec.get("tags"):
        ds.add_tags(spec["tags"])
    ds.finalize(auto_upload=True)
    out.append({"id": ds.id, "name": spec["name"], "tags": spec.get("tags", [])})
    print(json.dumps(out[-1]), flush=True)
    time.sleep(p.get("pause", 0))
"""


def make_versions(
    env: dict[str, str], project: str, versions: list[dict[str, Any]], pause: float = 0.0
) -> subprocess.Popen[str]:
    """Start a child process that creates dataset versions (one JSON line each on stdout)."""
    work = Path(env["HOME"]) / f"versions-{uuid.uuid4().hex[:6]}"
    params = {"project": project, "versions": versions, "work": str(work), "pause": pause}
    return subprocess.Popen(
        [sys.executable, "-c", MAKE_VERSIONS],
        env={**env, "FLOW_PARAMS": json.dumps(params)},
        cwd=env["HOME"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 180) -> list[dict[str, Any]]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-4000:]
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def wait_for(check: Callable[[], Any], timeout: float, what: str, log: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = log.read_text()[-4000:] if log and log.exists() else ""
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")
        time.sleep(0.2)


class SchedulerProcess:
    """``python -m services.scheduler run`` with settings from the environment."""

    def __init__(self, env: dict[str, str], settings: dict[str, Any], log: Path) -> None:
        self.log = log
        self._offset = log.stat().st_size if log.exists() else 0  # schedulers of a test share the log
        self._handle = log.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.scheduler", "run"],
            env={**env, **scheduler_env({"host": "127.0.0.1", "port": 0, **settings})},
            cwd=env["HOME"],
            stdout=self._handle,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.url: str | None = None

    def wait_listening(self, timeout: float = 60) -> str:
        """Wait for this process's own "metrics on" line (not an earlier scheduler's)."""

        def found() -> str | None:
            assert self.proc.poll() is None, "scheduler exited:\n" + self.log.read_text()[-4000:]
            m = LISTENING.findall(self.log.read_bytes()[self._offset :].decode(errors="replace"))
            return m[-1] if m else None

        self.url = wait_for(found, timeout, "the scheduler to listen", self.log)
        return self.url

    def get(self, path: str) -> requests.Response:
        assert self.url
        return requests.get(self.url + path, timeout=10)

    def kill(self, sig: int = signal.SIGKILL) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        code = self.proc.wait(60)
        self._handle.close()
        return code


@pytest.fixture
def schedulers(clearml_env) -> Iterator[Callable[..., SchedulerProcess]]:
    started: list[SchedulerProcess] = []
    log = Path(clearml_env["HOME"]) / "scheduler.log"

    def start(settings: dict[str, Any], log_name: str | None = None) -> SchedulerProcess:
        """``log_name``: a log of its own (schedulers started at once cannot tell their lines apart)."""
        proc = SchedulerProcess(clearml_env, settings, log.with_name(log_name) if log_name else log)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


def create_template(env: dict[str, str], project: str) -> str:
    """A plain training task with the parameter the scheduler fills (the blog's template task)."""
    api = api_client(env)
    project_id = api.projects.create(name=f"{project}/templates").id
    res = api.session.send_request(
        "tasks",
        "create",
        json={
            "name": "train occupancy model",
            "type": "training",
            "project": project_id,
            "hyperparams": {
                "General": {
                    "CLEARML_DATASET_ID": {"section": "General", "name": "CLEARML_DATASET_ID", "value": ""}
                }
            },
        },
    ).json()
    return str(res["data"]["id"])


def launched_runs(env: dict[str, str], template_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every clone of the template carrying an idempotency key, by dataset version id."""
    api = api_client(env)
    project = api.tasks.get_by_id(task=template_id).project
    res = api.session.send_request(
        "tasks",
        "get_all",
        json={
            "project": [project],
            "search_hidden": True,
            "only_fields": ["id", "tags", "status", "hyperparams", "execution"],
        },
    ).json()
    runs: dict[str, list[dict[str, Any]]] = {}
    for task in res["data"]["tasks"]:
        for tag in task.get("tags") or []:
            if tag.startswith("retrain-of:"):
                runs.setdefault(tag.removeprefix("retrain-of:"), []).append(task)
    return runs


def api_for(env: dict[str, str]) -> Any:
    """The scheduler's own API client, pointed at the server of a client environment."""
    from clearml.backend_api import Session

    from occupancy_mlops.clearml_api import ClearmlApi

    session = Session(
        api_key=env["CLEARML_API_ACCESS_KEY"],
        secret_key=env["CLEARML_API_SECRET_KEY"],
        host=env["CLEARML_API_HOST"],
    )
    return ClearmlApi(session)


def sample(metrics: Any, name: str, **labels: str) -> float:
    """The value of one Prometheus sample of a scheduler's metrics (0 if absent)."""
    return float(metrics.registry.get_sample_value(name, labels) or 0.0)
