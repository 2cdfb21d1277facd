"""The GitHub workflows (.github/workflows, docs/images.md): actionlint, with shellcheck on every
``run:`` step, finds nothing (it flags actions that still run on node20, which GitHub removed); every
action is pinned to a release; CI runs ``make lint`` and ``make test``; the release builds every
image from its Dockerfile under the chart's image names; the e2e workflow's values render with our
chart and keep every credential in Secrets. The workflows cannot run here: they are linted and read."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
BIN = Path(sys.executable).parent
HELM = ROOT / "bin" / "helm"
IMAGES = ["training", "serving", "services"]
FILES = sorted(WORKFLOWS.glob("*.yml"))


def actionlint(*files: Path, cwd: Path = ROOT) -> list[dict[str, Any]]:
    done = subprocess.run(
        [
            str(BIN / "actionlint"),
            "-format",
            "{{json .}}",
            "-shellcheck",
            str(BIN / "shellcheck"),
            "-pyflakes=",
        ]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    assert done.returncode in (0, 1), done.stderr  # 1: findings; anything else: actionlint failed
    return list(json.loads(done.stdout or "[]"))


def load(name: str) -> dict[Any, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(data, dict)
    return data


def on(workflow: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the key `on` as True
    triggers = workflow.get("on", workflow.get(True))
    assert isinstance(triggers, dict)
    return triggers


def steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def test_the_three_workflows_are_there() -> None:
    assert [f.name for f in FILES] == ["ci.yml", "e2e.yml", "release.yml"]


def test_actionlint_and_shellcheck_find_nothing() -> None:
    findings = actionlint(*FILES)
    assert not findings, "\n".join(
        f"{f['filepath']}:{f['line']}: [{f['kind']}] {f['message']}" for f in findings
    )


def test_actionlint_flags_node20_actions_and_shell_mistakes(tmp_path: Path) -> None:
    """The lint is not vacuous: today's CI before this change (checkout@v4) and an unquoted variable."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\npermissions: {}\njobs:\n  j:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - uses: actions/checkout@v4\n      - run: echo $FOO\n"
    )
    findings = actionlint(bad, cwd=tmp_path)
    assert any(f["kind"] == "action" and '"node20"' in f["message"] for f in findings), findings
    assert any(f["kind"] == "shellcheck" and "SC2086" in f["message"] for f in findings), findings


def test_every_action_is_pinned_to_a_release() -> None:
    for path in FILES:
        for step in steps(yaml.safe_load(path.read_text())):
            uses = step.get("uses")
            if uses is None:
                continue
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@(v\d+(\.\d+){0,2}|[0-9a-f]{40})", uses), (
                f"{path.name}: {uses}"
            )
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            uses = job.get("uses")
            assert uses is None or uses.startswith("./.github/workflows/"), uses


def test_least_privilege_and_no_persisted_token() -> None:
    for path in FILES:
        workflow = yaml.safe_load(path.read_text())
        assert workflow["permissions"] == {"contents": "read"}, f"{path.name}: read-only by default"
        for step in steps(workflow):
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False, path.name
    writes = {
        (path.name, name): job["permissions"]
        for path in FILES
        for name, job in yaml.safe_load(path.read_text())["jobs"].items()
        if "permissions" in job
    }
    assert writes == {
        ("release.yml", "images"): {"contents": "read", "packages": "write"},
        ("release.yml", "chart"): {"contents": "write", "packages": "write"},
    }


def test_ci_lints_tests_and_builds_every_image() -> None:
    ci = load("ci.yml")
    assert set(on(ci)) == {"push", "pull_request", "workflow_call"}
    runs = [step.get("run") for step in ci["jobs"]["test"]["steps"]]
    assert "make lint" in runs and "make test" in runs  # make test: chart tests, hadolint, actionlint too
    images = ci["jobs"]["images"]
    assert images["strategy"]["matrix"]["image"] == IMAGES
    build = next(s for s in images["steps"] if str(s.get("uses", "")).startswith("docker/build-push-action@"))
    assert build["with"]["file"] == "docker/${{ matrix.image }}.Dockerfile" and build["with"]["push"] is False
    smoke = next(s["run"] for s in images["steps"] if s.get("name") == "Smoke")
    assert "--read-only" in smoke and "--user 10001:10001" in smoke and "measure_sizes.py --modules" in smoke


def test_release_pushes_every_image_under_the_charts_names_and_the_chart() -> None:
    release = load("release.yml")
    assert on(release) == {"push": {"tags": ["v*"]}}
    jobs = release["jobs"]
    assert jobs["test"]["uses"] == "./.github/workflows/ci.yml"
    assert set(jobs["images"]["needs"]) == {"version", "test"} and set(jobs["chart"]["needs"]) == {
        "version",
        "images",
    }
    assert jobs["images"]["strategy"]["matrix"]["image"] == IMAGES
    build = next(
        s for s in jobs["images"]["steps"] if str(s.get("uses", "")).startswith("docker/build-push-action@")
    )
    assert build["with"]["file"] == "docker/${{ matrix.image }}.Dockerfile" and build["with"]["push"] is True
    # the chart's default image: <prefix>/occupancy-mlops-<image>:<appVersion>
    prefix, version = "${{ needs.version.outputs.prefix }}", "${{ needs.version.outputs.version }}"
    assert build["with"]["tags"] == prefix + "/occupancy-mlops-${{ matrix.image }}:" + version
    helpers = (ROOT / "charts/occupancy-mlops/templates/_helpers.tpl").read_text()
    assert "occupancy-mlops-" in helpers and "AppVersion" in helpers
    check = next(s["run"] for s in jobs["version"]["steps"] if s.get("id") == "version")
    assert (
        "appVersion" in check and "charts/occupancy-mlops/Chart.yaml" in check and "pyproject.toml" in check
    )
    chart = "\n".join(str(s.get("run", "")) for s in jobs["chart"]["steps"])
    assert "helm package charts/occupancy-mlops" in chart and "helm push" in chart


def test_e2e_installs_the_pinned_server_chart_and_ours_then_the_smoke_steps() -> None:
    e2e = load("e2e.yml")
    assert re.fullmatch(r"\d+\.\d+\.\d+", e2e["env"]["CLEARML_CHART_VERSION"])
    script = "\n".join(str(s.get("run", "")) for s in steps(e2e))
    assert 'helm install clearml clearml/clearml --version "$CLEARML_CHART_VERSION"' in script
    assert "helm install occupancy charts/occupancy-mlops" in script
    assert "smoke.py prepare" in script and "smoke.py round" in script and "helm test occupancy" in script
    for image in IMAGES:
        assert f"docker/{image}.Dockerfile" in script.replace("$image", image)
    # credentials only in Secrets made at run time: none in either values file
    for name in ("clearml-values.yaml", "occupancy-values.yaml"):
        text = (ROOT / ".github/e2e" / name).read_text()
        assert not re.search(r"(?i)(key|secret|password|token)\s*:", text.replace("existingSecret:", "")), (
            name
        )


def test_e2e_values_render_with_our_chart() -> None:
    if not HELM.is_file():
        pytest.fail("bin/helm is missing: run `make chart-tools` (make test does)")
    e2e = load("e2e.yml")["env"]
    done = subprocess.run(
        [
            str(HELM),
            "template",
            "occupancy",
            str(ROOT / "charts/occupancy-mlops"),
            "--namespace",
            "occupancy",
            "--values",
            str(ROOT / ".github/e2e/occupancy-values.yaml"),
            "--set-json",
            'scheduler.config.parameters={"Args/eval_dataset_id": "0123456789abcdef"}',
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    containers = [
        c
        for doc in yaml.safe_load_all(done.stdout)
        if doc and doc.get("kind") in ("Deployment", "Job", "Pod")
        for c in (doc["spec"].get("template", {}).get("spec") or doc["spec"])["containers"]
    ]
    images = {c["image"] for c in containers}
    # every container runs one of the images the workflow builds and loads into kind, never pulled
    assert images == {f"{e2e['IMAGE_PREFIX']}/occupancy-mlops-{i}:{e2e['IMAGE_TAG']}" for i in IMAGES}, images
    assert {c["imagePullPolicy"] for c in containers} == {"Never"}
    assert "0123456789abcdef" in done.stdout


def test_smoke_script_says_what_it_does() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / ".github/e2e/smoke.py"), "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "prepare" in done.stdout and "round" in done.stdout
    done = subprocess.run(
        [sys.executable, str(ROOT / ".github/e2e/smoke.py")], capture_output=True, text=True
    )
    assert done.returncode == 2
