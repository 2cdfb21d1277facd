"""The autoscaler's Kubernetes calls against a real kube-apiserver (1.20.2, built from Debian's source
by ``make kube-apiserver``) with etcd, RBAC on, and the chart's own autoscaler Role and RoleBinding.

The autoscaler acts as the chart's ServiceAccount (a static token whose user is
``system:serviceaccount:<namespace>:<name>`` of the rendered RoleBinding's subject), so what it may do
is what the chart grants, checked by the apiserver's RBAC, not by us. There is no kubelet: the agents'
pods are stored objects that never start.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from kubernetes import client, utils
from kubernetes.client.exceptions import ApiException

from occupancy_mlops.clearml_api import ClearmlApi
from services.autoscaler.kube import KubeCluster
from services.autoscaler.metrics import AutoscalerMetrics
from services.autoscaler.reconcile import (
    BUSY_COST,
    DELETION_COST,
    IDLE_COST,
    LAST_SCALED,
    ApiQueues,
    PoolState,
    Reconciler,
)
from services.autoscaler.settings import AutoscalerSettings
from tests.autoscaler.kube import KubeApiserver, User, kube_apiserver, missing_tools
from tests.charts import chart
from tests.conftest import api_client

SCENARIO = "only-autoscaler"
NAMESPACE = chart.NAMESPACE


@dataclass(frozen=True)
class Rendered:
    """What the chart renders for the autoscaler: the names the test needs, and the objects."""

    objects: dict[str, dict[str, Any]]  # "Kind/name" → object

    def one(self, kind: str, suffix: str) -> dict[str, Any]:
        found = [o for k, o in self.objects.items() if k.startswith(f"{kind}/") and k.endswith(suffix)]
        assert len(found) == 1, f"the chart renders {len(found)} {kind} named *{suffix}"
        return found[0]

    @property
    def settings(self) -> dict[str, Any]:
        """The autoscaler's settings file, as the chart's ConfigMap mounts it."""
        data = self.one("ConfigMap", "-autoscaler")["data"]["autoscaler.yaml"]
        return dict(yaml.safe_load(data))

    def pool(self, queue: str) -> str:
        return next(str(p["deployment"]) for p in self.settings["pools"] if p["queue"] == queue)

    @property
    def own_deployment(self) -> str:
        return str(self.one("Deployment", "-autoscaler")["metadata"]["name"])


@dataclass
class Kube:
    api: KubeApiserver
    chart: Rendered
    admin: Any  # ApiClient as cluster admin
    autoscaler: Any  # ApiClient as the chart's autoscaler ServiceAccount

    def pod(self, deployment: str, suffix: str) -> str:
        """Create a Pod of ``deployment``'s template, named as its ReplicaSet would name it."""
        template = self.chart.one("Deployment", deployment)["spec"]["template"]
        name = f"{deployment}-5d8f7c9b4-{suffix}"
        body = {
            "metadata": {"name": name, "labels": template["metadata"]["labels"]},
            "spec": template["spec"],
        }
        core(self.admin).create_namespaced_pod(NAMESPACE, body)
        return name

    def deployment(self, name: str) -> Any:
        return apps(self.admin).read_namespaced_deployment(name, NAMESPACE)

    def audit(self, user: str) -> list[dict[str, Any]]:
        """The apiserver's audit events of ``user`` (what it asked, and what it was answered)."""
        lines = (self.api.folder / "audit.log").read_text().splitlines()
        return [e for e in map(json.loads, lines) if e.get("user", {}).get("username") == user]


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    """kube-apiserver + etcd with the chart's autoscaler objects applied (as the cluster admin)."""
    missing = missing_tools()
    if missing:
        pytest.fail("\n".join(missing))
    rendered = Rendered({chart.name_of(o): o for o in chart.objects(SCENARIO)})
    subject = rendered.one("RoleBinding", "-autoscaler")["subjects"][0]
    assert subject["kind"] == "ServiceAccount"
    ns = subject["namespace"]
    users = {
        "admin": User("admin", ("system:masters",)),
        "autoscaler": User(
            f"system:serviceaccount:{ns}:{subject['name']}",
            ("system:serviceaccounts", f"system:serviceaccounts:{ns}"),
        ),
    }
    with kube_apiserver(tmp_path_factory.mktemp("kube-apiserver"), users) as api:
        admin = api.client("admin")
        assert client.VersionApi(admin).get_code().git_version == "v1.20.2"
        core(admin).create_namespace({"metadata": {"name": NAMESPACE}})
        for kind in ("ServiceAccount", "Role", "RoleBinding"):  # the chart's, unchanged
            for key, obj in rendered.objects.items():
                if key.startswith(f"{kind}/") and key.endswith("-autoscaler"):
                    utils.create_from_dict(admin, obj, namespace=NAMESPACE)
        pools = [p["deployment"] for p in rendered.settings["pools"]]
        for name in [*pools, rendered.own_deployment]:  # two pools, and a Deployment that is not one
            utils.create_from_dict(admin, rendered.one("Deployment", name), namespace=NAMESPACE)
        core(admin).create_namespaced_secret(
            NAMESPACE,
            {
                "metadata": {"name": "clearml-credentials"},
                "stringData": {"access_key": "a", "secret_key": "s"},
            },
        )
        yield Kube(api, rendered, admin, api.client("autoscaler"))


def core(api_client: Any) -> Any:
    return client.CoreV1Api(api_client)


def apps(api_client: Any) -> Any:
    return client.AppsV1Api(api_client)


def forbidden(call: Callable[[], Any]) -> str:
    """Run ``call``; it must be refused by RBAC (403). Returns the apiserver's message."""
    with pytest.raises(ApiException) as refused:
        call()
    assert refused.value.status == 403, refused.value
    return str(json.loads(str(refused.value.body))["message"])


def test_the_chart_role_lets_the_autoscaler_read_and_scale_its_pools(kube: Kube) -> None:
    pool = kube.chart.pool("training")
    cluster = KubeCluster(NAMESPACE, kube.autoscaler)

    # the chart leaves replicas to the autoscaler: the apiserver defaults them to 1; never scaled yet
    assert kube.chart.one("Deployment", pool)["spec"].get("replicas") is None
    assert cluster.read(pool) == PoolState(1, None)

    cluster.scale(pool, 3, now=1_700_000_000.25)
    stored = kube.deployment(pool)
    assert stored.spec.replicas == 3
    assert stored.metadata.annotations[LAST_SCALED] == "1700000000.250"
    scale = apps(kube.admin).read_namespaced_deployment_scale(pool, NAMESPACE)
    assert scale.spec.replicas == 3
    # a restarted autoscaler reads the change back from the Deployment
    assert KubeCluster(NAMESPACE, kube.api.client("autoscaler")).read(pool) == PoolState(3, 1_700_000_000.25)

    # the replicas went through the scale subresource, as the autoscaler's own user
    user = kube.api.users["autoscaler"].name
    deadline = time.monotonic() + 10  # the audit event is written once the response is sent
    while True:
        calls = [
            (e["verb"], e["objectRef"].get("subresource", ""), e["responseStatus"]["code"])
            for e in kube.audit(user)
            if e["objectRef"].get("name") == pool
        ]
        if ("patch", "scale", 200) in calls or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert ("patch", "scale", 200) in calls and ("patch", "", 200) in calls, calls

    pod = kube.pod(pool, "idle1")
    assert cluster.set_deletion_cost(pod, IDLE_COST) is True
    stored_pod = core(kube.admin).read_namespaced_pod(pod, NAMESPACE)
    assert stored_pod.metadata.annotations[DELETION_COST] == str(IDLE_COST)
    # an agent outside the cluster (or a pod already removed) has no pod: reported, not raised
    assert cluster.set_deletion_cost(f"{pool}-5d8f7c9b4-gone0", BUSY_COST) is False


def test_the_autoscaler_may_do_nothing_else(kube: Kube) -> None:
    cluster = KubeCluster(NAMESPACE, kube.autoscaler)
    its_apps, its_core = apps(kube.autoscaler), core(kube.autoscaler)
    own = kube.chart.own_deployment
    user = kube.api.users["autoscaler"].name

    # a Deployment that is not one of its pools (its own): neither scaled nor read
    message = forbidden(lambda: cluster.scale(own, 5, now=1.0))
    assert user in message and "deployments/scale" in message, message
    forbidden(lambda: cluster.read(own))
    assert kube.deployment(own).spec.replicas == 1
    assert LAST_SCALED not in (kube.deployment(own).metadata.annotations or {})
    forbidden(lambda: its_apps.list_namespaced_deployment(NAMESPACE))  # names only: no listing

    # pods: a deletion cost, nothing more
    pod = kube.pod(kube.chart.pool("services"), "keep1")
    forbidden(lambda: its_core.delete_namespaced_pod(pod, NAMESPACE))
    another = {"metadata": {"name": "x"}, "spec": {"containers": [{"name": "x", "image": "x:1"}]}}
    forbidden(lambda: its_core.create_namespaced_pod(NAMESPACE, another))
    forbidden(lambda: its_core.read_namespaced_pod(pod, NAMESPACE))
    assert core(kube.admin).read_namespaced_pod(pod, NAMESPACE).metadata.name == pod

    # no Secrets (the ClearML credentials live in one), no other namespace
    forbidden(lambda: its_core.read_namespaced_secret("clearml-credentials", NAMESPACE))
    forbidden(lambda: its_core.list_namespaced_secret(NAMESPACE))
    message = forbidden(lambda: KubeCluster("default", kube.autoscaler).read(kube.chart.pool("training")))
    assert 'in the namespace "default"' in message, message


@pytest.fixture
def pool_queue(clearml_env: dict[str, str], kube: Kube) -> tuple[str, list[str]]:
    """A fresh queue with 3 tasks waiting; two agents of the chart's ``services`` pool serve it, one
    busy and one idle, each a pod in the apiserver whose name is its worker id (as the chart sets it)."""
    api = api_client(clearml_env)
    queue = f"services-{uuid.uuid4().hex[:6]}"
    queue_id = api.queues.create(name=queue).id
    for i in range(3):
        api.tasks.enqueue(task=api.tasks.create(name=f"waiting {i}", type="training").id, queue=queue_id)
    running = api.tasks.create(name="running", type="training").id
    pool = kube.chart.pool("services")
    pods = [kube.pod(pool, f"busy-{queue[-6:]}"), kube.pod(pool, f"idle-{queue[-6:]}")]
    for pod, task in zip(pods, [running, None], strict=True):
        for action, extra in (("register", {}), ("status_report", {"timestamp": 0, "task": task})):
            body = {"worker": pod, "queues": [queue_id], **{k: v for k, v in extra.items() if v is not None}}
            res = api.session.send_request("workers", action, json=body)
            assert res.status_code == 200, res.text
    return queue, pods


def test_a_pass_against_clearml_scales_the_pool_in_the_apiserver(
    kube: Kube,
    clearml_env: dict[str, str],
    pool_queue: tuple[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in clearml_env.items():
        monkeypatch.setenv(key, value)
    queue, (busy_pod, idle_pod) = pool_queue
    pool = kube.chart.pool("services")
    # the chart's settings, with the services pool serving the fresh queue
    settings = kube.chart.settings
    settings["pools"] = [{**p, "queue": queue} for p in settings["pools"] if p["deployment"] == pool]
    cooldown = settings["scale_down_cooldown_seconds"]
    now = [1_800_000_000.0]

    def reconciler() -> Reconciler:  # a new one each pass: the state must come from the apiserver
        return Reconciler(
            AutoscalerSettings(**settings),
            ApiQueues(ClearmlApi()),
            KubeCluster(NAMESPACE, kube.api.client("autoscaler")),
            AutoscalerMetrics(),
            lambda: now[0],
        )

    up = reconciler().poll()
    assert up.errors == [], up.errors
    # 3 queued + 1 running want 4 agents; the chart's services pool stops at 2
    assert up.decisions[0].reason == "3 queued, 1 running, 1 idle: scale up to 2 (max_replicas)"
    stored = kube.deployment(pool)
    assert stored.spec.replicas == 2 and stored.metadata.annotations[LAST_SCALED] == f"{now[0]:.3f}"

    api = api_client(clearml_env)
    queue_id = api.queues.get_all(name=f"^{queue}$")[0].id
    for entry in api.queues.get_by_id(queue=queue_id).entries:
        api.queues.remove_task(queue=queue_id, task=entry.task)
    now[0] += 60
    held = reconciler().poll().decisions[0]
    assert held.desired == 2 and f"cool-down, {cooldown - 60:.0f} s before scaling down" in held.reason
    assert kube.deployment(pool).spec.replicas == 2

    now[0] += cooldown
    down = reconciler().poll()
    assert down.errors == [] and down.decisions[0].desired == 1, down
    assert kube.deployment(pool).spec.replicas == 1
    costs = {
        pod: core(kube.admin).read_namespaced_pod(pod, NAMESPACE).metadata.annotations[DELETION_COST]
        for pod in (busy_pod, idle_pod)
    }
    assert costs == {busy_pod: str(BUSY_COST), idle_pod: str(IDLE_COST)}  # the idle agent goes first
