"""The model's features for a request's readings, without pandas and without empty lag columns.

:func:`training.features.make_features` builds a lag matrix as wide as the schema's window (61
columns for the default model) whatever the number of rows, and folds it column by column: about
2 ms for a one-reading request. A lag beyond the request's length is missing in every row, and a
missing column changes nothing in the fold (it is skipped, or adds 0.0), so trimming the width to
``len - 1`` gives the same numbers (``tests/serving/test_features.py`` checks equality on the real
data) in microseconds for short requests.
"""

from __future__ import annotations

import numpy as np

from services.serving.schema import Readings
from training.features import FeatureSchema, _lag_matrix, _window_stat

_SELF_OPS = frozenset({"mean", "min", "max"})  # of one value: the value; std, diff, slope: 0


def segment_positions(stamps: np.ndarray, max_gap_minutes: float) -> np.ndarray:
    """Index of every reading in its contiguous segment (as :func:`training.features.segment_positions`)."""
    n = len(stamps)
    starts = np.ones(n, dtype=bool)
    if n > 1:
        step = np.diff(stamps.astype("datetime64[ns]")).astype(np.int64)
        gap = np.int64(round(max_gap_minutes * 60e9))
        starts[1:] = (step <= 0) | (step > gap)
    start_index = np.maximum.accumulate(np.where(starts, np.arange(n), 0)) if n else starts.astype(np.int64)
    return np.arange(n) - start_index


def feature_matrix(readings: Readings, schema: FeatureSchema) -> np.ndarray:
    """``(n, len(schema.feature_names))`` float64: the rows ``make_features`` gives for the readings."""
    n = len(readings)
    values = {c: readings.column(c) for c in schema.raw_columns}
    for c in schema.log_columns:
        values[c] = np.log1p(values[c])
    if n == 1:  # the common request: one reading, every window holds it alone
        row = [float(values[c][0]) for c in schema.current_columns]
        row += [float(values[f.column][0]) if f.op in _SELF_OPS else 0.0 for f in schema.window_features]
        return np.array([row])
    position = segment_positions(readings.stamps, schema.max_gap_minutes)
    width = min(schema.window_minutes, max(n - 1, 0))
    out: list[np.ndarray] = [values[c] for c in schema.current_columns]
    if schema.window_features and width == 0:
        # one reading (or no history at all): every window holds the reading alone
        for f in schema.window_features:
            out.append(values[f.column].copy() if f.op in _SELF_OPS else np.zeros(n))
    elif schema.window_features:
        stamps = readings.stamps.astype("datetime64[ms]").astype(np.int64)
        time_lags = _lag_matrix(stamps.astype(float), position, width)
        minutes_back = (time_lags - time_lags[:, -1:]) / 60_000.0
        lags = {
            c: _lag_matrix(values[c], position, width) for c in {f.column for f in schema.window_features}
        }
        for f in schema.window_features:
            cols = slice(width - min(f.minutes, width), width + 1)
            out.append(_window_stat(lags[f.column][:, cols], minutes_back[:, cols], f.op))
    return np.column_stack(out) if out else np.empty((n, 0))
