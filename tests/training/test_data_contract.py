"""The data contract shared by label sync, label watch, training and serving: rooms, duplicate
minutes per room, timezones, and the same features for the same reading whichever way it arrives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from services.serving.features import feature_matrix
from services.serving.schema import parse_readings
from training.data import (
    DEFAULT_ROOM,
    ROOM_COLUMN,
    SENSOR_COLUMNS,
    TIME_COLUMN,
    DataValidationError,
    load_labeled,
    load_occupancy_file,
    split_by_day,
)
from training.features import TREND_SCHEMA, make_features

HEADER = "date,Temperature,Humidity,Light,CO2,HumidityRatio,Occupancy\n"


def _rows(start: str, n: int, offset: str = "") -> str:
    stamps = pd.date_range(start, periods=n, freq="1min")
    return "".join(
        f"{t:%Y-%m-%d %H:%M:%S}{offset},21.0,27.0,{400 + i},700,0.0045,1\n" for i, t in enumerate(stamps)
    )


def _write(path: Path, body: str, header: str = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + body)
    return path


def test_two_rooms_may_hold_the_same_minutes_one_room_may_not(tmp_path: Path) -> None:
    _write(tmp_path / "room-a" / "2015-02-04.csv", _rows("2015-02-04 10:00", 30))
    _write(tmp_path / "room-b" / "2015-02-04.csv", _rows("2015-02-04 10:00", 30))
    frame = load_labeled([tmp_path])
    assert sorted(frame[ROOM_COLUMN].unique()) == ["room-a", "room-b"]
    assert len(frame) == 60
    # ordered by room, then time: each room's readings are one contiguous series
    assert frame[ROOM_COLUMN].tolist() == ["room-a"] * 30 + ["room-b"] * 30

    _write(tmp_path / "room-a" / "again.csv", _rows("2015-02-04 10:20", 5))
    with pytest.raises(DataValidationError) as err:
        load_labeled([tmp_path])
    (problem,) = err.value.problems
    assert problem.file == "room-a/again.csv" and problem.column == TIME_COLUMN
    assert "2015-02-04 10:20:00 of room 'room-a' is also in room-a/2015-02-04.csv" in problem.message


def test_a_room_column_separates_rooms_inside_one_file(tmp_path: Path) -> None:
    header = HEADER.replace("Occupancy\n", "Occupancy,room\n")
    a = _rows("2015-02-04 10:00", 3).replace("\n", ",kitchen\n")
    b = _rows("2015-02-04 10:00", 3).replace("\n", ",office-2\n")
    _write(tmp_path / "both.csv", a + b, header)
    frame = load_labeled([tmp_path])
    assert frame.groupby(ROOM_COLUMN).size().to_dict() == {"kitchen": 3, "office-2": 3}

    _write(tmp_path / "both.csv", a + a[: a.index("\n") + 1] + b, header)
    with pytest.raises(
        DataValidationError, match=r"both.csv, line 5, column date: duplicate timestamp .* in room 'kitchen'"
    ):
        load_labeled([tmp_path])


@pytest.mark.parametrize("room", ["", " ", "../up", "a b", "ü", "x" * 65, "/abs", "a//b", "-dash"])
def test_bad_room_names_are_refused_with_line_and_column(tmp_path: Path, room: str) -> None:
    header = HEADER.replace("Occupancy\n", "Occupancy,room\n")
    _write(tmp_path / "r.csv", _rows("2015-02-04 10:00", 2).replace("\n", f",{room}\n"), header)
    with pytest.raises(DataValidationError, match=r"r.csv, line 2, column room: room .* is not a name"):
        load_labeled([tmp_path])


def test_files_named_directly_are_in_the_default_room(tmp_path: Path) -> None:
    path = _write(tmp_path / "deep" / "day.csv", _rows("2015-02-04 10:00", 3))
    assert load_labeled([path])[ROOM_COLUMN].unique().tolist() == [DEFAULT_ROOM]
    assert load_labeled([tmp_path])[ROOM_COLUMN].unique().tolist() == ["deep"]


def test_mixed_timezones_in_one_file_are_a_named_error(tmp_path: Path) -> None:
    body = _rows("2015-02-04 10:00", 3) + _rows("2015-02-04 10:03", 1, offset="+01:00")
    _write(tmp_path / "tz.csv", body)
    with pytest.raises(DataValidationError) as err:
        load_labeled([tmp_path])
    text = str(err.value)
    assert "tz.csv, line 5, column date" in text and "mixed timezones" in text
    assert "line 2" in text  # names a line of the other kind


def test_offsets_are_converted_to_utc_and_may_not_mix_with_naive_files_of_a_room(tmp_path: Path) -> None:
    _write(tmp_path / "a.csv", _rows("2015-02-04 10:00", 3, offset="+01:00"))
    frame = load_labeled([tmp_path])
    assert frame[TIME_COLUMN].iloc[0] == pd.Timestamp("2015-02-04 09:00")  # UTC, no tz attached
    assert frame[TIME_COLUMN].dt.tz is None
    _write(tmp_path / "b.csv", _rows("2015-02-05 10:00", 3))
    with pytest.raises(
        DataValidationError,
        match=r"b.csv, column date: .* those of a.csv in the same room 'default' do: mixed timezones",
    ):
        load_labeled([tmp_path])
    # another room may use the other convention
    (tmp_path / "other").mkdir()
    (tmp_path / "b.csv").rename(tmp_path / "other" / "b.csv")
    assert len(load_labeled([tmp_path])) == 6


def test_training_and_serving_give_every_reading_the_same_features(
    occupancy_dir: Path, tmp_path: Path
) -> None:
    """Day files of one room give the rows a contiguous serving request gives (before rooms, window
    features restarted at every file: 360 of 8,143 rows differed)."""
    whole = load_occupancy_file(occupancy_dir / "datatraining.txt")
    split_by_day(whole, tmp_path / "room-1")
    frame = load_labeled([tmp_path])
    assert frame["source"].nunique() > 1 and frame[ROOM_COLUMN].nunique() == 1
    from_files = make_features(frame, TREND_SCHEMA).to_numpy()
    contiguous = make_features(whole.sort_values(TIME_COLUMN).reset_index(drop=True), TREND_SCHEMA).to_numpy()
    differing = int((~np.isclose(from_files, contiguous, rtol=0, atol=0)).any(axis=1).sum())
    assert differing == 0, f"{differing} of {len(frame)} rows differ"
    # serving: the history a client sends right after each midnight gives the training row
    history = TREND_SCHEMA.history_rows
    for boundary in frame.index[frame["source"].ne(frame["source"].shift())][1:]:
        for i in (boundary, boundary + 5):
            window = frame.iloc[i - history + 1 : i + 1]
            body = {
                "readings": [
                    {
                        TIME_COLUMN: f"{r[TIME_COLUMN]:%Y-%m-%d %H:%M:%S}",
                        **{c: float(r[c]) for c in SENSOR_COLUMNS},
                    }
                    for _, r in window.iterrows()
                ]
            }
            served = feature_matrix(parse_readings(body), TREND_SCHEMA)[-1]
            assert np.array_equal(served, from_files[i]), (i, served, from_files[i])
