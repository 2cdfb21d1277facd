"""Launch lag is counted from the moment a version became eligible: the latest of its finalize, the
moment it got the trigger tag (its last change) and the moment this scheduler started watching."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from occupancy_mlops.clearml_api import parse_time
from services.scheduler.metrics import SchedulerMetrics
from services.scheduler.reconcile import Reconciler
from services.scheduler.settings import load_settings
from tests.scheduler.conftest import api_for, create_template, finish, make_versions, sample


def _reconciler(env, project, template, clock):
    settings = load_settings(
        environ={},
        project=project,
        queue=f"q-{uuid.uuid4().hex[:6]}",
        template_id=template,
        dataset_parameter="General/CLEARML_DATASET_ID",
    )
    return Reconciler(api_for(env), settings, template, SchedulerMetrics(), clock=clock)


def _times(api, version_id):
    [doc] = api.call("tasks.get_all", id=[version_id], only_fields=["completed", "last_update"])["tasks"]
    return parse_time(doc["completed"]), parse_time(doc["last_update"])


def test_lag_counts_from_the_trigger_tag_when_it_came_after_the_finalize(clearml_env):
    project = f"Lag-{uuid.uuid4().hex[:6]}"
    template = create_template(clearml_env, project)
    [version] = finish(make_versions(clearml_env, project, [{"name": "s"}]))  # finalized, untagged
    time.sleep(1.0)  # a person tags it later
    api = api_for(clearml_env)
    api.call("tasks.edit", task=version["id"], tags=["Production"], force=True)
    finalized, tagged = _times(api, version["id"])
    assert tagged - finalized >= timedelta(seconds=1)
    now = datetime.now(UTC) + timedelta(seconds=5)  # the scheduler was watching since before
    rec = _reconciler(clearml_env, project, template, clock=lambda: now - timedelta(hours=1))
    rec.clock = lambda: now
    [launch] = rec.poll().launched
    assert launch.lag_seconds == pytest.approx((now - tagged).total_seconds(), abs=1e-3)
    assert launch.lag_seconds < (now - finalized).total_seconds() - 0.9, "not from the finalize"
    lag_sum = sample(rec.metrics, "occupancy_scheduler_launch_lag_seconds_sum")
    assert lag_sum == pytest.approx(launch.lag_seconds)


def test_lag_counts_from_the_scheduler_start_for_a_version_that_waited_for_it(clearml_env):
    project = f"Lag-{uuid.uuid4().hex[:6]}"
    template = create_template(clearml_env, project)
    finish(make_versions(clearml_env, project, [{"name": "s", "tags": ["Production"]}]))
    start = datetime.now(UTC) + timedelta(hours=1)  # no scheduler ran for an hour
    rec = _reconciler(clearml_env, project, template, clock=lambda: start)
    rec.clock = lambda: start + timedelta(seconds=7)
    [launch] = rec.poll().launched
    assert launch.lag_seconds == pytest.approx(7.0)


def test_labeled_to_finalized_is_exported_once_per_launched_version(clearml_env):
    """The loop's first stage: the labeling tools store ``labeled_at`` on the version; the scheduler,
    which reads the version anyway, exports labeled → finalized when it launches the retrain."""
    project = f"Lag-{uuid.uuid4().hex[:6]}"
    template = create_template(clearml_env, project)
    [version] = finish(make_versions(clearml_env, project, [{"name": "s", "tags": ["Production"]}]))
    api = api_for(clearml_env)
    finalized, _ = _times(api, version["id"])
    labeled = finalized - timedelta(seconds=42.5)
    api.call(
        "tasks.edit_hyper_params",
        task=version["id"],
        hyperparams=[{"section": "properties", "name": "labeled_at", "value": labeled.isoformat()}],
        force=True,
    )
    now = datetime.now(UTC) + timedelta(seconds=5)
    rec = _reconciler(clearml_env, project, template, clock=lambda: now - timedelta(hours=1))
    rec.clock = lambda: now
    assert len(rec.poll().launched) == 1
    assert rec.poll().launched == []  # launched once: observed once
    count = sample(rec.metrics, "occupancy_scheduler_labeled_to_finalized_seconds_count")
    total = sample(rec.metrics, "occupancy_scheduler_labeled_to_finalized_seconds_sum")
    assert count == 1 and total == pytest.approx(42.5, abs=1e-3)
