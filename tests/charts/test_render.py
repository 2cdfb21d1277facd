"""Every scenario renders with the pinned helm v3, passes `helm lint --strict`, and every object it
renders is valid Kubernetes (strict: unknown fields refused) for 1.29 and the newest version
kubernetes-validate ships."""

from __future__ import annotations

import kubernetes_validate
import pytest

from tests.charts import chart

CRD_GROUPS = ("monitoring.coreos.com/", "keda.sh/", "argoproj.io/", "fluxcd.io/")
KUBE_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())


def test_pinned_helm_is_v3() -> None:
    version = chart.helm("version", "--short").stdout.strip()
    assert version.startswith(chart.HELM_VERSION + "+"), version


def test_every_scenario_file_is_listed() -> None:
    # minimal, full, keda, ingress, and each component alone
    assert {"minimal", "full", "keda", "ingress"} <= set(chart.CI_SCENARIOS)
    for component in ("agents", "autoscaler", "scheduler", "canary", "serving"):
        assert f"only-{component}" in chart.CI_SCENARIOS
    assert {"gitops-dev", "gitops-prod"} <= set(chart.GITOPS_SCENARIOS)


@pytest.mark.parametrize("scenario", chart.SCENARIOS)
def test_lint_strict(scenario: str) -> None:
    result = chart.helm("lint", "--strict", str(chart.CHART), "--values", str(chart.values_file(scenario)))
    assert "0 chart(s) failed" in result.stdout, result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", chart.SCENARIOS)
def test_objects_are_valid_kubernetes(scenario: str, kube_version: str) -> None:
    problems = []
    validated = 0
    for obj in chart.objects(scenario):
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
            validated += 1
        except kubernetes_validate.SchemaNotFoundError:
            if not obj["apiVersion"].startswith(CRD_GROUPS):
                problems.append(f"{chart.name_of(obj)}: no schema for {obj['apiVersion']} in {kube_version}")
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            problems.append(f"{chart.name_of(obj)}: {where}: {exc.message}")
    assert not problems, "\n".join(problems)
    assert validated >= 5


def test_templates_do_not_depend_on_the_cluster() -> None:
    """One render serves every Kubernetes version: no template reads .Capabilities or looks up live
    objects (Argo CD renders without a cluster, and `lookup` would make GitOps renders differ)."""
    for path in (chart.CHART / "templates").rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert ".Capabilities" not in text and "lookup" not in text, path


def test_validation_can_fail() -> None:
    """The strict check refuses what the API server would: a field that does not exist."""
    deployment = next(o for o in chart.objects("minimal") if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.29.0", strict=True)


def test_no_latest_image_and_tags_default_to_app_version() -> None:
    app_version = chart.load_yaml(chart.CHART / "Chart.yaml")["appVersion"]
    images = set()
    for scenario in chart.SCENARIOS:
        for obj in chart.objects(scenario):
            spec = chart.pod_spec(obj)
            for container in chart.containers(spec) if spec else ():
                images.add(container["image"])
                assert not container["image"].endswith((":latest", ":")), (scenario, container["image"])
                assert ":" in container["image"].rsplit("/", 1)[-1] or "@sha256:" in container["image"]
    minimal = {
        c["image"]
        for o in chart.objects("minimal")
        if chart.pod_spec(o)
        for c in chart.containers(chart.pod_spec(o))
    }
    assert minimal == {
        f"ghcr.io/occupancy-mlops/occupancy-mlops-{name}:{app_version}"
        for name in ("training", "services", "serving")
    }
