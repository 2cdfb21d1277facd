"""Input drift on the real data: a day of the training week is not drift; a day of datatest.txt
(another part of the month, its temperature recorded differently) and a training day with the light
sensor reading twice the lux are. And ``occupancy-mlops drift`` as a user runs it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp
from typer.testing import CliRunner

from occupancy_mlops.cli import app
from tests.serving.models import write_bundle
from training.bundle import write_metadata
from training.data import LABEL_COLUMN, ROOM_COLUMN, TIME_COLUMN, load_labeled
from training.drift import (
    METADATA_KEY,
    DriftReference,
    NoDriftReference,
    build_reference,
    compare,
    ks_statistic,
    psi,
)
from training.features import DEFAULT_SCHEMA


@pytest.fixture(scope="module")
def training(occupancy_dir: Path) -> pd.DataFrame:
    return load_labeled([occupancy_dir / "datatraining.txt"])


@pytest.fixture(scope="module")
def reference(training: pd.DataFrame) -> DriftReference:
    # stored as the model stores it: through JSON
    return DriftReference.from_dict(
        json.loads(json.dumps(build_reference(training, DEFAULT_SCHEMA).to_dict()))
    )


def day(frame: pd.DataFrame, date: str) -> pd.DataFrame:
    return frame[frame[TIME_COLUMN].dt.strftime("%Y-%m-%d") == date]


def test_the_reference_keeps_every_input_change_and_feature_with_the_training_days(reference):
    assert reference.inputs == ["Temperature", "Humidity", "Light", "CO2", "HumidityRatio"]
    # the model's features, whatever the schema is (a feature named like an input is that input's row)
    assert {"Temperature change/min", *DEFAULT_SCHEMA.feature_names} <= set(reference.rows)
    # the full days of the week (Feb 4 and Feb 10 are a few hours only)
    assert reference.baseline_days == [f"2015-02-0{d}" for d in range(5, 10)]
    light = reference.rows["Light"]
    assert len(light.quantiles) == 101 and abs(sum(light.proportions) - 1) < 1e-9
    assert len(light.proportions) == len(light.edges) + 1
    # a day covers part of the week's range: its PSI against the other days is far above 0.25
    assert reference.rows["Temperature"].day_psi_max > 1.0


@pytest.mark.parametrize("date", ["2015-02-05", "2015-02-06", "2015-02-07", "2015-02-08", "2015-02-09"])
def test_a_day_of_the_training_week_is_not_drift(reference, training, date):
    report = compare(reference, day(training, date), DEFAULT_SCHEMA)
    assert not report.drift, report.table()
    assert len(report.rows) == len(reference.rows) and not report.missing


def test_a_day_of_datatest_is_drift_in_its_temperature_changes(reference, occupancy_dir):
    other = load_labeled([occupancy_dir / "datatest.txt"])
    report = compare(reference, day(other, "2015-02-03"), DEFAULT_SCHEMA)
    assert report.drift
    assert "Temperature change/min" in report.drifted, report.table()


def test_the_light_sensor_reading_double_is_drift_in_light(reference, training):
    scaled = day(training, "2015-02-05").assign(Light=lambda f: f["Light"] * 2)
    report = compare(reference, scaled, DEFAULT_SCHEMA)
    assert "Light" in report.drifted, report.table()
    light = next(r for r in report.rows if r.name == "Light")
    assert light.psi > light.psi_limit > light.day_psi_max


def test_unlabeled_readings_without_features_give_the_input_rows(reference, training):
    readings = day(training, "2015-02-06").drop(columns=[LABEL_COLUMN, ROOM_COLUMN])
    report = compare(reference, readings)  # no schema: the feature rows are left out, not missing
    assert {r.kind for r in report.rows} == {"input", "change"} and not report.missing
    with pytest.raises(ValueError, match="at least 60"):
        compare(reference, readings.head(10))


def test_psi_and_ks_statistics(training):
    rng = np.random.default_rng(0)
    ref = np.quantile(training["CO2"], np.linspace(0, 1, 101))
    sample = training["CO2"].to_numpy()[rng.choice(len(training), 1000)] * 1.1
    assert abs(ks_statistic(ref, sample) - ks_2samp(training["CO2"], sample).statistic) < 0.015
    assert ks_statistic(ref, training["CO2"].to_numpy()) < 0.011
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0
    assert psi([0.5, 0.5], [1.0, 0.0]) == pytest.approx(
        0.5 * np.log(2) + 0.4999 * np.log(0.4999 / 1e-4), 1e-3
    )


def test_an_older_model_has_no_reference():
    with pytest.raises(NoDriftReference, match="trained before drift references existed"):
        DriftReference.from_metadata({"model_name": "occupancy-mlp"})


# ---------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, reference) -> Path:
    folder = write_bundle(tmp_path_factory.mktemp("model") / "m")
    metadata = json.loads((folder / "metadata.json").read_text())
    write_metadata(folder, {**metadata, METADATA_KEY: reference.to_dict()})
    return folder


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def drift_cli(*args: str) -> Ran:
    """``occupancy-mlops drift ...`` in this process (the command's own code, output and exit status)."""
    result = CliRunner().invoke(app, ["drift", *args], env={"COLUMNS": "220"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Ran(result.exit_code, result.stdout, result.stderr)


def test_the_command_exit_status_is_the_verdict(model_dir, training, tmp_path):
    normal = tmp_path / "2015-02-06.csv"
    day(training, "2015-02-06").drop(columns=[LABEL_COLUMN, ROOM_COLUMN]).to_csv(normal, index=False)
    proc = drift_cli("--model", str(model_dir), "--data", str(normal))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Light" in proc.stdout and "training days PSI mean / max" in proc.stdout
    rows = len(build_reference(day(training, "2015-02-06"), DEFAULT_SCHEMA).rows)
    assert proc.stdout.strip().endswith(f"no drift in {rows} rows, 1440 readings")

    scaled = tmp_path / "light-x2.csv"
    day(training, "2015-02-06").assign(Light=lambda f: f["Light"] * 2).to_csv(scaled, index=False)
    plot = tmp_path / "drift.png"
    proc = drift_cli("--model", str(model_dir), "--data", str(scaled), "--plot", str(plot))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert "DRIFT" in proc.stdout and last.startswith("drift in ") and re.search(r"rows \(Light[,)]", last), (
        last
    )
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000


def test_the_command_refuses_bad_input_with_one_line(model_dir, training, tmp_path):
    good = tmp_path / "day.csv"
    day(training, "2015-02-06").to_csv(good, index=False)
    older = write_bundle(tmp_path / "older")
    bad = tmp_path / "bad.csv"
    bad.write_text("date,Temperature\n2015-02-06 00:00:00,21\n")
    cases = {
        ("--model", str(tmp_path / "absent"), "--data", str(good)): "is not a model folder",
        ("--model", str(older), "--data", str(good)): "has no drift reference",
        ("--model", str(model_dir), "--data", str(bad)): "bad.csv, line 1, column Humidity",
        ("--model", str(model_dir), "--data", str(tmp_path / "nothing.csv")): "does not exist",
        (
            "--model",
            str(model_dir),
            "--data",
            str(good),
            "--plot",
            str(tmp_path / "no" / "p.png"),
        ): "--plot: cannot",
    }
    for args, message in cases.items():
        proc = drift_cli(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert proc.stderr.startswith("error: ") and message in proc.stderr, proc.stderr


TRAIN = """
import sys
from pathlib import Path
from training.config import TrainingConfig
from training.data import load_labeled
from training.train import train_model

frame = load_labeled([Path(sys.argv[1])])
config = TrainingConfig.from_mapping({"MAX_EPOCHS": 1, "MIN_EPOCHS": 0})  # the metadata is the point
train_model(frame, config).save(Path(sys.argv[2]))
"""


def test_a_trained_model_carries_its_reference_to_the_command(occupancy_dir, training, tmp_path):
    """train_model stores the reference of the readings it was given; the command reads it back."""
    out = tmp_path / "trained"
    proc = subprocess.run(
        [sys.executable, "-c", TRAIN, str(occupancy_dir / "datatraining.txt"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metadata = json.loads((out / "metadata.json").read_text())
    stored = DriftReference.from_metadata(metadata)
    assert stored.readings == len(training) and stored.baseline_days[0] == "2015-02-05"
    assert set(stored.rows) >= {*stored.inputs, *metadata["feature_schema"]["feature_names"]}
    day_file = tmp_path / "2015-02-09.csv"
    day(training, "2015-02-09").to_csv(day_file, index=False)
    assert drift_cli("--model", str(out), "--data", str(day_file)).returncode == 0
