"""The ClearML server goes away under a running scheduler and comes back: the scheduler says so in
its metrics and readiness within seconds (the SDK alone would retry one call for minutes), keeps
running, and launches what arrived once the server is back."""

from __future__ import annotations

import signal
import uuid

from local_server import local_server
from tests.conftest import client_env
from tests.scheduler.conftest import (
    SchedulerProcess,
    create_template,
    finish,
    launched_runs,
    make_versions,
    wait_for,
)


def test_scheduler_rides_out_a_server_outage(tmp_path):
    srv = local_server(tmp_path / "server")
    srv.start()
    try:
        env = client_env(srv, tmp_path / "client")
        project = f"Outage-{uuid.uuid4().hex[:6]}"
        template = create_template(env, project)
        settings = {
            "project": project,
            "template_id": template,
            "queue": "q-outage",
            "dataset_parameter": "General/CLEARML_DATASET_ID",
            "poll_interval_seconds": 0.3,
        }
        scheduler = SchedulerProcess(env, settings, tmp_path / "scheduler.log")
        try:
            scheduler.wait_listening()
            [first] = finish(make_versions(env, project, [{"name": "s", "tags": ["Production"]}]))
            wait_for(
                lambda: first["id"] in launched_runs(env, template), 30, "the first launch", scheduler.log
            )
            assert scheduler.get("/readyz").status_code == 200

            srv.kill()  # SIGKILL: the server is simply gone
            wait_for(lambda: scheduler.get("/readyz").status_code == 503, 60, "not ready", scheduler.log)
            body = scheduler.get("/readyz").json()
            assert "ConnectionError" in (body["last_error"] or ""), body
            assert 'occupancy_scheduler_polls_total{outcome="error"}' in scheduler.get("/metrics").text
            assert scheduler.get("/healthz").status_code == 200, "alive: nothing to restart"

            srv.start()  # same port, same state
            [second] = finish(make_versions(env, project, [{"name": "s", "tags": ["Production"]}]))
            wait_for(lambda: second["id"] in launched_runs(env, template), 60, "launch after", scheduler.log)
            wait_for(lambda: scheduler.get("/readyz").status_code == 200, 30, "ready again", scheduler.log)
            runs = launched_runs(env, template)
            assert {k: len(v) for k, v in runs.items()} == {first["id"]: 1, second["id"]: 1}
        finally:
            scheduler.kill(signal.SIGTERM)
    finally:
        srv.stop()
