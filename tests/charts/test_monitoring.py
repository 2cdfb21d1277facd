"""The PrometheusRule's alerts and the Grafana dashboard's queries are PromQL that Prometheus' own
promtool accepts, over metrics the services really export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.charts import chart

METRIC = re.compile(r"\b(occupancy_[a-z_]+)")


def exported_metrics() -> set[str]:
    """Metric names the services define (prometheus-client adds _total to counters, _bucket/_sum/_count
    to histograms)."""
    names = set()
    for path in (chart.ROOT / "services").rglob("*.py"):
        names |= set(re.findall(r"\"(occupancy_[a-z_]+)\"", path.read_text()))
    return names


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: it comes with Debian's prometheus (`make system-tools`)")
    return found


def check_rules(groups: list[dict], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    return subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )


def dashboard() -> dict:
    return json.loads((chart.CHART / "files" / "dashboards" / "occupancy-loop.json").read_text())


def test_alert_rules_pass_promtool(tmp_path: Path) -> None:
    rule = next(o for o in chart.objects("full") if o["kind"] == "PrometheusRule")
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert len(alerts) == 8, alerts
    result = check_rules(rule["spec"]["groups"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    result = check_rules([{"name": "x", "rules": [{"alert": "Broken", "expr": "sum(rate(x[5m])"}]}], tmp_path)
    assert result.returncode != 0


def test_dashboard_queries_pass_promtool(tmp_path: Path) -> None:
    exprs = [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]
    concrete = [e.replace("$__rate_interval", "5m").replace("$namespace", chart.NAMESPACE) for e in exprs]
    groups = [
        {
            "name": "dashboard",
            "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(concrete)],
        }
    ]
    result = check_rules(groups, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_queries_name_exported_metrics() -> None:
    rule = next(o for o in chart.objects("keda") if o["kind"] == "ScaledObject")
    texts = [
        json.dumps(dashboard()),
        json.dumps(next(o for o in chart.objects("full") if o["kind"] == "PrometheusRule")),
    ]
    texts.append(rule["spec"]["triggers"][0]["metadata"]["query"])
    exported = exported_metrics()
    assert len(exported) > 30
    for text in texts:
        for name in set(METRIC.findall(text)):
            base = re.sub(r"_(total|bucket|sum|count)$", "", name)
            assert base in exported or name in exported, f"{name} is not a metric any service exports"


def test_dashboard_is_shipped_for_the_grafana_sidecar() -> None:
    config = next(o for o in chart.objects("full") if o["metadata"]["name"].endswith("-dashboard"))
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config["data"]["occupancy-loop.json"]) == dashboard()
    titles = " ".join(p["title"] for p in dashboard()["panels"]).lower()
    for shown in (
        "versions",
        "retrains",
        "verdicts",
        "traffic share",
        "latency",
        "errors per arm",
        "accuracy",
    ):
        assert shown in titles


def test_input_drift_alert_fires_on_a_drifted_input_only(tmp_path: Path) -> None:
    """promtool's rule unit test: Light beyond its PSI limit for 30 minutes alerts (once, naming
    the input, arm and model version); CO2 within its limits and Light for less than 30 minutes do not."""
    rule = next(o for o in chart.objects("full") if o["kind"] == "PrometheusRule")
    groups = [
        {**g, "rules": [r for r in g["rules"] if r.get("alert") == "OccupancyServingInputDrift"]}
        for g in rule["spec"]["groups"]
    ]
    assert sum(len(g["rules"]) for g in groups) == 1
    summary = "Input Light of serving arm champion (model version 3) drifted from the model's training data"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    labels = f'namespace="{chart.NAMESPACE}",endpoint="occupancy",arm="champion",model_version="3"'

    def series(name: str, input_name: str, values: str) -> dict[str, str]:
        return {"series": f'{name}{{{labels},input="{input_name}"}}', "values": values}

    test = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    series("occupancy_serving_input_drift_psi", "Light", "0.5x20 2.9x60"),
                    series("occupancy_serving_input_drift_psi_limit", "Light", "2.31x80"),
                    series("occupancy_serving_input_drift_ks", "Light", "0.2x80"),
                    series("occupancy_serving_input_drift_ks_limit", "Light", "0.36x80"),
                    series("occupancy_serving_input_drift_psi", "CO2", "3.0x80"),
                    series("occupancy_serving_input_drift_psi_limit", "CO2", "6.79x80"),
                    series("occupancy_serving_input_drift_ks", "CO2", "0.5x80"),
                    series("occupancy_serving_input_drift_ks_limit", "CO2", "0.8x80"),
                ],
                "alert_rule_test": [
                    {"eval_time": "40m", "alertname": "OccupancyServingInputDrift", "exp_alerts": []},
                    {
                        "eval_time": "55m",
                        "alertname": "OccupancyServingInputDrift",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "arm": "champion",
                                    "model_version": "3",
                                    "input": "Light",
                                },
                                "exp_annotations": {
                                    "summary": summary,
                                    "description": groups[0]["rules"][0]["annotations"]["description"],
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test))
    result = subprocess.run(
        [promtool(), "test", "rules", "test.yaml"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_serving_gets_the_input_drift_settings_it_accepts(tmp_path: Path) -> None:
    from services.serving.drift import DriftSettings

    result = chart.try_render(
        {"serving": {"inputDrift": {"window": 720, "seconds": 2.5}}}, tmp_path, base="full"
    )
    assert result.returncode == 0, result.stderr
    serving = next(
        o
        for o in yaml.safe_load_all(result.stdout)
        if o and o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-serving")
    )
    env = {
        e["name"]: e["value"]
        for e in serving["spec"]["template"]["spec"]["containers"][0]["env"]
        if "value" in e
    }
    assert DriftSettings.from_env(env) == DriftSettings(window=720, every=60, min_readings=360, seconds=2.5)
    result = chart.try_render({"serving": {"inputDrift": {"window": 100}}}, tmp_path, base="full")
    assert result.returncode != 0
    assert "serving.inputDrift: minReadings 360 is above window 100" in result.stderr
