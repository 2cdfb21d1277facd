"""The whole loop running on this machine, as the Helm chart runs it in a cluster: the trigger
scheduler, two clearml-agents (pipeline controllers on ``services``, steps on ``training``), the
inference server (clearml-serving with our endpoint), a real Prometheus scraping serving, scheduler
and canary controller, and the canary controller judging canaries on Prometheus' numbers.

Used by ``make demo`` (stage 3) and ``make bench-loop``; each service is a child process with its
log in the work folder, stopped when the block ends.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from occupancy_mlops.agent import local_agent
from occupancy_mlops.clearml_api import ClearmlApi
from occupancy_mlops.local_stack import canary_process, scheduler_process, serving_process
from occupancy_mlops.prometheus import RunningPrometheus, prometheus_process
from occupancy_mlops.timeline import read_timeline
from training.registry import CHAMPION, FORMER, REJECTED, ROLLED_BACK, ModelRegistry

FINAL_STATES = (CHAMPION, FORMER, ROLLED_BACK, REJECTED)
"""Where a model's journey through the loop ends (a former champion was a champion)."""

FAULTS_FILE = "faults.json"

# Canary policy of the demo: the defaults of services/canary/settings.py, with a 4 s analysis
# interval instead of 30 s so that a canary is decided within a minute.
DEMO_CANARY: dict[str, Any] = {
    "poll_interval_seconds": 1.0,
    "analysis_interval_seconds": 4.0,
    "min_requests": 10,
    # 4 s windows at 25 requests/s: an arm rarely gets 50 labels (the default) in one; the
    # accuracy_alpha noise guard still keeps chance from rolling a canary back at 10
    "min_labels": 10,
}


@dataclass
class LiveLoop:
    """Where the running services answer."""

    workdir: Path
    service_id: str
    serving_url: str
    scheduler_url: str
    canary_url: str
    prometheus: RunningPrometheus
    started_at: float

    @property
    def endpoint(self) -> str:
        return f"{self.serving_url}/serve/occupancy"

    @property
    def faults_file(self) -> Path:
        return self.workdir / FAULTS_FILE

    def inject_fault(self, arm: str, error_ratio: float = 0.0, delay_ms: float = 0.0) -> None:
        """Make ``arm`` fail (answer 500) a share of its requests or answer late, like a service
        mesh's fault filter; serving re-reads the file within a second."""
        faults = {arm: {"error_ratio": error_ratio, "delay_ms": delay_ms}}
        tmp = self.faults_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(faults))
        tmp.replace(self.faults_file)

    def clear_faults(self) -> None:
        self.faults_file.unlink(missing_ok=True)


def _hostport(url: str) -> str:
    return url.split("://", 1)[1].rstrip("/")


@contextlib.contextmanager
def live_loop(
    workdir: Path,
    env: dict[str, str],
    *,
    project: str,
    scheduler_settings: dict[str, Any],
    canary_settings: dict[str, Any] | None = None,
    controller_queue: str = "services",
    steps_queue: str = "training",
) -> Iterator[LiveLoop]:
    """Start every service of the loop; yields once serving, Prometheus and the controller answer."""
    from services.serving.deploy import ensure_service

    workdir.mkdir(parents=True, exist_ok=True)
    service_id = ensure_service(project, "occupancy-serving")
    faults = workdir / FAULTS_FILE
    faults.unlink(missing_ok=True)
    with contextlib.ExitStack() as stack:
        scheduler = stack.enter_context(scheduler_process(env, scheduler_settings, workdir / "scheduler.log"))
        stack.enter_context(local_agent(controller_queue, env, workdir, "loop-controllers"))
        stack.enter_context(local_agent(steps_queue, env, workdir, "loop-steps"))
        serving = stack.enter_context(
            serving_process(
                env,
                service_id,
                workdir / "serving",
                extra_env={"OCCUPANCY_SERVING_FAULTS_FILE": str(faults)},
            )
        )
        targets = {"serving": [_hostport(serving.url)], "scheduler": [_hostport(scheduler.url)]}
        prometheus = stack.enter_context(prometheus_process(workdir / "prometheus", targets))
        canary = stack.enter_context(
            canary_process(
                env,
                {
                    "project": project,
                    "service_id": service_id,
                    "prometheus_url": prometheus.url,
                    **DEMO_CANARY,
                    **(canary_settings or {}),
                },
                workdir / "canary.log",
            )
        )
        prometheus.reload({**targets, "canary": [_hostport(canary.url)]})
        yield LiveLoop(
            workdir=workdir,
            service_id=service_id,
            serving_url=serving.url,
            scheduler_url=scheduler.url,
            canary_url=canary.url,
            prometheus=prometheus,
            started_at=time.time(),
        )


def model_of_version(
    api: ClearmlApi, project: str, dataset: str, dataset_id: str
) -> tuple[str | None, str | None]:
    """The retrain's status and the model trained on a dataset version (None while not there)."""
    rows = read_timeline(api, project, dataset, ids=[dataset_id], last=1)
    return (rows[0].run_status, rows[0].model_id) if rows else (None, None)


def wait_settled(
    api: ClearmlApi,
    registry: ModelRegistry,
    project: str,
    dataset: str,
    dataset_id: str,
    progress: Callable[[str], Any],
    label: str,
    timeout: float,
) -> str:
    """Wait until the model trained on ``dataset_id`` reached a final state (champion, rolled back,
    rejected) or its retrain failed; returns that state (``retrain failed`` etc.)."""
    deadline = time.monotonic() + timeout
    while True:
        run_status, model_id = model_of_version(api, project, dataset, dataset_id)
        state = registry.read().state_of(model_id) if model_id else None
        progress(f"{label}: retrain {run_status or 'waiting'}, model {state or '-'}")
        if state in FINAL_STATES:
            return str(state)
        if run_status in ("failed", "stopped") or (run_status == "completed" and model_id is None):
            return f"retrain {run_status}"
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{label}: not decided within {timeout:.0f} s (retrain {run_status}, model {state}); see "
                "the logs of the scheduler, agents, serving and canary controller in the work folder"
            )
        time.sleep(1)
