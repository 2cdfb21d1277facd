"""A poll that fails, whatever the exception, is counted by stage and the loop goes on; ``/readyz``
turns 503 after ``unready_after_failures`` failed polls or failed launches in a row, naming the error,
and 200 again after a success. In-process loops against the local server (no HTTP server: the app's
routes through Starlette's test client)."""

from __future__ import annotations

import uuid

from starlette.testclient import TestClient

from services.scheduler.app import SchedulerLoop, create_app
from services.scheduler.metrics import SchedulerMetrics
from services.scheduler.reconcile import Reconciler
from services.scheduler.settings import SchedulerSettings, load_settings
from tests.scheduler.conftest import (
    api_for,
    create_template,
    finish,
    launched_runs,
    make_versions,
    sample,
    wait_for,
)


def _setup(env, n=1):
    project = f"Fail-{uuid.uuid4().hex[:6]}"
    template = create_template(env, project)
    versions = finish(make_versions(env, project, [{"name": "s", "tags": ["Production"]}] * n))
    settings = load_settings(
        environ={},
        project=project,
        queue=f"q-{uuid.uuid4().hex[:6]}",
        template_id=template,
        dataset_parameter="General/CLEARML_DATASET_ID",
        poll_interval_seconds=0.1,
        unready_after_failures=3,
    )
    return template, versions, settings


def _broken(settings: SchedulerSettings, **values) -> SchedulerSettings:
    """Settings the loader refuses, as an older loader or a future bug could let through."""
    return SchedulerSettings.model_construct(**{**settings.model_dump(), **values})


def _loop(env, settings, template) -> SchedulerLoop:
    reconciler = Reconciler(api_for(env), settings, template, SchedulerMetrics())
    return SchedulerLoop(reconciler, settings)


def test_an_overflow_in_a_poll_is_counted_and_the_loop_goes_on(clearml_env):
    """``lookback_hours: .inf`` used to kill the poll thread with an OverflowError."""
    template, [version], good = _setup(clearml_env)
    loop = _loop(clearml_env, _broken(good, lookback_hours=float("inf")), template)
    http = TestClient(create_app(loop))  # no lifespan: the test drives the loop
    loop.start()
    try:
        wait_for(
            lambda: sample(loop.metrics, "occupancy_scheduler_failures_total", stage="list_versions") >= 3,
            60,
            "three failed polls",
        )
        assert loop.thread.is_alive(), "the poll thread survives any exception"
        assert http.get("/healthz").status_code == 200
        ready = http.get("/readyz")
        assert ready.status_code == 503
        assert "list_versions: OverflowError" in ready.json()["last_error"], ready.json()
        assert ready.json()["failed_polls_in_a_row"] >= 3
        assert sample(loop.metrics, "occupancy_scheduler_polls_total", outcome="error") >= 3

        loop.reconciler.settings = good  # the configuration fixed: the next poll succeeds
        wait_for(lambda: http.get("/readyz").status_code == 200, 60, "ready again")
        assert http.get("/readyz").json()["last_error"] is None
        wait_for(lambda: version["id"] in launched_runs(clearml_env, template), 30, "the launch")
    finally:
        loop.stop()


def test_a_parameters_key_without_a_slash_fails_the_launches_not_the_loop(clearml_env):
    template, versions, good = _setup(clearml_env, n=2)
    loop = _loop(clearml_env, _broken(good, parameters={"noslash": "x"}), template)
    http = TestClient(create_app(loop))
    loop.poll_once()  # two launches fail (ValueError), fewer than 3 in a row
    assert http.get("/readyz").status_code == 200
    loop.poll_once()
    ready = http.get("/readyz")
    assert ready.status_code == 503, ready.json()
    assert "claim: ValueError" in ready.json()["last_error"]
    assert ready.json()["failed_launches_in_a_row"] == 4
    assert sample(loop.metrics, "occupancy_scheduler_failures_total", stage="claim") == 4
    assert launched_runs(clearml_env, template) == {}

    loop.reconciler.settings = good
    loop.poll_once()
    assert set(launched_runs(clearml_env, template)) == {v["id"] for v in versions}
    assert http.get("/readyz").status_code == 200, "a success makes it ready again"
    assert http.get("/readyz").json()["failed_launches_in_a_row"] == 0


def test_readyz_turns_503_when_every_launch_fails(clearml_env):
    """The template was deleted: the server refuses every clone, and the scheduler says so."""
    template, _, settings = _setup(clearml_env)
    loop = _loop(clearml_env, settings, template)
    http = TestClient(create_app(loop))
    loop.reconciler.api.call("tasks.delete", task=template, force=True)
    for _ in range(3):
        loop.poll_once()
    ready = http.get("/readyz")
    assert ready.status_code == 503, ready.json()
    assert "tasks.get_by_id failed" in ready.json()["last_error"]
    assert sample(loop.metrics, "occupancy_scheduler_failures_total", stage="claim") == 3


def test_a_template_found_by_tag_and_deleted_is_looked_up_again(clearml_env):
    template, [version], settings = _setup(clearml_env)
    api = api_for(clearml_env)
    api.call("tasks.edit", task=template, tags=["retrain-template"], force=True)
    by_tag = SchedulerSettings(**{**settings.model_dump(), "template_id": "", "register_template": False})
    loop = _loop(clearml_env, by_tag, None)
    tags = ["retrain-template"]
    later = api.call("tasks.clone", task=template, new_task_name="train v2", new_task_tags=tags)["id"]
    api.call("tasks.delete", task=template, force=True)  # gone before the first clone
    loop.reconciler.template_id = template  # found before it was deleted
    loop.poll_once()
    assert loop.reconciler.template_id is None, "forgotten after the failed clone"
    loop.poll_once()
    assert loop.reconciler.template_id == later
    assert version["id"] in launched_runs(clearml_env, later)
