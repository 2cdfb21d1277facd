"""Window features: causal, reset at gaps, the same for one serving window as for the whole batch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.data import ROOM_COLUMN, SENSOR_COLUMNS
from training.features import (
    DEFAULT_SCHEMA,
    TREND_SCHEMA,
    FeatureSchema,
    WindowFeature,
    feature_row,
    make_features,
    segment_positions,
)

EVERY_OP = FeatureSchema(
    window_features=tuple(
        WindowFeature(column, op, minutes)
        for column in ("Light", "CO2", "HumidityRatio")
        for op in ("mean", "min", "max", "std", "diff", "slope")
        for minutes in (1, 3, 5)
    ),
)
SCHEMAS = [DEFAULT_SCHEMA, TREND_SCHEMA, EVERY_OP]


def readings(n: int, seed: int = 0, start: str = "2015-02-04 08:00:00") -> pd.DataFrame:
    """Synthetic sensor readings one a minute, with the 59/60/61 s jitter of the real data."""
    rng = np.random.default_rng(seed)
    jitter = rng.choice([-1, 0, 1], size=n)
    seconds = np.arange(n) * 60 + np.where(np.arange(n) == 0, 0, jitter)
    frame = pd.DataFrame(
        {
            "date": pd.Timestamp(start) + pd.to_timedelta(seconds, unit="s"),
            "Temperature": 21 + rng.normal(0, 0.2, n).cumsum() / 10,
            "Humidity": 27 + rng.normal(0, 0.3, n),
            "Light": np.where(rng.random(n) < 0.5, 0.0, rng.uniform(300, 600, n)),
            "CO2": 450 + np.abs(rng.normal(0, 30, n).cumsum()),
            "HumidityRatio": 0.004 + rng.normal(0, 1e-4, n),
        }
    )
    frame["Occupancy"] = (frame["Light"] > 0).astype(int)
    return frame


def with_gap(frame: pd.DataFrame, at: int, minutes: float) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[at:, "date"] = frame.loc[at:, "date"] + pd.Timedelta(minutes=minutes)
    return frame


def assert_same(a: pd.DataFrame | pd.Series, b: pd.DataFrame | pd.Series) -> None:
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("schema", SCHEMAS, ids=["default", "trend", "every-op"])
def test_schema_names_match_columns(schema: FeatureSchema) -> None:
    features = make_features(readings(40), schema)
    assert tuple(features.columns) == schema.feature_names
    assert len(schema.feature_names) == len(set(schema.feature_names))
    assert features.dtypes.eq(np.float64).all()
    assert np.isfinite(features.to_numpy()).all()
    assert schema.history_rows == schema.window_minutes + 1
    assert schema.window_minutes == max((f.minutes for f in schema.window_features), default=0)


def test_schemas_declare_their_window_and_inputs() -> None:
    assert DEFAULT_SCHEMA.window_minutes == 0 and DEFAULT_SCHEMA.history_rows == 1  # one reading
    assert TREND_SCHEMA.window_minutes == 60
    assert TREND_SCHEMA.history_rows == 61
    for schema in (DEFAULT_SCHEMA, TREND_SCHEMA):
        frame = readings(5)[["date", *schema.raw_columns]]  # the raw columns are all it needs
        assert make_features(frame, schema).shape == (5, len(schema.feature_names))
        with pytest.raises(KeyError, match="lacks columns"):
            make_features(frame.drop(columns=[schema.raw_columns[0]]), schema)


def test_schema_is_frozen_and_validated() -> None:
    with pytest.raises(AttributeError):
        DEFAULT_SCHEMA.max_gap_minutes = 5  # type: ignore[misc]
    with pytest.raises(ValueError, match="not raw columns"):
        FeatureSchema(window_features=(WindowFeature("Pressure", "mean", 5),))
    with pytest.raises(ValueError, match="bad window feature"):
        FeatureSchema(window_features=(WindowFeature("CO2", "mean", 0),))


@pytest.mark.parametrize("schema", SCHEMAS, ids=["default", "trend", "every-op"])
def test_changing_a_future_reading_never_changes_an_earlier_row(schema: FeatureSchema) -> None:
    frame = readings(90, seed=1)
    before = make_features(frame, schema)
    for row in (0, 7, 30, 70, 89):
        changed = frame.copy()
        for column in SENSOR_COLUMNS:
            changed.loc[row:, column] = changed.loc[row:, column] * 3 + 17
        after = make_features(changed, schema)
        assert_same(after.iloc[:row], before.iloc[:row])
        assert not after.iloc[row:].equals(before.iloc[row:])


def test_rows_beyond_the_window_do_not_matter() -> None:
    schema = EVERY_OP
    frame = readings(50, seed=2)
    before = make_features(frame, schema)
    changed = frame.copy()
    changed.loc[:9, list(SENSOR_COLUMNS)] = 1.0  # rows 0..9; row 10 + window_minutes is unaffected
    after = make_features(changed, schema)
    first_unaffected = 10 + schema.window_minutes
    assert_same(after.iloc[first_unaffected:], before.iloc[first_unaffected:])


def test_segments_start_at_gaps_time_steps_back_and_room_changes() -> None:
    frame = with_gap(readings(30), at=10, minutes=2.5)  # a 3.5 min step: gap
    frame = with_gap(frame, at=20, minutes=0.9)  # a 1.9 min step: same segment
    positions = segment_positions(frame)
    assert positions[:12].tolist() == [*range(10), 0, 1]
    assert positions[19:22].tolist() == [9, 10, 11]
    frame[ROOM_COLUMN] = ["a"] * 25 + ["b"] * 5
    assert segment_positions(frame)[24:27].tolist() == [14, 0, 1]
    frame[ROOM_COLUMN] = "a"
    frame["source"] = ["a.csv"] * 25 + ["b.csv"] * 5  # a room's next file continues its series
    assert segment_positions(frame)[24:27].tolist() == [14, 15, 16]
    backwards = pd.concat([readings(5, start="2015-02-05"), readings(5, start="2015-02-04")])
    assert segment_positions(backwards.reset_index(drop=True)).tolist() == [*range(5), *range(5)]


@pytest.mark.parametrize("schema", SCHEMAS, ids=["default", "trend", "every-op"])
def test_a_gap_resets_the_window(schema: FeatureSchema) -> None:
    frame = with_gap(readings(100, seed=3), at=30, minutes=10)
    features = make_features(frame, schema)
    # after the gap, the rows are those of the second part computed on its own
    assert_same(features.iloc[30:], make_features(frame.iloc[30:].reset_index(drop=True), schema))
    # the first row of a segment: differences, spreads and slopes are 0, means/min/max the value
    first = features.iloc[30]
    values_only = FeatureSchema(
        raw_columns=schema.raw_columns, log_columns=schema.log_columns, current_columns=schema.raw_columns
    )
    current = make_features(frame.iloc[30:31], values_only).iloc[0]
    for f in schema.window_features:
        expected = 0.0 if f.op in ("diff", "std", "slope") else current[f.column]
        assert first[f.name] == pytest.approx(expected), f.name


def test_partial_windows_match_pandas_rolling() -> None:
    frame = with_gap(readings(40, seed=4), at=20, minutes=5)
    schema = FeatureSchema(
        log_columns=(),
        window_features=(
            WindowFeature("CO2", "mean", 5),
            WindowFeature("CO2", "std", 5),
            WindowFeature("CO2", "min", 5),
            WindowFeature("CO2", "diff", 5),
        ),
    )
    features = make_features(frame, schema)
    for part in (frame.iloc[:20], frame.iloc[20:]):
        co2 = part["CO2"]
        rolling = co2.rolling(6, min_periods=1)
        got = features.loc[part.index]
        np.testing.assert_allclose(got["CO2_mean_5m"], rolling.mean(), rtol=1e-12)
        np.testing.assert_allclose(got["CO2_std_5m"], rolling.std(ddof=0).fillna(0), atol=1e-9)
        np.testing.assert_allclose(got["CO2_min_5m"], rolling.min())
        oldest = co2.shift(5).fillna(co2.iloc[0])
        np.testing.assert_allclose(got["CO2_diff_5m"], co2 - oldest)


def test_slope_of_a_straight_line() -> None:
    frame = readings(20, seed=5)
    minutes = (frame["date"] - frame["date"].iloc[0]).dt.total_seconds() / 60
    frame["CO2"] = 400 + 3.0 * minutes
    schema = FeatureSchema(log_columns=(), window_features=(WindowFeature("CO2", "slope", 5),))
    slope = make_features(frame, schema)["CO2_slope_5m"]
    assert slope.iloc[0] == 0.0
    np.testing.assert_allclose(slope.iloc[1:], 3.0, rtol=1e-9)


@pytest.mark.parametrize("schema", SCHEMAS, ids=["default", "trend", "every-op"])
def test_single_window_equals_the_batch_row(schema: FeatureSchema) -> None:
    frame = with_gap(readings(160, seed=6), at=90, minutes=7)
    batch = make_features(frame, schema)
    positions = segment_positions(frame)
    for row in range(len(frame)):
        # what a client sends: exactly the history needed, more than that, or (at the start of a
        # segment) only the readings since the segment started
        starts = {
            max(0, row + 1 - schema.history_rows),
            max(0, row + 1 - schema.history_rows - 9),
            row - int(positions[row]),
        }
        for start in starts:
            single = feature_row(frame.iloc[start : row + 1], schema)
            assert tuple(single.index) == schema.feature_names
            assert_same(single, batch.iloc[row])


def test_feature_row_with_the_whole_history_is_exact_also_inside_a_gap_window() -> None:
    schema = EVERY_OP
    frame = with_gap(readings(30, seed=7), at=25, minutes=4)
    batch = make_features(frame, schema)
    for row in range(25, 30):  # windows that straddle the gap
        assert_same(feature_row(frame.iloc[: row + 1], schema), batch.iloc[row])
        assert_same(feature_row(frame.iloc[row - schema.window_minutes : row + 1], schema), batch.iloc[row])


def test_feature_row_needs_readings() -> None:
    with pytest.raises(ValueError, match="no readings"):
        feature_row(readings(3).iloc[:0])
