"""What a short request costs in accuracy: every reading of a labeled file predicted through the
endpoint's own code (``Preprocess``: request validation, numpy features, portable model) from a
request holding it and the ``k - 1`` readings before it, against the whole file as history.

``python -m services.serving.history_cost --model DIR --data datatest.txt`` (DIR from
``occupancy-mlops train --data datatraining.txt --out DIR``); prints a JSON line per history length.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from services.serving.endpoint import Preprocess
from services.serving.schema import parse_readings
from training.data import LABEL_COLUMN, SENSOR_COLUMNS, TIME_COLUMN, load_occupancy_file
from training.evaluate import compute_metrics
from training.features import make_features

HISTORIES = (1, 2, 5, 10, 20, 31, 45, 61)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="model folder (model.npz + metadata.json)")
    parser.add_argument("--data", type=Path, required=True, help="labeled UCI file, e.g. datatest.txt")
    parser.add_argument("--history", type=int, nargs="*", default=list(HISTORIES))
    args = parser.parse_args(argv)

    pre = Preprocess()
    pre.load(str(args.model))
    assert pre.bundle is not None
    frame = load_occupancy_file(args.data).sort_values(TIME_COLUMN, kind="stable").reset_index(drop=True)
    labels = frame[LABEL_COLUMN].to_numpy()
    rows = [
        {TIME_COLUMN: t.isoformat(sep=" "), **{c: float(frame[c].iloc[i]) for c in SENSOR_COLUMNS}}
        for i, t in enumerate(frame[TIME_COLUMN])
    ]
    full = pre.bundle.portable.predict_proba(make_features(frame, pre.bundle.schema).to_numpy())
    reference = compute_metrics(labels, full)
    print(json.dumps({"history": "whole file", "rows": len(rows), "accuracy": round(reference.accuracy, 4)}))
    for k in args.history:
        started = time.perf_counter()
        proba = np.empty(len(rows))
        for i in range(len(rows)):
            body = {"readings": rows[max(0, i - k + 1) : i + 1]}
            _, p = pre.process(parse_readings(body), {})
            proba[i] = p[-1]
        metrics = compute_metrics(labels, proba)
        print(
            json.dumps(
                {
                    "history": k,
                    "accuracy": round(metrics.accuracy, 4),
                    "cost_points": round(100 * (reference.accuracy - metrics.accuracy), 2),
                    "same_as_full": round(float(np.mean((proba >= 0.5) == (full >= 0.5))), 4),
                    "us_per_request": round((time.perf_counter() - started) / len(rows) * 1e6, 1),
                }
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
