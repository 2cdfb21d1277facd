"""The claim protocol, step by step, with two reconcilers in this process against the local server.

A scheduler can die between cloning the template and enqueuing the clone, and two replicas can claim
the same version at the same moment; these tests stop the reconcilers at exactly those points.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from clearml.backend_api import Session

from occupancy_mlops.clearml_api import ClearmlApi
from services.scheduler.reconcile import Reconciler
from services.scheduler.settings import load_settings
from tests.scheduler.conftest import create_template, finish, launched_runs, make_versions


def _reconciler(env, project, template, queue, clock=None) -> Reconciler:
    session = Session(
        api_key=env["CLEARML_API_ACCESS_KEY"],
        secret_key=env["CLEARML_API_SECRET_KEY"],
        host=env["CLEARML_API_HOST"],
    )
    settings = load_settings(
        environ={},
        project=project,
        queue=queue,
        template_id=template,
        dataset_parameter="General/CLEARML_DATASET_ID",
        claim_grace_seconds=30,
    )
    kwargs = {"clock": clock} if clock else {}
    return Reconciler(ClearmlApi(session), settings, template, **kwargs)


def _setup(clearml_env, n=1):
    project = f"Claim-{uuid.uuid4().hex[:6]}"
    template = create_template(clearml_env, project)
    versions = finish(make_versions(clearml_env, project, [{"name": "s", "tags": ["Production"]}] * n))
    return project, template, f"q-{uuid.uuid4().hex[:6]}", versions


def test_simultaneous_claims_leave_one_queued_run(clearml_env):
    project, template, queue, [version] = _setup(clearml_env)
    a = _reconciler(clearml_env, project, template, queue)
    b = _reconciler(clearml_env, project, template, queue)
    [v] = a.tagged_versions(a.dataset_projects())
    # both replicas saw no run and cloned before either enqueued
    mine_a, mine_b = a._claim(v), b._claim(v)
    key = f"retrain-of:{version['id']}"
    runs = a.runs_by_key([key])[key]
    assert {r.id for r in runs} == {mine_a, mine_b}
    from services.scheduler.reconcile import PollResult

    ra, rb = PollResult(), PollResult()
    b._settle(v, runs, mine_b, rb)  # b, second to clone, loses: deletes its draft, does not enqueue
    a._settle(v, a.runs_by_key([key])[key], mine_a, ra)
    assert [x.run_id for x in ra.launched] == [mine_a] and rb.launched == []
    assert rb.duplicates_removed == 1
    [run] = launched_runs(clearml_env, template)[version["id"]]
    assert run["id"] == mine_a and run["status"] == "queued"
    # and a later poll of either changes nothing
    assert a.poll().launched == [] and b.poll().launched == []
    assert len(launched_runs(clearml_env, template)[version["id"]]) == 1


def test_a_draft_left_by_a_dead_scheduler_is_enqueued_after_the_grace_period(clearml_env):
    project, template, queue, [version] = _setup(clearml_env)
    dead = _reconciler(clearml_env, project, template, queue)
    [v] = dead.tagged_versions(dead.dataset_projects())
    orphan = dead._claim(v)  # ... and SIGKILL before enqueue
    now = datetime.now(UTC)
    fresh = _reconciler(clearml_env, project, template, queue, clock=lambda: now)
    result = fresh.poll()
    assert result.launched == [] and result.waiting == 1, "a young draft may still be enqueued by its owner"
    [run] = launched_runs(clearml_env, template)[version["id"]]
    assert run["status"] == "created"
    later = _reconciler(clearml_env, project, template, queue, clock=lambda: now + timedelta(seconds=31))
    result = later.poll()
    assert [x.run_id for x in result.launched] == [orphan], "adopted, not cloned again"
    [run] = launched_runs(clearml_env, template)[version["id"]]
    assert run["status"] == "queued"


def test_a_run_that_already_ran_is_never_launched_again(clearml_env):
    project, template, queue, versions = _setup(clearml_env, n=2)
    rec = _reconciler(clearml_env, project, template, queue)
    assert len(rec.poll().launched) == 2
    runs = launched_runs(clearml_env, template)
    api = rec.api
    first = runs[versions[0]["id"]][0]["id"]
    api.call("tasks.dequeue", task=first)
    api.call("tasks.started", task=first, force=True)
    api.call("tasks.failed", task=first, force=True)
    second = runs[versions[1]["id"]][0]["id"]
    api.call("tasks.archive", tasks=[second])
    assert rec.poll().launched == [], "failed or archived runs count as launched: retry is a user's decision"
    assert {d: len(r) for d, r in launched_runs(clearml_env, template).items()} == {
        versions[0]["id"]: 1,
        versions[1]["id"]: 1,
    }


def test_a_run_already_queued_beats_an_earlier_draft(clearml_env):
    """Replica A cloned first but stalled; replica B, not seeing A's draft yet, cloned and enqueued.
    The queued run is the launch: A's earlier draft is deleted, never enqueued as a second launch."""
    project, template, queue, [version] = _setup(clearml_env)
    a = _reconciler(clearml_env, project, template, queue)
    b = _reconciler(clearml_env, project, template, queue)
    [v] = a.tagged_versions(a.dataset_projects())
    earlier = a._claim(v)
    later = b._claim(v)
    assert b._enqueue(later)
    now = datetime.now(UTC) + timedelta(seconds=60)  # A's draft is past the grace period
    result = _reconciler(clearml_env, project, template, queue, clock=lambda: now).poll()
    assert result.launched == [] and result.duplicates_removed == 1
    [run] = launched_runs(clearml_env, template)[version["id"]]
    assert (run["id"], run["status"]) == (later, "queued")
    assert earlier != later
    from tests.conftest import api_client

    [entry] = api_client(clearml_env).queues.get_all(name=f"^{queue}$")[0].entries
    assert entry.task == later, "one entry in the queue: the run that was queued first"
