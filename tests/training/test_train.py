"""Model tests: offline train/evaluate commands on the real data, and Keras ↔ portable parity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from training.bundle import KERAS_FILE, ModelBundle
from training.data import load_labeled
from training.features import make_features


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "occupancy_mlops.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "400"},
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, occupancy_dir) -> Path:
    out = tmp_path_factory.mktemp("model") / "m"
    proc = _cli("train", "--data", str(occupancy_dir / "datatraining.txt"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["validation"]["accuracy"] > 0.97
    # quiet by default: one JSON line, TensorFlow's native log lines in the model folder
    assert proc.stdout.strip().count("\n") == 0 and proc.stderr.strip() == "", proc.stderr[-2000:]
    assert (out / "tensorflow.log").is_file()
    return out


def test_portable_model_agrees_with_keras_on_every_test_row(model_dir, occupancy_dir):
    bundle = ModelBundle.load(model_dir)
    frame = load_labeled([occupancy_dir / "datatest.txt"])
    features = make_features(frame, bundle.schema).to_numpy()
    reference = keras.models.load_model(model_dir / KERAS_FILE)(features.astype("float32"), training=False)
    diff = np.max(np.abs(bundle.predict_proba(frame) - np.asarray(reference)[:, 0]))
    assert diff < 1e-5, f"portable model differs from Keras by {diff}"
    assert bundle.metadata["feature_schema"]["history_rows"] == bundle.schema.history_rows
    assert {"tensorflow", "keras", "numpy"} <= set(bundle.metadata["versions"])


def test_evaluate_command_prints_metrics_as_json(model_dir, occupancy_dir):
    proc = _cli("evaluate", "--model", str(model_dir), "--data", str(occupancy_dir / "datatest.txt"))
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)
    assert set(metrics) == {"accuracy", "f1", "roc_auc", "rows", "positives", "brier", "ece"}
    assert metrics["rows"] == 2665 and metrics["accuracy"] > 0.95
    assert 0 <= metrics["ece"] < 0.1 and 0 <= metrics["brier"] < 0.05  # probabilities that mean what they say


def test_train_refuses_bad_data_naming_the_problem(tmp_path):
    bad = tmp_path / "labels.csv"
    bad.write_text(
        "date,Temperature,Humidity,Light,CO2,HumidityRatio,Occupancy\n"
        "2015-02-04 17:51:00,23.18,27.27,426,721.25,0.00479,yes\n"
    )
    proc = _cli("train", "--data", str(bad), "--out", str(tmp_path / "m"))
    assert proc.returncode != 0
    assert "labels.csv, line 2, column Occupancy" in proc.stderr
    assert (
        proc.stderr.startswith("error: --data: 1 problem(s) in labeled data:")
        and "Traceback" not in proc.stderr
    )
    assert not (tmp_path / "m").exists(), "nothing is written when the data is refused"


def test_evaluate_refuses_a_folder_that_is_not_a_model(tmp_path, occupancy_dir):
    proc = _cli("evaluate", "--model", str(tmp_path), "--data", str(occupancy_dir / "datatest.txt"))
    assert proc.returncode != 0 and "is not a model folder" in proc.stderr


def test_a_higher_input_never_lowers_the_probability(model_dir, occupancy_dir):
    """The default model is monotone (MONOTONE) in every feature of its schema (the light, for the
    default): no seed can learn "very bright means empty" from a sunny weekend, which made
    unconstrained models miss occupied sunny minutes of other weeks."""
    bundle = ModelBundle.load(model_dir)
    features = make_features(load_labeled([occupancy_dir / "datatest.txt"]), bundle.schema).to_numpy()
    sample = features[:: max(1, len(features) // 200)]
    for column in range(features.shape[1]):
        grid = np.linspace(features[:, column].min(), features[:, column].max() * 3, 40)
        probed = np.repeat(sample, len(grid), axis=0)
        probed[:, column] = np.tile(grid, len(sample))
        proba = bundle.portable.predict_proba(probed).reshape(len(sample), len(grid))
        assert np.all(np.diff(proba, axis=1) >= -1e-9), bundle.schema.feature_names[column]


def test_probabilities_are_calibrated_and_the_calibration_is_recorded(model_dir, occupancy_dir):
    bundle = ModelBundle.load(model_dir)
    calibration = bundle.metadata["calibration"]
    assert calibration["method"] == "platt" and calibration["slope"] > 0
    frame = load_labeled([occupancy_dir / "datatest.txt"])
    proba = bundle.predict_proba(frame)
    occupied = frame["Occupancy"].to_numpy()
    # among readings the model calls 90-100 % likely, at least 85 % are occupied; below 10 %, at most 15 %
    assert occupied[proba >= 0.9].mean() >= 0.85
    assert occupied[proba < 0.1].mean() <= 0.15
    assert bundle.metadata["validation"]["ece"] < 0.05


def test_several_batches_per_call_train_the_same_weights_as_one():
    """``STEPS_PER_EXECUTION`` only saves per-batch overhead: the trained weights are the same bits."""
    from training.model import STEPS_PER_EXECUTION, build_model, fit

    assert STEPS_PER_EXECUTION > 1
    assert build_model(1, layer_size=8).steps_per_execution == STEPS_PER_EXECUTION  # the default is used
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 800, size=(700, 1))
    y = (x[:, 0] + rng.normal(0, 60, size=700) > 400).astype(float)
    weights = []
    for steps in (1, STEPS_PER_EXECUTION):
        model = build_model(1, layer_size=8, seed=7, steps_per_execution=steps)
        assert model.steps_per_execution == steps
        fit(model, x[:500], y[:500], x[500:], y[500:], epochs=3, start_from_epoch=0, seed=7)
        weights.append(model.get_weights())
    assert len(weights[0]) == len(weights[1])
    for one, many in zip(*weights, strict=True):
        np.testing.assert_array_equal(one, many)
