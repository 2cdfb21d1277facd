"""The canary controller's integration stack, every piece real: the local ClearML server, the model
registry in it, the clearml-serving inference app (``python -m services.serving run``), a Debian
Prometheus scraping it every second, a replay client sending the real readings of datatest.txt at a
bounded rate and their labels a second later (``POST /feedback/occupancy``), and the controller
itself as its own process (``canary_process``), which a test may SIGKILL and start again.

One stack per test module (module-scoped): each flow starts from "a champion serves, no canary" and
leaves the same behind, so a flow never depends on another one's outcome.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from clearml.backend_api import Session

from local_server import LocalServer
from occupancy_mlops.clearml_api import ClearmlApi
from occupancy_mlops.local_stack import RunningCanary, canary_process
from occupancy_mlops.prometheus import PromClient, RunningPrometheus, prometheus_process
from occupancy_mlops.replay import Replay
from tests.conftest import client_env
from tests.serving.models import register_bundles
from tests.serving.server import ServingServer, cli, serving_env, setup_service
from training.data import load_occupancy_file
from training.registry import ModelRegistry, RegistryState

ANALYSIS_SECONDS = 4.0
POLL_SECONDS = 0.5
REPLAY_RATE = 80.0
"""Requests a second: ~8 a second reach a 10 % canary, ~32 per analysis window."""
MIN_REQUESTS = 20
"""Per arm and window: a cold canary's first, slow request (clearml-serving loads an endpoint's model
on its first request) is then at most 5 % of them, below the p95."""
SEGMENT = slice(175, 205)
"""The replayed readings: 30 consecutive real readings of datatest.txt (a lit, occupied room), looped.
The traffic is the same mix in every analysis window, as a day's many rooms are over 30 s. Replaying
the whole file instead compresses hours into each second, and arms compared over a window where
evening turns to night would differ by the clock, not the model."""
SKEW = -1.5
"""Bias shift of the skewed challenger: the lit room's probabilities pulled from 0.83-0.85 to
0.52-0.56, every decision the same (accuracy sees nothing; a shift of about 0.3)."""
WRONG_THRESHOLD = 0.999
"""Decision threshold of the challenger that is wrong on the labels: the champion's probabilities
(about 0.8 on SEGMENT), so its distribution matches, but every reading "not occupied"."""
FEEDBACK_DELAY = 1.0
"""Seconds after an answer the replay client posts its label (``POST /feedback/occupancy``)."""
MIN_LABELS = 20
"""Labeled readings per arm and window for the accuracy check (~8 a second reach a 10 % canary)."""


@dataclass
class Stack:
    env: dict[str, str]
    home: Path
    project: str
    service_id: str
    registry: ModelRegistry
    serving: ServingServer
    prom: RunningPrometheus
    replay: Replay
    faults: Path
    models: dict[str, str]
    """Registered, not yet submitted models by role (good-1, errors, skewed, ...)."""
    controller: RunningCanary | None = None
    _exit: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    log: Path = Path()

    @property
    def prom_client(self) -> PromClient:
        return PromClient(self.prom.url)

    def settings(self, **overrides: Any) -> dict[str, Any]:
        return {
            "project": self.project,
            "service_id": self.service_id,
            "prometheus_url": self.prom.url,
            "poll_interval_seconds": POLL_SECONDS,
            "analysis_interval_seconds": ANALYSIS_SECONDS,
            "min_requests": MIN_REQUESTS,
            "min_labels": MIN_LABELS,
            "serving_settle_seconds": 3.0,  # the inference server polls its configuration every 3 s
            # everything shares two cores here, and clearml-serving loads an endpoint's model on its
            # first request: a cold canary's first requests take tens of milliseconds
            "p95_latency_slack_ms": 100,
            "log_level": "info",
            **overrides,
        }

    def start_controller(self) -> RunningCanary:
        assert self.controller is None, "one controller at a time"
        self.controller = self._exit.enter_context(canary_process(self.env, self.settings(), self.log))
        return self.controller

    def kill_controller(self) -> None:
        """SIGKILL: no shutdown code runs, as when a node dies."""
        assert self.controller is not None
        proc = self.controller.process
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        self.controller = None

    def stop_controller(self) -> None:
        self._exit.close()
        self._exit = contextlib.ExitStack()
        self.controller = None

    def metrics(self) -> str:
        assert self.controller is not None
        return requests.get(self.controller.url + "/metrics", timeout=10).text

    def state(self) -> RegistryState:
        return self.registry.read()

    def wait_state(self, what: str, check: Callable[[RegistryState], Any], timeout: float) -> RegistryState:
        deadline = time.monotonic() + timeout
        while True:
            state = self.registry.read()
            if check(state):
                return state
            if self.controller is not None and self.controller.process.poll() is not None:
                pytest.fail(f"the controller exited waiting for {what}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"timed out after {timeout:.0f} s waiting for {what}; state {state}\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def log_tail(self, chars: int = 5000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def set_faults(self, faults: dict[str, Any] | None) -> None:
        if faults is None:
            self.faults.unlink(missing_ok=True)
        else:
            tmp = self.faults.with_suffix(".tmp")
            tmp.write_text(json.dumps(faults))
            tmp.replace(self.faults)

    def serving_arms(self) -> dict[str, Any]:
        """The stored serving configuration (``occupancy-mlops serving status``, its own process)."""
        proc = cli(self.env, "serving", "status", "--service-id", self.service_id)
        assert proc.returncode == 0, proc.stderr
        return dict(json.loads(proc.stdout))

    def answers_since(self, since: float) -> list[Any]:
        return [a for a in list(self.replay.stats.answers) if a.sent_at >= since]


def registry_for(env: dict[str, str], project: str) -> ModelRegistry:
    session = Session(
        api_key=env["CLEARML_API_ACCESS_KEY"],
        secret_key=env["CLEARML_API_SECRET_KEY"],
        host=env["CLEARML_API_HOST"],
    )
    return ModelRegistry(project, api=ClearmlApi(session))


ROLES = {
    "champion": 0.0,
    "good": 0.0,
    "errors": 0.0,
    "skewed": SKEW,
    "manual": 0.0,
    "promote": 0.0,
    "restart": 0.0,
    "blind": 0.0,
    "wrong": 0.0,
}
THRESHOLDS = {"wrong": WRONG_THRESHOLD}


@pytest.fixture(scope="module")
def stack(
    server: LocalServer, tmp_path_factory: pytest.TempPathFactory, occupancy_dir: Path
) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("canary-stack")
    env = serving_env(client_env(server, home / "client"))
    faults = home / "faults.json"
    project = f"Canary-{uuid.uuid4().hex[:6]}"
    service_id = setup_service(env, project, "occupancy-serving")
    ids = register_bundles(
        env,
        project,
        "occupancy-mlp",
        list(ROLES.values()),
        dataset_id="ds-canary",
        thresholds=[THRESHOLDS.get(role, 0.5) for role in ROLES],
    )
    models = dict(zip(ROLES, ids, strict=True))
    registry = registry_for(env, project)
    registry.submit(models["champion"], "first model")
    srv = ServingServer.start(
        env, service_id, home / "serving", extra_env={"OCCUPANCY_SERVING_FAULTS_FILE": str(faults)}
    )
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(srv.stop)
        prom = cleanup.enter_context(
            prometheus_process(home / "prometheus", {"serving": [srv.url.removeprefix("http://")]}, 1.0)
        )
        frame = load_occupancy_file(occupancy_dir / "datatest.txt").sort_values("date").iloc[SEGMENT]
        replay = Replay(
            f"{srv.url}/serve/occupancy", frame, rate=REPLAY_RATE, history=10, feedback_delay=FEEDBACK_DELAY
        )
        st = Stack(env, home, project, service_id, registry, srv, prom, replay, faults, models)
        st.log = home / "canary.log"
        cleanup.callback(st.stop_controller)
        st.start_controller()  # serves the champion: the first pass writes the serving configuration
        srv.wait_for("the champion's answers", lambda: _answers(srv), 90)
        replay.start()
        cleanup.callback(replay.stop)
        yield st


def _answers(srv: ServingServer) -> bool:
    from tests.serving.server import READING

    resp = srv.post(READING)
    assert resp.status_code == 200, resp.text
    assert resp.json()["arm"] == "champion"
    return True
