"""Registering the pipeline template: ``/healthz`` answers while it runs, it cannot hang (killed after
``register_timeout_seconds``, retried on the next poll), and replicas starting together register one."""

from __future__ import annotations

import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests
from starlette.testclient import TestClient

from services.scheduler.app import SchedulerLoop, create_app
from services.scheduler.metrics import SchedulerMetrics
from services.scheduler.reconcile import Reconciler
from services.scheduler.settings import load_settings
from services.scheduler.template import (
    RegistrationError,
    TemplatePending,
    TemplateSource,
    lock_name,
)
from tests.scheduler.conftest import api_for, create_template, sample, wait_for

HANG = [sys.executable, "-c", "import time; time.sleep(600)"]


def _templates(api, project: str) -> list[dict]:
    projects = api.call("projects.get_all", name=f"^{project}(/|$)", search_hidden=True)["projects"]
    if not projects:
        return []
    return api.call(
        "tasks.get_all",
        project=[p["id"] for p in projects],
        tags=["retrain-template"],
        search_hidden=True,
        only_fields=["id", "status", "system_tags"],
    )["tasks"]


def _locks(api, settings) -> list[dict]:
    name = lock_name(settings)
    return api.call("projects.get_all", name=f"^{name}$", search_hidden=True)["projects"]


def test_two_replicas_starting_together_register_one_template(clearml_env, schedulers):
    suffix = uuid.uuid4().hex[:6]
    project = f"Register-{suffix}"
    settings = {
        "project": project,
        "queue": f"services-{suffix}",
        "steps_queue": f"training-{suffix}",
        "poll_interval_seconds": 0.3,
    }
    replicas = [schedulers(settings, "a.log"), schedulers(settings, "b.log")]  # both before either looks
    for replica in replicas:
        replica.wait_listening()
    during: list[str] = []

    def both_ready():
        try:
            health = [r.get("/healthz").status_code for r in replicas]
            ready = [r.get("/readyz") for r in replicas]
        except requests.ConnectionError:
            return None
        assert health == [200, 200], "/healthz answers while the template is looked up or registered"
        during.extend(r.json()["template"] for r in ready if r.status_code == 503)
        return [r.json() for r in ready] if all(r.status_code == 200 for r in ready) else None

    first, second = wait_for(both_ready, 180, "both replicas ready", replicas[1].log)
    assert any(s.startswith(("registering", "waiting for another scheduler")) for s in during), during
    assert first["template_id"] == second["template_id"]
    api = api_for(clearml_env)
    [template] = _templates(api, project)
    assert template["id"] == first["template_id"]
    name = "occupancy_scheduler_template_registrations_total"
    registered = [sample_text(r.get("/metrics").text, name) for r in replicas]
    assert sorted(registered) == [0.0, 1.0], registered
    assert _locks(api, load_settings(environ={}, project=project)) == [], "the lock is released"


def sample_text(metrics: str, name: str) -> float:
    [line] = [line for line in metrics.splitlines() if line.startswith(name + " ")]
    return float(line.split()[-1])


def test_a_hanging_registration_is_killed_and_retried_on_the_next_poll(clearml_env):
    project = f"Hang-{uuid.uuid4().hex[:6]}"
    settings = load_settings(environ={}, project=project, register_timeout_seconds=1)
    api = api_for(clearml_env)
    reconciler = Reconciler(api, settings, metrics=SchedulerMetrics())
    reconciler.templates = TemplateSource(settings, command=HANG)
    loop = SchedulerLoop(reconciler, settings)
    http = TestClient(create_app(loop))
    started = time.monotonic()
    loop.poll_once()
    assert time.monotonic() - started < 60, "killed after register_timeout_seconds, not 600 s"
    ready = http.get("/readyz")
    assert ready.status_code == 503
    assert "took longer than 1 s" in ready.json()["last_error"], ready.json()
    assert sample(loop.metrics, "occupancy_scheduler_failures_total", stage="template") == 1
    assert _locks(api, settings) == [], "the lock is released, so that a replica can try"

    # the next poll registers again; this time the registration prints a template id
    template = create_template(clearml_env, project)
    reconciler.templates = TemplateSource(settings, command=[sys.executable, "-c", f"print({template!r})"])
    loop.poll_once()
    assert reconciler.template_id == template
    assert http.get("/readyz").status_code == 200


def test_sigterm_stops_a_registration_at_once(clearml_env):
    settings = load_settings(environ={}, project=f"Stop-{uuid.uuid4().hex[:6]}", register_timeout_seconds=600)
    source = TemplateSource(settings, command=HANG)
    source.stop_event.set()  # what SIGTERM does to the loop
    started = time.monotonic()
    with pytest.raises(RegistrationError, match="stopped"):
        source.resolve(api_for(clearml_env))
    assert time.monotonic() - started < 60


def test_a_lock_left_by_a_dead_replica_is_taken_over(clearml_env):
    project = f"Lock-{uuid.uuid4().hex[:6]}"
    settings = load_settings(environ={}, project=project, register_timeout_seconds=5)
    api = api_for(clearml_env)
    api.call("projects.create", name=lock_name(settings), system_tags=["hidden"])  # then SIGKILL
    template = create_template(clearml_env, project)
    prints = [sys.executable, "-c", f"print({template!r})"]
    with pytest.raises(TemplatePending, match="waiting for another scheduler"):
        TemplateSource(settings, command=prints).resolve(api)
    later = datetime.now(UTC) + timedelta(seconds=11)  # older than twice the registration timeout
    assert TemplateSource(settings, command=prints, clock=lambda: later).resolve(api) == template
    assert _locks(api, settings) == []
