"""Policy over every object every scenario renders: hardened pods, resources, probes, selectors that
select, Services that reach declared ports, references that resolve, least-privilege RBAC, and no
credential anywhere but in the existing Secrets."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from tests.charts import chart

Obj = dict[str, Any]
WORKLOADS = ("Deployment", "Job", "Pod")
# clearml-agent serves no HTTP; hook Jobs and the test Pod run to completion
NO_PROBES = {"agent", "policy", "test"}


def workloads(objs: list[Obj]) -> Iterator[Obj]:
    return (o for o in objs if o["kind"] in WORKLOADS)


def component(obj: Obj) -> str:
    return obj["metadata"]["labels"]["app.kubernetes.io/component"]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def selected(objs: list[Obj], selector: dict[str, str]) -> list[Obj]:
    return [o for o in workloads(objs) if selects(selector, chart.pod_labels(o))]


def quantity(text: str | int | float) -> Decimal:
    units = {
        "m": Decimal("0.001"),
        "Ki": 1024,
        "Mi": 1024**2,
        "Gi": 1024**3,
        "Ti": 1024**4,
        "k": 1000,
        "M": 10**6,
        "G": 10**9,
    }
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text))
    assert match, text
    return Decimal(match[1]) * Decimal(units.get(match[2], 1) if match[2] else 1)


def scenario_values(scenario: str) -> dict[str, Any]:
    """The chart's defaults with the scenario's values on top (maps merged, as helm does)."""

    def merge(base: Any, top: Any) -> Any:
        if isinstance(base, dict) and isinstance(top, dict):
            return {**base, **{k: merge(base.get(k), v) for k, v in top.items()}}
        return top

    return merge(chart.load_yaml(chart.CHART / "values.yaml"), chart.load_yaml(chart.values_file(scenario)))


def external_secrets(values: dict[str, Any]) -> set[str]:
    """Secrets the chart documents as existing ones, made by the user (values.yaml, docs/helm.md)."""
    names = {values["clearml"]["existingSecret"], values["serving"]["feedback"]["existingSecret"]}
    names |= set(values["images"]["pullSecrets"])
    names.add(values["serving"]["ingress"]["tlsSecretName"])
    return {n for n in names if n}


@pytest.fixture(scope="module", params=chart.SCENARIOS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[Obj]]:
    return request.param, chart.objects(request.param)


def test_pods_are_hardened(rendered: tuple[str, list[Obj]]) -> None:
    _, objs = rendered
    for obj in workloads(objs):
        spec = chart.pod_spec(obj)
        assert spec is not None
        where = chart.name_of(obj)
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, where
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(key), where
        assert all("hostPath" not in v for v in spec.get("volumes", [])), where
        for container in chart.containers(spec):
            ctx = container["securityContext"]
            name = f"{where} container {container['name']}"
            assert ctx["runAsNonRoot"] is True, name
            assert ctx["allowPrivilegeEscalation"] is False, name
            assert ctx["readOnlyRootFilesystem"] is True, name
            assert ctx["privileged"] is False, name
            assert ctx["capabilities"] == {"drop": ["ALL"]}, name
            assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, name
            # a read-only root needs somewhere to write: /tmp is an emptyDir
            assert (
                any(m["mountPath"] == "/tmp" for m in container.get("volumeMounts", []))
                or obj["kind"] == "Pod"
            ), name


def test_every_container_has_requests_and_limits(rendered: tuple[str, list[Obj]]) -> None:
    _, objs = rendered
    for obj in workloads(objs):
        for container in chart.containers(chart.pod_spec(obj) or {}):
            name = f"{chart.name_of(obj)} container {container['name']}"
            resources = container["resources"]
            for resource in ("cpu", "memory"):
                request = quantity(resources["requests"][resource])
                limit = quantity(resources["limits"][resource])
                assert 0 < request <= limit, f"{name}: {resource} request {request} > limit {limit}"


def test_services_have_health_probes(rendered: tuple[str, list[Obj]]) -> None:
    _, objs = rendered
    for obj in workloads(objs):
        spec = chart.pod_spec(obj)
        for container in chart.containers(spec or {}):
            name = f"{chart.name_of(obj)} container {container['name']}"
            if component(obj) in NO_PROBES:
                assert "ports" not in container or obj["kind"] != "Deployment", name
                continue
            ports = {p["name"] for p in container["ports"]}
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
            assert container["startupProbe"]["httpGet"]["path"] == "/healthz", name
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                assert container[probe]["httpGet"]["port"] in ports, f"{name}: {probe} on an undeclared port"


def test_deployment_selectors_match_their_pods(rendered: tuple[str, list[Obj]]) -> None:
    _, objs = rendered
    deployments = [o for o in objs if o["kind"] == "Deployment"]
    for deployment in deployments:
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selects(selector, chart.pod_labels(deployment)), chart.name_of(deployment)
        # no other workload's pods carry the same labels: a Service or PDB cannot mix components
        others = [o for o in selected(objs, selector) if o is not deployment]
        assert not others, f"{chart.name_of(deployment)} selects {[chart.name_of(o) for o in others]}"


def test_services_reach_declared_ports(rendered: tuple[str, list[Obj]]) -> None:
    _, objs = rendered
    for service in (o for o in objs if o["kind"] == "Service"):
        pods = selected(objs, service["spec"]["selector"])
        assert len(pods) == 1 and pods[0]["kind"] == "Deployment", chart.name_of(service)
        declared = [p for c in chart.containers(chart.pod_spec(pods[0]) or {}) for p in c.get("ports", [])]
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            assert any(target in (p["name"], p["containerPort"]) for p in declared), (
                f"{chart.name_of(service)} targets {target}, not declared by {chart.name_of(pods[0])}"
            )


def test_pdbs_hpas_and_scaledobjects_target_rendered_pods(rendered: tuple[str, list[Obj]]) -> None:
    _, objs = rendered
    deployments = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Deployment"}
    for obj in objs:
        if obj["kind"] == "PodDisruptionBudget":
            pods = selected(objs, obj["spec"]["selector"]["matchLabels"])
            assert len(pods) == 1 and pods[0]["kind"] == "Deployment", chart.name_of(obj)
        elif obj["kind"] in ("HorizontalPodAutoscaler", "ScaledObject"):
            target = obj["spec"]["scaleTargetRef"]
            assert target["name"] in deployments, chart.name_of(obj)
            assert "replicas" not in deployments[target["name"]]["spec"], (
                f"{target['name']} sets replicas: every helm upgrade would undo {obj['kind']}'s scaling"
            )


def test_every_deployment_has_a_pdb_and_every_pod_a_network_policy() -> None:
    for scenario in ("minimal", "full", "keda"):
        objs = chart.objects(scenario)
        pdbs = [o["spec"]["selector"]["matchLabels"] for o in objs if o["kind"] == "PodDisruptionBudget"]
        policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
        for obj in workloads(objs):
            labels = chart.pod_labels(obj)
            if obj["kind"] == "Deployment":
                assert any(selects(s, labels) for s in pdbs), f"{scenario}: {chart.name_of(obj)} has no PDB"
            matching = [p for p in policies if selects(p["spec"]["podSelector"]["matchLabels"], labels)]
            assert matching, f"{scenario}: {chart.name_of(obj)} has no NetworkPolicy"
            for policy in matching:
                assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"], chart.name_of(policy)


def test_network_policies_open_only_declared_ports(rendered: tuple[str, list[Obj]]) -> None:
    _, objs = rendered
    for policy in (o for o in objs if o["kind"] == "NetworkPolicy"):
        pods = selected(objs, policy["spec"]["podSelector"]["matchLabels"])
        assert pods, f"{chart.name_of(policy)} selects no pod"
        declared = {
            p["containerPort"]
            for o in pods
            for c in chart.containers(chart.pod_spec(o) or {})
            for p in c.get("ports", [])
        }
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("ports"), (
                f"{chart.name_of(policy)}: an ingress rule without ports opens every port"
            )
            assert {p["port"] for p in rule["ports"]} <= declared, chart.name_of(policy)
        for rule in policy["spec"]["egress"]:
            assert rule.get("ports"), f"{chart.name_of(policy)}: an egress rule without ports"


def test_references_resolve(rendered: tuple[str, list[Obj]]) -> None:
    """Every ConfigMap, Secret and ServiceAccount a pod names is rendered by the release (in the same
    hook phase, created before it) or is one of the Secrets documented as existing ones."""
    scenario, objs = rendered
    external = external_secrets(scenario_values(scenario))
    by_kind: dict[str, dict[str, Obj]] = {}
    for obj in objs:
        by_kind.setdefault(obj["kind"], {})[obj["metadata"]["name"]] = obj

    def phase(obj: Obj) -> tuple[str, int]:
        annotations = obj["metadata"].get("annotations", {})
        return annotations.get("helm.sh/hook", ""), int(annotations.get("helm.sh/hook-weight", "0"))

    def check(user: Obj, kind: str, name: str) -> None:
        where = f"{chart.name_of(user)} names {kind} {name!r}"
        if kind == "Secret" and name in external:
            return
        assert name in by_kind.get(kind, {}), (
            f"{scenario}: {where}, which is neither rendered nor documented as existing"
        )
        target = by_kind[kind][name]
        user_hook, user_weight = phase(user)
        target_hook, target_weight = phase(target)
        assert user_hook == target_hook, (
            f"{scenario}: {where} of another hook phase ({target_hook!r} vs {user_hook!r})"
        )
        if user_hook:
            assert target_weight < user_weight, f"{scenario}: {where}, created after it"

    for obj in workloads(objs):
        spec = chart.pod_spec(obj) or {}
        check(obj, "ServiceAccount", spec["serviceAccountName"])
        for pull in spec.get("imagePullSecrets", []):
            check(obj, "Secret", pull["name"])
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                check(obj, "ConfigMap", volume["configMap"]["name"])
            if "secret" in volume:
                check(obj, "Secret", volume["secret"]["secretName"])
        for container in chart.containers(spec):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    check(obj, "Secret", ref["secretKeyRef"]["name"])
                if "configMapKeyRef" in ref:
                    check(obj, "ConfigMap", ref["configMapKeyRef"]["name"])
            for source in container.get("envFrom", []):
                for kind, key in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
                    if key in source:
                        check(obj, kind, source[key]["name"])
    for binding in (o for o in objs if o["kind"] == "RoleBinding"):
        check(binding, binding["roleRef"]["kind"], binding["roleRef"]["name"])
        for subject in binding["subjects"]:
            check(binding, subject["kind"], subject["name"])
    for ingress in (o for o in objs if o["kind"] == "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                service = by_kind["Service"][path["backend"]["service"]["name"]]
                assert path["backend"]["service"]["port"]["name"] in {
                    p["name"] for p in service["spec"]["ports"]
                }
        for tls in ingress["spec"].get("tls", []):
            check(ingress, "Secret", tls["secretName"])


def test_rbac_is_least_privilege(rendered: tuple[str, list[Obj]]) -> None:
    """Only the autoscaler talks to the Kubernetes API, only in its namespace, only to its pools."""
    scenario, objs = rendered
    kinds = {o["kind"] for o in objs}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}, scenario
    pools = {o["metadata"]["name"] for o in objs if o["kind"] == "Deployment" and component(o) == "agent"}
    keda = scenario_values(scenario)["agents"]["scaling"] == "keda"
    for role in (o for o in objs if o["kind"] == "Role"):
        assert component(role) == "autoscaler", chart.name_of(role)
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule
            if rule["resources"] == ["pods"]:
                assert not keda and rule["apiGroups"] == [""] and rule["verbs"] == ["patch"], rule
                continue
            assert rule["apiGroups"] == ["apps"], rule
            assert set(rule["resources"]) <= {"deployments", "deployments/scale"}, rule
            # resourceNames empty would mean every Deployment of the namespace
            assert rule["resourceNames"] and set(rule["resourceNames"]) == pools, rule
            assert set(rule["verbs"]) == ({"get"} if keda else {"get", "patch"}), rule
    tokens = [
        o
        for o in workloads(objs)
        if (chart.pod_spec(o) or {}).get("automountServiceAccountToken") is not False
    ]
    assert all(component(o) == "autoscaler" for o in tokens), [chart.name_of(o) for o in tokens]
    for account in (o for o in objs if o["kind"] == "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False, chart.name_of(account)


def test_no_credentials_in_rendered_objects(rendered: tuple[str, list[Obj]]) -> None:
    scenario, objs = rendered
    assert not [o for o in objs if o["kind"] == "Secret"], f"{scenario}: the chart renders no Secret"
    credential = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL", re.I)
    for obj in workloads(objs):
        for container in chart.containers(chart.pod_spec(obj) or {}):
            for env in container.get("env", []):
                if credential.search(env["name"]) and not env["name"].endswith(("_MAX_AGE_SECONDS",)):
                    assert "value" not in env and "secretKeyRef" in env["valueFrom"], (
                        f"{scenario}: {chart.name_of(obj)} {env['name']} is not read from a Secret"
                    )
    for config in (o for o in objs if o["kind"] == "ConfigMap"):
        for key, text in config.get("data", {}).items():
            assert not re.search(r"(access|secret)_?key\s*[:=]\s*\S", text, re.I), (
                f"{chart.name_of(config)} {key}"
            )


def test_values_hold_no_credentials() -> None:
    """values.yaml and every scenario name Secrets, never hold a key, and the schema refuses an extra
    environment variable that looks like one."""
    for path in [chart.CHART / "values.yaml", *(chart.values_file(s) for s in chart.SCENARIOS)]:
        text = path.read_text()
        assert not re.search(r"(?i)(access|secret)_?key\s*:\s*['\"]?[A-Za-z0-9+/]{16,}", text), path
        assert "CLEARML_API_SECRET_KEY:" not in text.replace("secretKeyKey: CLEARML_API_SECRET_KEY", ""), path


def test_labels_are_standard(rendered: tuple[str, list[Obj]]) -> None:
    scenario, objs = rendered
    for obj in objs:
        labels = obj["metadata"].get("labels", {})
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by"):
            if obj["metadata"]["name"].endswith("-extra"):  # the full scenario's extraObjects entry
                continue
            assert key in labels, f"{scenario}: {chart.name_of(obj)} lacks {key}"
        assert obj["metadata"].get("namespace", chart.NAMESPACE) == chart.NAMESPACE


def test_singletons_and_commands() -> None:
    """The scheduler and the canary controller run one replica each with their settings file; the
    agents serve their pool's queue; serving runs the launcher on its declared port."""
    objs = chart.objects("minimal")
    by_component = {component(o): o for o in objs if o["kind"] == "Deployment" and component(o) != "agent"}
    for name in ("scheduler", "canary", "autoscaler"):
        deployment = by_component[name]
        container = chart.pod_spec(deployment)["containers"][0]
        assert container["command"] == [
            "python",
            "-m",
            f"services.{name}",
            "run",
            "--config",
            f"/etc/occupancy-mlops/{name}.yaml",
        ]
        assert deployment["spec"]["replicas"] == 1
    serving = chart.pod_spec(by_component["serving"])["containers"][0]
    assert serving["command"][:4] == ["python", "-m", "services.serving", "run"]
    port = serving["command"][serving["command"].index("--port") + 1]
    assert int(port) == serving["ports"][0]["containerPort"]
    agents = {
        o["metadata"]["labels"]["occupancy-mlops/pool"]: o
        for o in objs
        if o["kind"] == "Deployment" and component(o) == "agent"
    }
    assert set(agents) == {"services", "training"}
    for pool, deployment in agents.items():
        assert chart.pod_spec(deployment)["containers"][0]["command"] == [
            "clearml-agent",
            "daemon",
            "--queue",
            pool,
            "--foreground",
        ]
