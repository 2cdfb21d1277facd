"""Data tests: loading the real files and refusing bad labeled files with a precise message."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.data import DataValidationError, load_all, load_labeled, read_labeled_csv, split_by_day

HEADER = "date,Temperature,Humidity,Light,CO2,HumidityRatio,Occupancy\n"
GOOD = "2015-02-04 17:51:00,23.18,27.27,426,721.25,0.00479,1\n"


def _csv(tmp_path: Path, body: str, header: str = HEADER, name: str = "day.csv") -> Path:
    path = tmp_path / name
    path.write_text(header + body)
    return path


def test_real_files_load_in_time_order(occupancy_dir):
    frame = load_labeled([occupancy_dir])
    assert len(frame) == 8143 + 2665
    assert frame["date"].is_monotonic_increasing
    assert set(frame["Occupancy"].unique()) == {0, 1}


def test_daily_files_round_trip_through_validation(tmp_path, occupancy_dir):
    daily = split_by_day(load_all(occupancy_dir), tmp_path)
    assert [p.stem for p in daily][:2] == ["2015-02-02", "2015-02-03"]
    again = load_labeled([tmp_path])
    assert len(again) == 10808


@pytest.mark.parametrize(
    ("body", "header", "expected"),
    [
        (
            GOOD,
            "date,Temperature,Humidity,Light,HumidityRatio,Occupancy\n",
            "column CO2: required column is missing",
        ),
        (
            GOOD + "2015-02-04 17:52:00,23.1,27.2,abc,720,0.0047,1\n",
            HEADER,
            "line 3, column Light: 'abc' is not",
        ),
        (
            GOOD + "2015-02-04 17:52:00,23.1,27.2,420,720,0.0047,2\n",
            HEADER,
            "line 3, column Occupancy: label '2'",
        ),
        (
            GOOD + "2015-02-04 17:52:00,23.1,27.2,420,inf,0.0047,1\n",
            HEADER,
            "line 3, column CO2: 'inf' is not a finite",
        ),
        (
            GOOD + "2015-02-04 17:52:00,23.1,270,420,720,0.0047,1\n",
            HEADER,
            "line 3, column Humidity: 270.0 is outside",
        ),
        (GOOD + GOOD, HEADER, "line 3, column date: duplicate timestamp"),
        (GOOD + "yesterday-ish,23.1,27.2,420,720,0.0047,1\n", HEADER, "line 3, column date: 'yesterday-ish'"),
        ("", HEADER, "has a header but no rows"),
    ],
)
def test_bad_files_are_refused_naming_file_line_and_column(tmp_path, body, header, expected):
    with pytest.raises(DataValidationError) as err:
        read_labeled_csv(_csv(tmp_path, body, header))
    assert "day.csv" in str(err.value)
    assert expected in str(err.value)


def test_every_bad_file_is_reported_at_once(tmp_path):
    _csv(tmp_path, GOOD.replace(",1\n", ",7\n"), name="a.csv")
    _csv(tmp_path, GOOD.replace("426", "lots"), name="b.csv")
    with pytest.raises(DataValidationError) as err:
        load_labeled([tmp_path])
    assert {p.file for p in err.value.problems} == {"a.csv", "b.csv"}


def test_the_same_minute_in_two_files_is_refused(tmp_path):
    _csv(tmp_path, GOOD, name="a.csv")
    _csv(tmp_path, GOOD, name="b.csv")
    with pytest.raises(DataValidationError, match=r"also in a.csv"):
        load_labeled([tmp_path])
