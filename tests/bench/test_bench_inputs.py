"""``make bench-inputs``: the readings a target needs, and the candidate inputs per reading."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.bench_inputs import INPUT_SETS, input_frame, mlp_schema, needed
from training.data import SENSOR_COLUMNS, TIME_COLUMN, load_occupancy_file


def test_the_needed_count_rounds_up_and_is_exact_at_a_whole_count() -> None:
    assert needed(2665) == 2610  # 97.9 % of 2,665 is 2,609.035
    assert needed(1000) == 979  # exactly 979.0: no float error pushes it to 980
    assert needed(2665, 2609 / 2665) == 2609


def test_every_input_set_names_columns_the_frame_has(occupancy_dir: Path) -> None:
    data = load_occupancy_file(occupancy_dir / "datatest.txt").sort_values(TIME_COLUMN).head(200)
    inputs = input_frame(data)
    for label, columns in INPUT_SETS.items():
        assert set(columns) <= set(inputs.columns), label
        # every set adds to the default's input; the trees are monotone in it
        assert "Light" in columns, label
    assert np.isfinite(inputs.to_numpy()).all()
    np.testing.assert_array_equal(inputs["Light"], data["Light"])


def test_the_co2_slope_is_causal_and_the_calendar_comes_from_the_timestamp() -> None:
    times = pd.date_range("2015-02-07 09:00", periods=120, freq="min")  # a Saturday
    co2 = np.r_[np.full(60, 500.0), np.linspace(500, 800, 60)]
    data = pd.DataFrame({TIME_COLUMN: times.strftime("%Y-%m-%d %H:%M:%S"), "CO2": co2})
    for column in SENSOR_COLUMNS:
        if column != "CO2":
            data[column] = 1.0
    inputs = input_frame(data)
    assert (inputs["CO2_slope_15m"].iloc[:60] == 0).all()  # flat CO2, and nothing read from the future
    assert (inputs["CO2_slope_15m"].iloc[75:] > 0).all()
    assert (inputs["weekday"] == 0).all()
    assert inputs["hour"].iloc[0] == pytest.approx(9.0)
    assert inputs["hour"].iloc[90] == pytest.approx(10.5)


def test_the_mlp_reads_each_sensor_set_through_the_loops_schema() -> None:
    schema = mlp_schema(INPUT_SETS["Light + CO2_slope_30m"])
    assert schema is not None
    assert schema.feature_names == ("Light", "CO2_slope_30m")
    assert schema.log_columns == ("CO2",)
    plain = mlp_schema(INPUT_SETS["Light + CO2"])
    assert plain is not None and plain.feature_names == ("Light", "CO2") and plain.log_columns == ()
    assert mlp_schema(INPUT_SETS["Light + hour + weekday"]) is None  # the calendar is not a sensor


def test_a_missing_data_folder_is_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.bench_inputs import main

    assert main(["--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nowhere" in err and err.count("\n") == 1


def test_the_bench_prints_the_table_and_the_whole_week_result_the_docs_cite(
    occupancy_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.bench_inputs import main

    assert main(["--data", str(occupancy_dir)]) == 0
    out = " ".join(capsys.readouterr().out.split())  # the summary wraps at the console width
    assert "97.9 % needs 2,610" in out
    for label in INPUT_SETS:
        assert label in out
    # README and docs/training.md: trained on the whole week, no input set reaches the target
    best = re.search(r"trained on the whole week, the best is ([\d,]+)", out)
    assert best is not None, out[-2000:]
    assert int(best.group(1).replace(",", "")) < 2610
