"""A clearml-agent daemon in this interpreter (no venv, no pip, no git), for the demo and tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def local_agent(queue: str, env: dict[str, str], workdir: Path, worker_id: str) -> Iterator[Path]:
    """Run ``clearml-agent daemon --queue QUEUE --foreground`` until the block ends; yields its log path.

    The agent executes tasks with this interpreter (``CLEARML_AGENT_SKIP_*``), so the project's own
    packages are importable in them. It is stopped with SIGTERM (it unregisters its worker), SIGKILL
    after 30 s.
    """
    agent_env = {
        **os.environ,
        **env,
        "CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL": "1",
        "CLEARML_AGENT_SKIP_PIP_VENV_INSTALL": sys.executable,
        "CLEARML_WORKER_ID": worker_id,
        # look at the queue every second instead of every 5 s: a queued step starts sooner
        "CLEARML_AGENT_QUEUE_POLL_FREQ_SEC": "1",
    }
    log_path = workdir / f"agent-{worker_id}.log"
    with log_path.open("w") as log:
        agent = subprocess.Popen(
            [str(Path(sys.executable).parent / "clearml-agent"), "daemon", "--queue", queue, "--foreground"],
            env=agent_env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield log_path
        finally:
            stop_process_group(agent)


def stop_process_group(proc: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """SIGTERM the process group of ``proc`` (started with ``start_new_session``), SIGKILL after ``grace``."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
