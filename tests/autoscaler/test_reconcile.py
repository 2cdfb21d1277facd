"""A pass against the local ClearML server's real queues and workers (the cluster is a fake of our own
collaborator here; ``test_kube.py`` drives the Kubernetes calls)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pytest
from prometheus_client import generate_latest

from occupancy_mlops.clearml_api import ClearmlApi
from services.autoscaler.metrics import AutoscalerMetrics
from services.autoscaler.reconcile import BUSY_COST, IDLE_COST, ApiQueues, PoolState, Reconciler
from services.autoscaler.settings import AutoscalerSettings
from tests.conftest import api_client


@dataclass
class FakeCluster:
    replicas: dict[str, int]
    last_scaled: dict[str, float] = field(default_factory=dict)
    costs: dict[str, int] = field(default_factory=dict)
    scaled: list[tuple[str, int]] = field(default_factory=list)
    broken: set[str] = field(default_factory=set)

    def read(self, deployment: str) -> PoolState:
        if deployment in self.broken:
            raise ConnectionError("kube-apiserver unreachable")
        return PoolState(self.replicas[deployment], self.last_scaled.get(deployment))

    def scale(self, deployment: str, replicas: int, now: float) -> None:
        self.replicas[deployment] = replicas
        self.last_scaled[deployment] = now
        self.scaled.append((deployment, replicas))

    def set_deletion_cost(self, pod: str, cost: int) -> bool:
        self.costs[pod] = cost
        return True


@pytest.fixture
def queues(clearml_env):
    """Two fresh queues: 3 tasks waiting in ``train-*``, 1 busy and 1 idle agent on it."""
    client = api_client(clearml_env)
    session = client.session
    suffix = uuid.uuid4().hex[:6]
    names = {"train": f"train-{suffix}", "ctl": f"ctl-{suffix}"}
    ids = {k: client.queues.create(name=v).id for k, v in names.items()}
    running = client.tasks.create(name="running", type="training").id
    for i in range(3):
        task = client.tasks.create(name=f"waiting {i}", type="training").id
        client.tasks.enqueue(task=task, queue=ids["train"])

    def send(action: str, **body):
        res = session.send_request("workers", action, json=body)
        assert res.status_code == 200, res.text

    send("register", worker=f"agents-train-busy-{suffix}:cpu:0", queues=[ids["train"]])
    send(
        "status_report",
        worker=f"agents-train-busy-{suffix}:cpu:0",
        task=running,
        queues=[ids["train"]],
        timestamp=0,
    )
    send("register", worker=f"agents-train-idle-{suffix}:cpu:0", queues=[ids["train"]])
    send("status_report", worker=f"agents-train-idle-{suffix}:cpu:0", queues=[ids["train"]], timestamp=0)
    return names, suffix


def _reconciler(settings: dict, cluster: FakeCluster, now: list[float]) -> Reconciler:
    return Reconciler(
        AutoscalerSettings(**settings), ApiQueues(ClearmlApi()), cluster, AutoscalerMetrics(), lambda: now[0]
    )


def test_a_pass_scales_on_queue_depth_and_busy_agents(clearml_env, queues, monkeypatch):
    for key, value in clearml_env.items():
        monkeypatch.setenv(key, value)
    names, suffix = queues
    pools = [
        {"queue": names["train"], "deployment": "agents-training", "min_replicas": 0, "max_replicas": 8},
        {"queue": names["ctl"], "deployment": "agents-services", "min_replicas": 1, "max_replicas": 2},
        {"queue": f"missing-{suffix}", "deployment": "agents-other", "max_replicas": 2},
    ]
    cluster = FakeCluster({"agents-training": 2, "agents-services": 3, "agents-other": 1})
    now = [1000.0]
    reconciler = _reconciler({"pools": pools, "scale_down_cooldown_seconds": 300}, cluster, now)

    result = reconciler.poll()
    by_pool = {d.pool: d for d in result.decisions}
    # 3 queued + 1 running → 4 replicas at once; an empty queue → its minimum (never scaled before)
    assert by_pool[names["train"]].desired == 4 and cluster.replicas["agents-training"] == 4
    assert "3 queued, 1 running, 1 idle" in by_pool[names["train"]].reason
    assert cluster.replicas["agents-services"] == 1
    # a missing queue is reported, the other pools are settled anyway
    assert len(result.errors) == 1 and f"queue 'missing-{suffix}' does not exist" in result.errors[0]
    assert result.errors[0].startswith(f"pool missing-{suffix}: clearml:")

    # the queue drains: scaling down waits out the cool-down, then removes idle agents first
    client = api_client(clearml_env)
    queue_id = client.queues.get_all(name=f"^{names['train']}$")[0].id
    for entry in client.queues.get_by_id(queue=queue_id).entries:
        client.queues.remove_task(queue=queue_id, task=entry.task)
    now[0] += 60
    held = {d.pool: d for d in reconciler.poll().decisions}[names["train"]]
    assert held.desired == 4 and "cool-down, 240 s before scaling down" in held.reason
    now[0] += 300
    down = {d.pool: d for d in reconciler.poll().decisions}[names["train"]]
    assert down.desired == 1 and cluster.replicas["agents-training"] == 1, down
    assert cluster.costs == {
        f"agents-train-busy-{suffix}": BUSY_COST,
        f"agents-train-idle-{suffix}": IDLE_COST,
    }

    metrics = generate_latest(reconciler.metrics.registry).decode()
    assert f'occupancy_autoscaler_scalings_total{{direction="down",pool="{names["train"]}"}} 1.0' in metrics
    assert f'occupancy_autoscaler_failures_total{{pool="missing-{suffix}",stage="clearml"}} 3.0' in metrics


def test_the_cool_down_survives_a_restart_and_dry_run_changes_nothing(clearml_env, queues, monkeypatch):
    for key, value in clearml_env.items():
        monkeypatch.setenv(key, value)
    names, _ = queues
    pools = [{"queue": names["ctl"], "deployment": "agents-services", "min_replicas": 0, "max_replicas": 2}]
    cluster = FakeCluster(
        {"agents-services": 2}, last_scaled={"agents-services": 950.0}
    )  # set by a predecessor
    decision = _reconciler({"pools": pools}, cluster, [1000.0]).poll().decisions[0]
    assert decision.desired == 2 and "cool-down, 250 s" in decision.reason
    dry = _reconciler({"pools": pools, "dry_run": True}, cluster, [2000.0]).poll().decisions[0]
    assert dry.desired == 0 and cluster.replicas["agents-services"] == 2 and cluster.scaled == []
    cluster.broken.add("agents-services")
    failed = _reconciler({"pools": pools}, cluster, [3000.0]).poll()
    assert (
        failed.decisions == []
        and "kubernetes: ConnectionError: kube-apiserver unreachable" in failed.errors[0]
    )
