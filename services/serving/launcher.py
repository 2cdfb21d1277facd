"""Start the inference server: uvicorn on ``services.serving.app:app`` with the environment it needs.

The process replaces itself with ``python -m uvicorn`` (same pid, so SIGTERM from a container
runtime reaches uvicorn directly) after setting:

- ``CLEARML_SERVING_TASK_ID``: the serving service task;
- ``CLEARML_SERVING_POLL_FREQ``: minutes between configuration polls (0.05 = 3 s): how soon a new
  champion, canary or weight is served without a restart;
- ``PROMETHEUS_MULTIPROC_DIR``: a fresh, empty folder (a given one is emptied), so the workers'
  metrics start at zero and sum correctly;
- ``CLEARML_BKG_THREAD_REPORT=1``: ClearML reports from a thread, not a forked process;
- ``OCCUPANCY_SERVING_FEEDBACK_SECRET``: when unset, one random secret for all the workers, so an
  id issued by one worker is accepted by the others (several replicas must be given one shared
  secret instead: each launcher would draw its own);
- ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` = 1 unless already set.

uvicorn runs with uvloop and httptools, without access log and at log level warning: clearml
captures the console and ships every line to the server (an access line per request costs ~45 %
of the throughput).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.serving.feedback import MAX_AGE_ENV, SECRET_ENV, new_secret, parse_max_age, parse_secret

APP = "services.serving.app:app"
DEFAULT_POLL_MINUTES = 0.05
DEFAULT_PORT = 8080
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class RunOptions:
    service_id: str
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 1
    poll_minutes: float = DEFAULT_POLL_MINUTES
    log_level: str = "warning"
    metrics_dir: Path | None = None


def prepare_metrics_dir(folder: Path | None) -> Path:
    """An empty folder for prometheus-client's multiprocess files (a given one is emptied)."""
    if folder is None:
        return Path(tempfile.mkdtemp(prefix="occupancy-serving-metrics-"))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    return folder


def check_feedback_env(env: Mapping[str, str]) -> None:
    """ValueError naming the variable when a feedback setting is bad (an empty secret is unset)."""
    if env.get(SECRET_ENV):
        parse_secret(env[SECRET_ENV])
    parse_max_age(env.get(MAX_AGE_ENV))


def server_env(options: RunOptions, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    check_feedback_env(env)
    if not env.get(SECRET_ENV):  # one secret shared by this launcher's workers
        env[SECRET_ENV] = new_secret()
    env.update(
        CLEARML_SERVING_TASK_ID=options.service_id,
        CLEARML_SERVING_POLL_FREQ=repr(float(options.poll_minutes)),
        PROMETHEUS_MULTIPROC_DIR=str(prepare_metrics_dir(options.metrics_dir)),
        CLEARML_BKG_THREAD_REPORT="1",
    )
    # one BLAS thread per worker unless told otherwise: the model's matrices are small, and two
    # OpenBLAS threads made a 61-reading request cost 3.1 ms of CPU instead of 0.25 ms here
    for name in BLAS_THREAD_VARIABLES:
        env.setdefault(name, "1")
    return env


def uvicorn_command(options: RunOptions) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        APP,
        "--host",
        options.host,
        "--port",
        str(options.port),
        "--workers",
        str(options.workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--no-proxy-headers",
        "--no-server-header",
        "--log-level",
        options.log_level,
        "--timeout-graceful-shutdown",
        "5",
    ]


def exec_server(options: RunOptions) -> None:
    """Replace this process with uvicorn (does not return)."""
    env = server_env(options)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(sys.executable, uvicorn_command(options), env)
