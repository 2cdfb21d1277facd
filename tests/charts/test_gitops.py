"""GitOps: the Argo CD Applications and Flux HelmReleases deploy this chart with the dev and prod
policy files, and what they name exists in the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.charts import chart

ENVIRONMENTS = ("dev", "prod")


def one(path: Path) -> dict:
    docs = chart.load_yaml_all(path)
    assert len(docs) == 1, f"{path}: one object per file"
    return docs[0]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_argo_application_points_at_the_chart_and_the_policy(env: str) -> None:
    app = one(chart.GITOPS / "argocd" / f"occupancy-{env}.yaml")
    source = app["spec"]["source"]
    chart_dir = chart.ROOT / source["path"]
    assert chart_dir.resolve() == chart.CHART
    for value_file in source["helm"]["valueFiles"]:  # relative to the chart's path, as Argo CD reads them
        assert (chart_dir / value_file).resolve() == chart.values_file(f"gitops-{env}").resolve()
    assert app["spec"]["destination"]["namespace"] == f"occupancy-{env}"
    assert app["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_flux_release_points_at_the_chart_and_the_policy(env: str) -> None:
    release = one(chart.GITOPS / "flux" / f"helmrelease-{env}.yaml")
    source = one(chart.GITOPS / "flux" / f"gitrepository-{env}.yaml")
    spec = release["spec"]["chart"]["spec"]
    assert spec["sourceRef"] == {"kind": "GitRepository", "name": source["metadata"]["name"]}
    assert (chart.ROOT / spec["chart"]).resolve() == chart.CHART
    assert [(chart.ROOT / f).resolve() for f in spec["valuesFiles"]] == [
        chart.values_file(f"gitops-{env}").resolve()
    ]
    # every commit is a release: a policy change reaches the cluster though the chart version stays
    assert spec["reconcileStrategy"] == "Revision"
    assert release["spec"]["targetNamespace"] == f"occupancy-{env}"
    assert release["spec"]["upgrade"]["remediation"]["strategy"] == "rollback"
    # the GitRepository keeps charts/ (the chart and the policy files)
    assert "!/charts/" in source["spec"]["ignore"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_argo_and_flux_deploy_the_same_release(env: str) -> None:
    app = one(chart.GITOPS / "argocd" / f"occupancy-{env}.yaml")
    release = one(chart.GITOPS / "flux" / f"helmrelease-{env}.yaml")
    source = one(chart.GITOPS / "flux" / f"gitrepository-{env}.yaml")
    assert app["spec"]["source"]["helm"]["releaseName"] == release["spec"]["releaseName"]
    assert app["spec"]["destination"]["namespace"] == release["spec"]["targetNamespace"]
    assert app["spec"]["source"]["repoURL"] == source["spec"]["url"]
    assert app["spec"]["source"]["targetRevision"] == source["spec"]["ref"]["branch"]


def test_policy_lives_in_the_values() -> None:
    """Endpoints, canary steps and thresholds, queues, scheduler tags and pool sizes differ per
    environment through the values files alone, and reach the rendered settings."""
    rendered = {}
    for env in ENVIRONMENTS:
        objs = chart.objects(f"gitops-{env}")
        settings = {
            o["metadata"]["name"].rsplit("-", 1)[-1]: chart.yaml.safe_load(next(iter(o["data"].values())))
            for o in objs
            if o["kind"] == "ConfigMap"
            and o["metadata"]["name"].endswith(("-scheduler", "-canary", "-autoscaler"))
        }
        rendered[env] = settings
    dev, prod = rendered["dev"], rendered["prod"]
    assert dev["canary"]["steps"] != prod["canary"]["steps"]
    assert dev["canary"]["max_error_ratio"] != prod["canary"]["max_error_ratio"]
    assert dev["canary"]["service_name"] != prod["canary"]["service_name"]
    assert dev["scheduler"]["tags"] != prod["scheduler"]["tags"]
    assert {p["queue"] for p in prod["autoscaler"]["pools"]} == {
        prod["scheduler"]["queue"],
        prod["scheduler"]["steps_queue"],
    }
    assert [p["max_replicas"] for p in dev["autoscaler"]["pools"]] != [
        p["max_replicas"] for p in prod["autoscaler"]["pools"]
    ]
