"""Input drift gauges of the serving endpoint: the Preprocess clearml-serving runs, fed one request per
reading of a real day, in worker processes sharing a ``PROMETHEUS_MULTIPROC_DIR`` as uvicorn's
workers do; ``/metrics``' text (what ``render`` answers) checked by promtool and parsed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.serving.drift import DriftSettings, InputWindow
from tests.serving.models import write_bundle
from training.bundle import write_metadata
from training.data import SENSOR_COLUMNS, TIME_COLUMN, load_labeled
from training.drift import METADATA_KEY, build_reference
from training.features import DEFAULT_SCHEMA

WORKER = """
import json, sys, types
import pandas as pd
from services.serving.endpoint import Preprocess
from services.serving.metrics import get_metrics, render

folder, readings, version = sys.argv[1], sys.argv[2], sys.argv[3]
pre = Preprocess()
pre.model_endpoint = types.SimpleNamespace(auxiliary_cfg={"arm": "champion", "model_version": version},
                                           model_id="m" + version)
pre.load(folder)
frame = pd.read_csv(readings)
for row in frame.to_dict("records"):  # one request per reading, as a sensor posts once a minute
    data = pre.preprocess(row, {})
    pre.postprocess(pre.process(data, {}), {})
if len(sys.argv) > 4:
    sys.stdout.write(render(get_metrics()).decode())
"""


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, occupancy_dir: Path) -> Path:
    training = load_labeled([occupancy_dir / "datatraining.txt"])
    folder = write_bundle(tmp_path_factory.mktemp("model") / "m")
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata[METADATA_KEY] = build_reference(training, DEFAULT_SCHEMA).to_dict()
    write_metadata(folder, metadata)
    return folder


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory, occupancy_dir: Path) -> dict[str, Path]:
    training = load_labeled([occupancy_dir / "datatraining.txt"])
    one = training[training[TIME_COLUMN].dt.strftime("%Y-%m-%d") == "2015-02-06"]
    one = one[[TIME_COLUMN, *SENSOR_COLUMNS]].assign(date=lambda f: f[TIME_COLUMN].astype(str))
    folder = tmp_path_factory.mktemp("days")
    paths = {"normal": folder / "normal.csv", "light-x2": folder / "light-x2.csv"}
    one.to_csv(paths["normal"], index=False)
    one.assign(Light=one["Light"] * 2).to_csv(paths["light-x2"], index=False)
    return paths


def run_worker(metrics_dir: Path, model: Path, readings: Path, version: str, show: bool = False) -> str:
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "OCCUPANCY_SERVING_DRIFT_EVERY": "60",
        "OCCUPANCY_SERVING_DRIFT_SECONDS": "0",
    }
    args = [sys.executable, "-c", WORKER, str(model), str(readings), version, *(["show"] if show else [])]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def gauges(text: str) -> dict[tuple[str, str, str], float]:
    """(metric, input, model_version) → value of the input drift gauges."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("occupancy_serving_input_drift_") and "input" in sample.labels:
                found[(sample.name, sample.labels["input"], sample.labels["model_version"])] = sample.value
    return found


def test_a_normal_day_is_below_the_limits_and_a_doubled_light_sensor_above(model, days, tmp_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    # worker 1 serves a normal day: every input within its limits
    text = run_worker(metrics_dir, model, days["normal"], "3", show=True)
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: it comes with Debian's prometheus (`make system-tools`)"
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    values = gauges(text)
    inputs = ["Temperature", "Humidity", "Light", "CO2", "HumidityRatio"]
    for name in inputs:
        psi = values[("occupancy_serving_input_drift_psi", name, "3")]
        assert psi < values[("occupancy_serving_input_drift_psi_limit", name, "3")], (name, values)
        assert (
            values[("occupancy_serving_input_drift_ks", name, "3")]
            < values[("occupancy_serving_input_drift_ks_limit", name, "3")]
        )
    assert "occupancy_serving_input_drift_readings" in text
    assert (
        'occupancy_serving_input_drift_readings{arm="champion",endpoint="occupancy",model_version="3"} 1440.0'
        in text
    )

    # worker 2, later, serves the same day with the light sensor reading double: the newest value of
    # any worker is what /metrics shows, one series per input (no pid label)
    text = run_worker(metrics_dir, model, days["light-x2"], "3", show=True)
    values = gauges(text)
    assert len([k for k in values if k[0] == "occupancy_serving_input_drift_psi"]) == len(inputs)
    light_psi = values[("occupancy_serving_input_drift_psi", "Light", "3")]
    assert light_psi > values[("occupancy_serving_input_drift_psi_limit", "Light", "3")], values
    assert (
        values[("occupancy_serving_input_drift_psi", "CO2", "3")]
        < values[("occupancy_serving_input_drift_psi_limit", "CO2", "3")]
    )


def test_a_model_without_reference_exports_no_drift_and_serves(days, tmp_path):
    older = write_bundle(tmp_path / "older")
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    text = run_worker(metrics_dir, older, days["normal"], "1", show=True)
    assert "occupancy_serving_input_drift_psi{" not in text
    assert 'occupancy_serving_predictions_total{arm="champion",endpoint="occupancy",model_version="1"' in text


def test_settings_are_checked():
    assert DriftSettings.from_env({}) == DriftSettings(1440, 60, 360, 10.0)
    assert (
        DriftSettings.from_env(
            {"OCCUPANCY_SERVING_DRIFT_WINDOW": "100", "OCCUPANCY_SERVING_DRIFT_MIN_READINGS": "50"}
        ).window
        == 100
    )
    for env, message in (
        (
            {"OCCUPANCY_SERVING_DRIFT_WINDOW": "a day"},
            "OCCUPANCY_SERVING_DRIFT_WINDOW='a day' is not a whole number",
        ),
        ({"OCCUPANCY_SERVING_DRIFT_EVERY": "0"}, "OCCUPANCY_SERVING_DRIFT_EVERY=0 must be at least 1"),
        ({"OCCUPANCY_SERVING_DRIFT_WINDOW": "100"}, "must not exceed OCCUPANCY_SERVING_DRIFT_WINDOW"),
        ({"OCCUPANCY_SERVING_DRIFT_SECONDS": "-1"}, "OCCUPANCY_SERVING_DRIFT_SECONDS=-1 must be a finite"),
    ):
        with pytest.raises(ValueError, match=message):
            DriftSettings.from_env(env)


def test_the_drift_is_computed_at_most_every_few_seconds(model):
    """Under heavy traffic the window is judged once per ``seconds``, not every ``every`` requests."""
    from training.bundle import ModelBundle

    window = InputWindow.for_model(ModelBundle.load(model).metadata, DriftSettings(100, 5, 10, 3600.0))
    assert window is not None
    reading = np.array([21.0, 27.0, 426.0, 721.0, 0.0048])
    due = [window.add(reading) for _ in range(200)]
    assert due.index(True) == 9 and due.count(True) == 1 and window.filled == 100
    assert {d.input for d in window.drift()} == {"Temperature", "Humidity", "Light", "CO2", "HumidityRatio"}
