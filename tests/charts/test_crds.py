"""Custom resources (ServiceMonitor, PrometheusRule, ScaledObject, Argo CD Application, Flux
GitRepository and HelmRelease) validated with the pinned kubernetes-models validators (Node)."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from typing import Any

import pytest

from tests.charts import chart

CRD_KINDS = {
    "ServiceMonitor",
    "PrometheusRule",
    "ScaledObject",
    "Application",
    "GitRepository",
    "HelmRelease",
}


def validate(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing: Node.js 20 or newer runs the CRD validators (see `make chart-tools`)")
    if not (chart.CRD_VALIDATOR.parent / "node_modules" / "kubernetes-models").exists():
        pytest.fail("the CRD validators are missing: run `make chart-tools` (make test does)")
    result = subprocess.run(
        [node, str(chart.CRD_VALIDATOR)],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=chart.CRD_VALIDATOR.parent,
    )
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def custom_resources() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for scenario in chart.SCENARIOS:
        for obj in chart.objects(scenario):
            if obj["kind"] in CRD_KINDS:
                found.append((scenario, obj))
    for path in sorted((chart.GITOPS / "argocd").glob("*.yaml")) + sorted(
        (chart.GITOPS / "flux").glob("*.yaml")
    ):
        for obj in chart.load_yaml_all(path):
            found.append((str(path.relative_to(chart.ROOT)), obj))
    return found


def test_every_custom_resource_is_valid() -> None:
    found = custom_resources()
    kinds = {obj["kind"] for _, obj in found}
    assert kinds == CRD_KINDS, f"scenarios render {sorted(kinds)}"
    results = validate([obj for _, obj in found])
    problems = [
        f"{found[r['index']][0]}: {r['kind']}/{r['name']}: {'; '.join(r['errors'])}"
        for r in results
        if r["errors"]
    ]
    assert not problems, "\n".join(problems)
    assert len(results) == len(found)


def test_validators_refuse_a_broken_resource() -> None:
    """The validators can fail: a ScaledObject without its target, a HelmRelease whose interval is a
    number, an Application with a source that is a list, and a kind nobody validates."""
    found = {obj["kind"]: obj for _, obj in custom_resources()}
    scaled = copy.deepcopy(found["ScaledObject"])
    del scaled["spec"]["scaleTargetRef"]
    release = copy.deepcopy(found["HelmRelease"])
    release["spec"]["interval"] = 5
    application = copy.deepcopy(found["Application"])
    application["spec"]["source"] = [application["spec"]["source"]]
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    results = validate([scaled, release, application, unknown])
    assert all(r["errors"] for r in results), results
    assert "scaleTargetRef" in " ".join(results[0]["errors"])
    assert "/spec/interval" in " ".join(results[1]["errors"])
    assert results[3]["errors"] == ["no model for example.com/v1 Widget"]
