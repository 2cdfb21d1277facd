"""The loop's long-running services as child processes on this machine, for the demo, the loop
benchmark and tests: the trigger scheduler (``python -m services.scheduler run``) and the canary
controller (``python -m services.canary run``), as their pods run them.
Agents: :func:`occupancy_mlops.agent.local_agent`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from occupancy_mlops.agent import stop_process_group

LISTENING = re.compile(r"metrics on (http://[^\s/]+)/metrics")
"""The line the scheduler logs once it serves its endpoints."""


@dataclass
class RunningScheduler:
    process: subprocess.Popen[bytes]
    log: Path
    url: str


def scheduler_env(settings: dict[str, Any]) -> dict[str, str]:
    """``OCCUPANCY_SCHEDULER_*`` variables for ``settings`` (lists comma-separated, mappings as JSON)."""
    env = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            text = json.dumps(value)
        elif isinstance(value, list | tuple):
            text = ",".join(str(v) for v in value)
        else:
            text = str(value)
        env[f"OCCUPANCY_SCHEDULER_{key.upper()}"] = text
    return env


@contextmanager
def scheduler_process(
    env: dict[str, str], settings: dict[str, Any], log: Path, start_timeout: float = 300
) -> Iterator[RunningScheduler]:
    """Run the scheduler until the block ends (SIGTERM, then SIGKILL after 30 s); yields once it listens.

    ``settings`` are scheduler settings (``services/scheduler/settings.py``); ``port`` defaults to a
    free one. It listens at once; its first poll registers the pipeline template on a fresh project
    (a few seconds), so the first launch comes after that.
    """
    full_env = {**os.environ, **env, **scheduler_env({"host": "127.0.0.1", "port": 0, **settings})}
    with _listening_service("services.scheduler", full_env, log, "trigger scheduler", start_timeout) as (
        proc,
        url,
    ):
        yield RunningScheduler(proc, log, url)


@contextmanager
def _listening_service(
    module: str, env: dict[str, str], log: Path, what: str, start_timeout: float
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``python -m MODULE run`` in its own process group, appending to ``log``; yields (process, URL)
    once it logs :data:`LISTENING` (in its own part of the log); SIGTERM, then SIGKILL, at the end."""
    offset = log.stat().st_size if log.exists() else 0
    with log.open("ab") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, "run"],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                found = LISTENING.findall(log.read_bytes()[offset:].decode(errors="replace"))
                if found:
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_bytes()[offset:].decode(errors="replace")[-3000:]
                    raise RuntimeError(f"the {what} did not start (see {log}):\n{tail}")
                time.sleep(0.1)
            yield proc, found[-1]
        finally:
            stop_process_group(proc)


@dataclass
class RunningCanary:
    process: subprocess.Popen[bytes]
    log: Path
    url: str


def canary_env(settings: dict[str, Any]) -> dict[str, str]:
    """``OCCUPANCY_CANARY_*`` variables for canary controller ``settings`` (lists comma-separated)."""
    prefix = "OCCUPANCY_SCHEDULER_"
    return {f"OCCUPANCY_CANARY_{k[len(prefix) :]}": v for k, v in scheduler_env(settings).items()}


@contextmanager
def canary_process(
    env: dict[str, str], settings: dict[str, Any], log: Path, start_timeout: float = 120
) -> Iterator[RunningCanary]:
    """Run the canary controller (``python -m services.canary run``) until the block ends (SIGTERM,
    then SIGKILL after 30 s); yields once it listens.

    ``settings`` are controller settings (``services/canary/settings.py``: project, service_id,
    prometheus_url, intervals, thresholds); ``port`` defaults to a free one.
    """
    full_env = {**os.environ, **env, **canary_env({"host": "127.0.0.1", "port": 0, **settings})}
    with _listening_service("services.canary", full_env, log, "canary controller", start_timeout) as (
        proc,
        url,
    ):
        yield RunningCanary(proc, log, url)


@dataclass
class RunningServing:
    process: subprocess.Popen[bytes]
    log: Path
    url: str
    """Base URL; the endpoint is ``{url}/serve/occupancy``."""


@contextmanager
def serving_process(
    env: dict[str, str],
    service_id: str,
    workdir: Path,
    *,
    workers: int = 1,
    poll_minutes: float = 0.05,
    extra_env: dict[str, str] | None = None,
    start_timeout: float = 120,
) -> Iterator[RunningServing]:
    """Run the inference server (``python -m services.serving run``: the clearml-serving app with our
    endpoint) on a free loopback port until the block ends; yields once ``/healthz`` answers.

    ``workdir`` holds its log and its metrics folder. ``extra_env`` is for settings such as
    ``OCCUPANCY_SERVING_FAULTS_FILE``.
    """
    import requests

    from local_server.runner import free_port

    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "serving.log"
    cmd = [
        sys.executable, "-m", "services.serving", "run", "--service-id", service_id,
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--poll-minutes", str(poll_minutes), "--metrics-dir", str(workdir / "metrics"),
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with log.open("ab") as handle:
        proc = subprocess.Popen(
            cmd,
            env={**os.environ, **env, **(extra_env or {})},
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                try:
                    if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"the inference server did not start (see {log}):\n{tail}")
                time.sleep(0.2)
            yield RunningServing(proc, log, url)
        finally:
            stop_process_group(proc)
