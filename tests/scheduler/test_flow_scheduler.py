"""The trigger scheduler against the local server, with dataset versions made by the real SDK.

Each scheduler is its own process (``python -m services.scheduler run``), as in its pod.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
import uuid

from tests.conftest import run_python
from tests.scheduler.conftest import create_template, finish, launched_runs, make_versions, wait_for


def _settings(project: str, template: str, queue: str, **extra):
    return {
        "project": project,
        "template_id": template,
        "queue": queue,
        "dataset_parameter": "General/CLEARML_DATASET_ID",
        "poll_interval_seconds": 0.3,
        "claim_grace_seconds": 1,
        **extra,
    }


def test_one_launch_per_production_version_including_new_names_and_downtime(clearml_env, schedulers):
    project = f"Sched-{uuid.uuid4().hex[:6]}"
    template = create_template(clearml_env, project)
    queue = f"q-{uuid.uuid4().hex[:6]}"
    # before any scheduler runs: one Production version, one untagged
    before = finish(
        make_versions(
            clearml_env,
            project,
            [{"name": "room-a", "tags": ["Production"]}, {"name": "room-a"}],
        )
    )
    scheduler = schedulers(_settings(project, template, queue))
    url = scheduler.wait_listening()
    runs = wait_for(lambda: launched_runs(clearml_env, template), 30, "the first launch", scheduler.log)
    assert set(runs) == {before[0]["id"]}, (
        "a version finalized while no scheduler ran is launched; untagged never"
    )

    # a dataset name that did not exist when the scheduler started, and more versions of the first one
    after = finish(
        make_versions(
            clearml_env,
            project,
            [
                {"name": "room-b", "tags": ["Production"]},
                {"name": "room-a", "tags": ["Production"]},
                {"name": "room-a", "tags": ["staging"]},
            ],
        )
    )
    wanted = {before[0]["id"], after[0]["id"], after[1]["id"]}
    wait_for(lambda: set(launched_runs(clearml_env, template)) == wanted, 30, "three launches", scheduler.log)
    time.sleep(1.5)  # a few more polls change nothing
    runs = launched_runs(clearml_env, template)
    assert set(runs) == wanted
    for dataset_id, tasks in runs.items():
        assert len(tasks) == 1, f"dataset {dataset_id} launched {len(tasks)} times"
        [task] = tasks
        assert task["status"] == "queued"
        assert task["hyperparams"]["General"]["CLEARML_DATASET_ID"]["value"] == dataset_id
        assert f"dataset:{dataset_id}" in task["tags"]

    # an old version tagged Production later (from code here; the UI does the same) is launched too
    run_python(
        f"from clearml import Dataset; Dataset.get(dataset_id={before[1]['id']!r}).add_tags(['Production'])",
        clearml_env,
    )
    wanted.add(before[1]["id"])
    wait_for(
        lambda: set(launched_runs(clearml_env, template)) == wanted,
        30,
        "the late-tagged launch",
        scheduler.log,
    )

    metrics = scheduler.get("/metrics").text
    assert "occupancy_scheduler_launches_total 4.0" in metrics
    assert 'occupancy_scheduler_polls_total{outcome="ok"}' in metrics
    assert "occupancy_scheduler_launch_lag_seconds_count 4.0" in metrics
    assert scheduler.get("/healthz").status_code == 200
    ready = scheduler.get("/readyz")
    assert ready.status_code == 200 and ready.json()["template_id"] == template
    assert url.startswith("http://127.0.0.1:")
    # uvicorn re-raises the signal after its graceful shutdown, so the exit status says SIGTERM
    assert scheduler.kill(signal.SIGTERM) in (0, -signal.SIGTERM)
    assert "stopping: finishing the current pass" in scheduler.log.read_text()
    assert "occupancy.scheduler: stopped" in scheduler.log.read_text(), "SIGTERM stops it cleanly"


def test_exactly_once_through_sigkills_and_two_replicas(clearml_env, schedulers):
    """20 Production versions arrive while schedulers are SIGKILLed at random points 10 times, and for
    a while two replicas run at once: exactly 20 launches, none twice, none missed, no draft left."""
    project = f"Soak-{uuid.uuid4().hex[:6]}"
    template = create_template(clearml_env, project)
    queue = f"q-{uuid.uuid4().hex[:6]}"
    settings = _settings(project, template, queue, poll_interval_seconds=0.1)
    feeder = make_versions(
        clearml_env, project, [{"name": "sensors", "tags": ["Production"]} for _ in range(20)], pause=0.2
    )
    rng = random.Random(7)
    twin = schedulers(settings)  # a second replica by mistake, for the first half
    for round_ in range(10):
        scheduler = schedulers(settings)
        scheduler.wait_listening()
        time.sleep(rng.uniform(0.0, 1.2))  # killed anywhere: mid-poll, between clone and enqueue, ...
        scheduler.kill(signal.SIGKILL)
        if round_ == 4:
            twin.kill(signal.SIGKILL)
    versions = finish(feeder)
    assert len(versions) == 20
    survivor = schedulers(settings)
    survivor.wait_listening()
    wanted = {v["id"] for v in versions}

    def settled():
        runs = launched_runs(clearml_env, template)
        return set(runs) == wanted and all(t["status"] == "queued" for ts in runs.values() for t in ts)

    wait_for(settled, 60, "every version launched", survivor.log)
    time.sleep(2)  # the grace period passes; leftovers of killed schedulers are cleaned up
    runs = launched_runs(clearml_env, template)
    assert set(runs) == wanted, "none missed"
    duplicates = {d: [t["status"] for t in ts] for d, ts in runs.items() if len(ts) != 1}
    assert not duplicates, f"launched more than once: {duplicates}"
    from tests.conftest import api_client

    queued = api_client(clearml_env).queues.get_all(name=f"^{queue}$")[0].entries
    assert len(queued) == 20, "exactly 20 entries in the queue"


def test_a_bad_configuration_stops_it_at_start_naming_the_key(clearml_env, tmp_path):
    config = tmp_path / "scheduler.yaml"
    config.write_text("project: Occupancy\npoll_interval_seconds: soon\n")
    proc = subprocess.run(
        [sys.executable, "-m", "services.scheduler", "run", "--config", str(config)],
        env=clearml_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "poll_interval_seconds" in proc.stderr and str(config) in proc.stderr
    # a template that does not exist is named too, before anything is launched
    proc = subprocess.run(
        [sys.executable, "-m", "services.scheduler", "run"],
        env={**clearml_env, "OCCUPANCY_SCHEDULER_TEMPLATE_ID": "0" * 32},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "template_id: no task 000" in proc.stderr
