"""One autoscaling pass: for every pool, read its queue and workers from ClearML and its Deployment from
Kubernetes, decide the replicas, and scale.

The decision (:func:`decide`) is a pure function: the pool needs one replica per
``tasks_per_replica`` tasks that are queued or running, within ``[min_replicas, max_replicas]``. It
scales up at once. It scales down only after ``scale_down_cooldown_seconds`` since the pool's last
change, and never below the agents that are running a task. Before scaling down, each pod is given a
``controller.kubernetes.io/pod-deletion-cost``: a busy agent's pod a high one, an idle agent's a low
one, so the ReplicaSet removes idle agents first (an agent's worker id starts with its pod's name,
which is its host name).

State lives in the cluster, not in memory: the time of a pool's last change is an annotation on its
Deployment, so a restarted autoscaler keeps the cool-down.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.autoscaler.metrics import AutoscalerMetrics
from services.autoscaler.settings import AutoscalerSettings, PoolSettings

log = logging.getLogger("occupancy.autoscaler")

LAST_SCALED = "occupancy-mlops/last-scaled-at"
"""Deployment annotation: unix time of the autoscaler's last change of the replicas."""
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
BUSY_COST, IDLE_COST = 1000, -1000


@dataclass(frozen=True)
class QueueLoad:
    """What ClearML says about one queue: tasks waiting, and the agents serving it."""

    queued: int
    busy_workers: list[str] = field(default_factory=list)
    idle_workers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PoolState:
    """What Kubernetes says about one pool's Deployment."""

    replicas: int
    last_scaled_at: float | None


@dataclass(frozen=True)
class Decision:
    pool: str
    current: int
    desired: int
    reason: str

    @property
    def action(self) -> str:
        return "up" if self.desired > self.current else "down" if self.desired < self.current else "hold"


def decide(pool: PoolSettings, load: QueueLoad, state: PoolState, now: float, cooldown: float) -> Decision:
    """The replicas ``pool`` should have now, and why (one line, for logs and ``/readyz``)."""
    busy = len(load.busy_workers)
    needed = math.ceil((load.queued + busy) / pool.tasks_per_replica)
    desired = min(max(needed, pool.min_replicas), pool.max_replicas)
    why = f"{load.queued} queued, {busy} running, {len(load.idle_workers)} idle"
    current = state.replicas
    if desired > current:
        capped = " (max_replicas)" if needed > pool.max_replicas else ""
        return Decision(pool.queue, current, desired, f"{why}: scale up to {desired}{capped}")
    if desired < current:
        # ``needed`` counts the running tasks: never below the agents at work
        since = None if state.last_scaled_at is None else now - state.last_scaled_at
        if since is not None and since < cooldown:
            return Decision(
                pool.queue,
                current,
                current,
                f"{why}: cool-down, {cooldown - since:.0f} s before scaling down",
            )
        return Decision(pool.queue, current, desired, f"{why}: scale down to {desired}")
    return Decision(pool.queue, current, current, f"{why}: {current} replica(s) fit")


class ClearmlQueues(Protocol):
    def load(self, queue: str) -> QueueLoad: ...


class Cluster(Protocol):
    def read(self, deployment: str) -> PoolState: ...

    def scale(self, deployment: str, replicas: int, now: float) -> None: ...

    def set_deletion_cost(self, pod: str, cost: int) -> bool: ...


class ApiQueues:
    """Queue depth and workers through the ClearML REST API (``queues.get_all``, ``workers.get_all``)."""

    def __init__(self, api: Any) -> None:
        self.api = api

    def load(self, queue: str) -> QueueLoad:
        import re

        found = self.api.call(
            "queues.get_all", name=f"^{re.escape(queue)}$", only_fields=["id", "name", "entries"]
        )["queues"]
        matching = [q for q in found if q.get("name") == queue]
        if not matching:
            raise LookupError(f"queue {queue!r} does not exist on the ClearML server")
        queue_id = matching[0]["id"]
        queued = len(matching[0].get("entries") or [])
        busy: list[str] = []
        idle: list[str] = []
        for worker in self.api.call("workers.get_all")["workers"]:
            if queue_id not in {q.get("id") for q in worker.get("queues") or []}:
                continue
            (busy if worker.get("task") else idle).append(str(worker["id"]))
        return QueueLoad(queued, sorted(busy), sorted(idle))


def pod_of(worker_id: str) -> str:
    """The pod name in an agent's worker id (``<host>:<suffix>``; the host name is the pod's name)."""
    return worker_id.split(":", 1)[0]


@dataclass
class PassResult:
    decisions: list[Decision] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Reconciler:
    def __init__(
        self,
        settings: AutoscalerSettings,
        queues: ClearmlQueues,
        cluster: Cluster,
        metrics: AutoscalerMetrics,
        clock: Any = time.time,
    ) -> None:
        self.settings = settings
        self.queues = queues
        self.cluster = cluster
        self.metrics = metrics
        self.clock = clock
        self.last: dict[str, Decision] = {}

    def poll(self) -> PassResult:
        """One pass over every pool; a pool that fails is reported and the others go on."""
        result = PassResult()
        for pool in self.settings.pools:
            try:
                decision = self._pool(pool)
            except PoolError as exc:  # one pool's failure must not stop the others
                self.metrics.failures.labels(pool=pool.queue, stage=exc.stage).inc()
                message = f"pool {pool.queue}: {exc.stage}: {type(exc.cause).__name__}: {exc.cause}"
                log.warning(message)
                result.errors.append(message)
                continue
            result.decisions.append(decision)
        return result

    def _pool(self, pool: PoolSettings) -> Decision:
        with _stage("clearml"):
            load = self.queues.load(pool.queue)
        with _stage("kubernetes"):
            state = self.cluster.read(pool.deployment)
        now = self.clock()
        decision = decide(pool, load, state, now, self.settings.scale_down_cooldown_seconds)
        labels = {"pool": pool.queue}
        self.metrics.queued.labels(**labels).set(load.queued)
        self.metrics.workers.labels(state="busy", **labels).set(len(load.busy_workers))
        self.metrics.workers.labels(state="idle", **labels).set(len(load.idle_workers))
        self.metrics.replicas.labels(**labels).set(state.replicas)
        self.metrics.desired.labels(**labels).set(decision.desired)
        if decision.action != "hold":
            if not self.settings.dry_run:
                self._apply(pool, load, decision, now)
                self.metrics.replicas.labels(**labels).set(decision.desired)
            self.metrics.scalings.labels(direction=decision.action, **labels).inc()
            log.info(
                "pool %s (%s): %d → %d replicas: %s%s",
                pool.queue,
                pool.deployment,
                decision.current,
                decision.desired,
                decision.reason,
                " (dry run: nothing changed)" if self.settings.dry_run else "",
            )
        self.last[pool.queue] = decision
        return decision

    def _apply(self, pool: PoolSettings, load: QueueLoad, decision: Decision, now: float) -> None:
        with _stage("kubernetes"):
            if decision.action == "down":  # the ReplicaSet removes the lowest deletion cost first
                for worker in load.busy_workers:
                    self.cluster.set_deletion_cost(pod_of(worker), BUSY_COST)
                for worker in load.idle_workers:
                    self.cluster.set_deletion_cost(pod_of(worker), IDLE_COST)
            self.cluster.scale(pool.deployment, decision.desired, now)


class PoolError(RuntimeError):
    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"{stage}: {cause}")
        self.stage = stage
        self.cause = cause


@contextlib.contextmanager
def _stage(stage: str) -> Iterator[None]:
    """Name what failed (``clearml`` or ``kubernetes``) for the metrics and the log."""
    try:
        yield
    except Exception as exc:
        raise PoolError(stage, exc) from exc
