"""The baseline of ``make bench-model``: the best fixed light rule, on real and hand-made frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.bench_model import light_rule_threshold, rule_accuracy
from training.data import LABEL_COLUMN, load_occupancy_file


def frame(light: list[float], occupied: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"Light": light, LABEL_COLUMN: occupied})


def test_the_rule_is_the_middle_of_the_optimal_gap() -> None:
    threshold = light_rule_threshold(frame([0, 10, 100, 400, 500], [0, 0, 0, 1, 1]))
    assert threshold == pytest.approx(250.0)


def test_tied_optimal_ranges_apart_give_the_middle_of_the_widest_one() -> None:
    # "Light > t" is right on 4 of 6 rows for t in [0, 10), [300, 500) and [900, 1000), on 3 between:
    # the middle of the whole span (500) would be one of the worse rules
    data = frame([0, 10, 300, 500, 900, 1000], [0, 1, 0, 1, 0, 1])
    threshold = light_rule_threshold(data)
    assert threshold == pytest.approx(400.0)
    assert rule_accuracy(data, threshold) == pytest.approx(4 / 6)


def test_on_datatest_the_rule_reaches_the_best_light_accuracy(occupancy_dir: Path) -> None:
    data = load_occupancy_file(occupancy_dir / "datatest.txt")
    light = np.unique(data["Light"].to_numpy())
    best = max(rule_accuracy(data, t) for t in light)
    assert rule_accuracy(data, light_rule_threshold(data)) == pytest.approx(best)


@pytest.mark.parametrize("extra", [False, True])
def test_a_missing_data_folder_or_extra_file_is_one_line_naming_it(
    tmp_path: Path, occupancy_dir: Path, extra: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.bench_model import main

    missing = tmp_path / "datatest2.txt" if extra else tmp_path / "nowhere"
    args = ["--data", str(occupancy_dir), "--extra", str(missing)] if extra else ["--data", str(missing)]
    assert main(args) == 2  # before any training
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err and err.count("\n") == 1
