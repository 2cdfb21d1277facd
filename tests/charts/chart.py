"""Render the chart with the pinned helm, once per scenario per process, and read what it rendered.

The tools come from ``make chart-tools`` (``make test`` runs it): ``bin/helm`` (helm v3.19.0 from a PyPI
wheel) and ``tools/crd-validate/node_modules`` (the pinned kubernetes-models validators).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "occupancy-mlops"
GITOPS = ROOT / "charts" / "gitops"
HELM = Path(os.environ.get("HELM_BIN", ROOT / "bin" / "helm"))
HELM_VERSION = "v3.19.0"
CRD_VALIDATOR = ROOT / "tools" / "crd-validate" / "validate.mjs"
RELEASE = "occupancy"
NAMESPACE = "mlops"
CI_SCENARIOS = sorted(p.name.removesuffix("-values.yaml") for p in (CHART / "ci").glob("*-values.yaml"))
GITOPS_SCENARIOS = sorted(f"gitops-{p.stem}" for p in (GITOPS / "values").glob("*.yaml"))
SCENARIOS = CI_SCENARIOS + GITOPS_SCENARIOS


def values_file(scenario: str) -> Path:
    if scenario.startswith("gitops-"):
        return GITOPS / "values" / f"{scenario.removeprefix('gitops-')}.yaml"
    return CHART / "ci" / f"{scenario}-values.yaml"


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    if not HELM.exists():
        pytest.fail(f"{HELM} is missing: run `make chart-tools` (make test does)")
    env = {
        **os.environ,
        # no user configuration or cache leaks into the render
        "HELM_CONFIG_HOME": "/nonexistent/helm-config",
        "HELM_CACHE_HOME": "/nonexistent/helm-cache",
        "HELM_DATA_HOME": "/nonexistent/helm-data",
        "KUBECONFIG": "/dev/null",
    }
    result = subprocess.run([str(HELM), *args], capture_output=True, text=True, env=env, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


def template_args(values: list[Path], sets: tuple[str, ...] = (), kube_version: str = "1.29.0") -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", kube_version]
    for path in values:
        args += ["--values", str(path)]
    for item in sets:
        args += ["--set", item]
    return args


@functools.cache
def render_text(scenario: str) -> str:
    """The scenario rendered for Kubernetes 1.29 (the templates do not look at the cluster's version or
    APIs, see test_render.py, so one render serves every version the objects are validated for)."""
    return helm(*template_args([values_file(scenario)])).stdout


@functools.cache
def _objects(scenario: str) -> tuple[dict[str, Any], ...]:
    return tuple(d for d in yaml.safe_load_all(render_text(scenario)) if d)


def objects(scenario: str) -> list[dict[str, Any]]:
    """Every object the scenario renders (hooks and the test Pod included), as fresh copies."""
    return json.loads(json.dumps(_objects(scenario)))


def render_with(*sets: str, scenario: str = "minimal") -> list[dict[str, Any]]:
    result = helm(*template_args([values_file(scenario)], sets))
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def try_render(
    values: dict[str, Any], tmp_path: Path, base: str = "minimal"
) -> subprocess.CompletedProcess[str]:
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump(values))
    return helm(*template_args([values_file(base), override]), check=False)


def name_of(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The pod spec of a workload or a Pod, else None."""
    kind = obj["kind"]
    if kind == "Pod":
        return obj["spec"]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return obj["spec"]["template"]["spec"]
    return None


def pod_labels(obj: dict[str, Any]) -> dict[str, str]:
    if obj["kind"] == "Pod":
        return obj["metadata"].get("labels", {})
    return obj["spec"]["template"]["metadata"].get("labels", {})


def containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from spec.get("initContainers", [])
    yield from spec.get("containers", [])


def is_hook(obj: dict[str, Any]) -> bool:
    return "helm.sh/hook" in obj["metadata"].get("annotations", {})


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_yaml_all(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]
