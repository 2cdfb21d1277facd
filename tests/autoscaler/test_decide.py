"""The scaling decision: one replica per task queued or running, within bounds; up at once, down only
after the cool-down and never below the agents at work."""

from __future__ import annotations

import pytest

from services.autoscaler.reconcile import Decision, PoolState, QueueLoad, decide
from services.autoscaler.settings import PoolSettings

POOL = PoolSettings(queue="training", deployment="agents-training", min_replicas=1, max_replicas=4)
NOW = 10_000.0


def _decide(
    queued: int, busy: int, idle: int, replicas: int, since: float | None = None, pool=POOL
) -> Decision:
    load = QueueLoad(queued, [f"b{i}:cpu" for i in range(busy)], [f"i{i}:cpu" for i in range(idle)])
    last = None if since is None else NOW - since
    return decide(pool, load, PoolState(replicas, last), NOW, cooldown=300)


@pytest.mark.parametrize(
    ("queued", "busy", "idle", "replicas", "since", "desired", "says"),
    [
        (3, 1, 0, 1, 5, 4, "scale up to 4"),  # up at once, whatever the cool-down
        (9, 1, 0, 1, None, 4, "scale up to 4 (max_replicas)"),
        (0, 0, 0, 0, None, 1, "scale up to 1"),  # min_replicas
        (0, 0, 3, 3, 600, 1, "scale down to 1"),
        (0, 0, 3, 3, 100, 3, "cool-down, 200 s before scaling down"),
        (0, 2, 1, 3, 600, 2, "scale down to 2"),  # never below the agents at work
        (0, 3, 0, 3, 600, 3, "3 replica(s) fit"),  # every replica busy: none goes
        (1, 1, 0, 2, None, 2, "2 replica(s) fit"),
    ],
)
def test_decisions(queued, busy, idle, replicas, since, desired, says):
    decision = _decide(queued, busy, idle, replicas, since)
    assert decision.desired == desired, decision
    assert says in decision.reason and f"{queued} queued, {busy} running, {idle} idle" in decision.reason


def test_tasks_per_replica_and_a_pool_that_may_sleep():
    pool = PoolSettings(
        queue="services", deployment="agents-services", min_replicas=0, max_replicas=3, tasks_per_replica=4
    )
    assert _decide(5, 0, 0, 0, pool=pool).desired == 2  # ceil(5 / 4)
    assert _decide(0, 0, 1, 1, since=None, pool=pool).desired == 0  # never scaled before: no cool-down
