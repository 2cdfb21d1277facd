"""The settings files the chart renders are accepted by the services' own loaders (the ones the pods
run), the policy hook refuses a bad one naming the key, and the commands the pods run exist."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.autoscaler.settings import load_settings as load_autoscaler
from services.canary.settings import load_settings as load_canary
from services.scheduler.settings import load_settings as load_scheduler
from tests.charts import chart

LOADERS = {"scheduler": load_scheduler, "canary": load_canary, "autoscaler": load_autoscaler}


def settings_maps(objs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """ConfigMap data by component (scheduler, canary, autoscaler, policy)."""
    found = {}
    for obj in objs:
        if obj["kind"] == "ConfigMap":
            found[obj["metadata"].get("labels", {}).get("app.kubernetes.io/component", "")] = obj["data"]
    return found


def write(folder: Path, data: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for key, text in data.items():
        (folder / key).write_text(text)


@pytest.mark.parametrize("scenario", chart.SCENARIOS)
def test_rendered_settings_load(scenario: str, tmp_path: Path) -> None:
    objs = chart.objects(scenario)
    maps = settings_maps(objs)
    ports = {
        o["metadata"]["labels"]["app.kubernetes.io/component"]: chart.pod_spec(o)["containers"][0]["ports"][
            0
        ]["containerPort"]
        for o in objs
        if o["kind"] == "Deployment" and "ports" in chart.pod_spec(o)["containers"][0]
    }
    loaded = 0
    for service, load in LOADERS.items():
        if service not in maps:
            continue
        path = tmp_path / f"{service}.yaml"
        path.write_text(maps[service][f"{service}.yaml"])
        settings = load(path, environ={})
        assert settings.port == ports[service], f"{service} listens where its probes and Service look"
        # the policy hook checks exactly what the component will read
        assert maps["policy"][f"{service}.yaml"] == maps[service][f"{service}.yaml"]
        loaded += 1
    assert set(maps.get("policy", {})) - {"check_settings.py"} == {f"{s}.yaml" for s in LOADERS if s in maps}
    if scenario in ("minimal", "full", "keda"):
        assert loaded == 3


def test_autoscaler_scales_exactly_the_pools() -> None:
    for scenario in ("minimal", "keda"):
        objs = chart.objects(scenario)
        settings = yaml.safe_load(settings_maps(objs)["autoscaler"]["autoscaler.yaml"])
        pools = {
            o["metadata"]["name"]: o
            for o in objs
            if o["kind"] == "Deployment" and "occupancy-mlops/pool" in o["metadata"]["labels"]
        }
        assert {p["deployment"] for p in settings["pools"]} == set(pools)
        for pool in settings["pools"]:
            command = chart.pod_spec(pools[pool["deployment"]])["containers"][0]["command"]
            assert command[command.index("--queue") + 1] == pool["queue"]
        assert settings["namespace"] == chart.NAMESPACE
        assert settings["dry_run"] is (scenario == "keda")


def run_check(folder: Path) -> subprocess.CompletedProcess[str]:
    script = folder / "check_settings.py"
    return subprocess.run(
        [sys.executable, str(script), str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=chart.ROOT,
    )


def test_policy_hook_accepts_the_release_and_refuses_a_bad_policy(tmp_path: Path) -> None:
    maps = settings_maps(chart.objects("full"))
    good = tmp_path / "good"
    write(good, maps["policy"])
    result = run_check(good)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == [
        "autoscaler: autoscaler.yaml accepted",
        "canary: canary.yaml accepted",
        "scheduler: scheduler.yaml accepted",
    ]
    # what the schema cannot see: a value the service itself refuses, and a key it does not know
    bad = tmp_path / "bad"
    write(bad, maps["policy"])
    canary = yaml.safe_load((bad / "canary.yaml").read_text())
    canary["steps"] = [0.5, 0.25]
    (bad / "canary.yaml").write_text(yaml.safe_dump(canary))
    (bad / "scheduler.yaml").write_text((bad / "scheduler.yaml").read_text() + "pol_interval_seconds: 3\n")
    result = run_check(bad)
    assert result.returncode == 2
    assert "steps" in result.stderr and "strictly increasing" in result.stderr
    assert "pol_interval_seconds: unknown setting" in result.stderr
    assert "autoscaler: autoscaler.yaml accepted" in result.stdout


def cli_help(*args: str) -> str:
    env = {"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    result = subprocess.run(
        [sys.executable, "-m", *args, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=chart.ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_pod_commands_exist() -> None:
    """Every option the serving pod and the policy hook pass is one the CLI knows."""
    objs = chart.objects("minimal")
    serving = next(
        o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-serving")
    )
    setup = chart.pod_spec(next(o for o in objs if o["kind"] == "Job"))["containers"][0]["command"]
    command = chart.pod_spec(serving)["containers"][0]["command"]
    assert command[:4] == ["python", "-m", "services.serving", "run"]
    assert setup[:3] == ["occupancy-mlops", "serving", "setup"]  # the console script of occupancy_mlops.cli
    for options, help_text in (
        (command[4:], cli_help("services.serving", "run")),
        (setup[3:], cli_help("occupancy_mlops.cli", "serving", "setup")),
    ):
        for option in (part for part in options if part.startswith("--")):
            assert option in help_text, f"{option} is not an option of the CLI"
