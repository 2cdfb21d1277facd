"""Which inputs could lift ``datatest.txt`` to 97.9 %: ``python -m bench.bench_inputs`` (~10 s).

Issue 11 asks every seed of the default model for at least 97.9 % on ``datatest.txt``, 2,610 of its
2,665 readings. The default reads Light alone and is monotone in it, so it is a threshold on Light,
and the best threshold chosen on ``datatest.txt`` itself is right on 2,609 (``make bench-model``
prints it). This bench asks whether any other input would do better, with models that train in
milliseconds and need no seed: linear discriminant analysis, logistic regression (standardised
inputs) and gradient-boosted trees monotone in Light (scikit-learn, fixed ``random_state``).

Every input set is trained the way the loop retrains: on the first 2, 3, 4 and 5 days of
``datatraining.txt`` and on the whole week, and scored on ``datatest.txt`` (right readings, 2,610
needed). Window features (CO2 slopes) are the loop's own causal features
(:func:`training.features.make_features`); the calendar inputs (hour of day, weekday) come from the
timestamp. ``--mlp`` adds the loop's own model (:func:`training.train.train_model`, seed 42, the
shipped defaults) on every input set of sensors and CO2 slopes (about 6 minutes more). The exit status
is 0: this bench measures, it has no target of its own.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from bench.bench_model import TARGET_DATATEST, calendar_days
from training.data import (
    LABEL_COLUMN,
    SENSOR_COLUMNS,
    TIME_COLUMN,
    DataNotFoundError,
    load_occupancy_file,
    locate_occupancy_data,
)
from training.features import FeatureSchema, WindowFeature, make_features

SPANS = (2, 3, 4, 5, 7)
"""Training spans in days from the start of ``datatraining.txt`` (7: the whole week)."""

CO2_SLOPES = tuple(WindowFeature("CO2", "slope", m) for m in (15, 30, 60))
INPUT_SETS: dict[str, tuple[str, ...]] = {
    "Light": ("Light",),
    **{f"Light + {c}": ("Light", c) for c in SENSOR_COLUMNS if c != "Light"},
    **{f"Light + {f.name}": ("Light", f.name) for f in CO2_SLOPES},
    "Light + hour + weekday": ("Light", "hour", "weekday"),
    "Light + the four other sensors": ("Light", *(c for c in SENSOR_COLUMNS if c != "Light")),
    "all of the above": (
        "Light",
        *(c for c in SENSOR_COLUMNS if c != "Light"),
        *(f.name for f in CO2_SLOPES),
        "hour",
        "weekday",
    ),
}


def needed(rows: int, target: float = TARGET_DATATEST) -> int:
    """The fewest right readings out of ``rows`` that reach ``target``."""
    return math.ceil(round(target * rows, 9))


def input_frame(readings: pd.DataFrame) -> pd.DataFrame:
    """Every candidate input per reading: the raw sensors, log-CO2 slopes, hour of day, weekday."""
    schema = FeatureSchema(
        raw_columns=tuple(SENSOR_COLUMNS),
        log_columns=("CO2",),
        current_columns=(),
        window_features=CO2_SLOPES,
    )
    out = make_features(readings, schema)
    for column in SENSOR_COLUMNS:
        out[column] = readings[column].to_numpy(dtype=float)
    stamps = pd.to_datetime(readings[TIME_COLUMN])
    out["hour"] = (stamps.dt.hour + stamps.dt.minute / 60).to_numpy()
    out["weekday"] = (stamps.dt.day_of_week < 5).to_numpy(dtype=float)
    return out


Model = Callable[[list[str]], Any]
MODELS: dict[str, Model] = {
    "LDA": lambda cols: LinearDiscriminantAnalysis(),
    "logistic": lambda cols: make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
    "trees, monotone in Light": lambda cols: HistGradientBoostingClassifier(
        monotonic_cst=[1 if c == "Light" else 0 for c in cols], random_state=0
    ),
}


@dataclass(frozen=True)
class Row:
    inputs: str
    model: str
    correct: tuple[int, ...]
    """Right readings on ``datatest.txt`` per training span of :data:`SPANS`."""


def score(
    train_x: pd.DataFrame, train_y: np.ndarray, day_rank: np.ndarray, test_x: pd.DataFrame, test_y: np.ndarray
) -> list[Row]:
    rows = []
    with tqdm(total=len(INPUT_SETS) * len(MODELS) * len(SPANS), desc="fits", unit="fit") as progress:
        for label, columns in INPUT_SETS.items():
            cols = list(columns)
            for name, make in MODELS.items():
                correct = []
                for days in SPANS:
                    keep = day_rank < days
                    model = make(cols).fit(train_x.loc[keep, cols], train_y[keep])
                    correct.append(int((model.predict(test_x[cols]) == test_y).sum()))
                    progress.update()
                rows.append(Row(label, name, tuple(correct)))
    return rows


def mlp_schema(columns: Sequence[str]) -> FeatureSchema | None:
    """The loop's feature schema reading ``columns`` (raw sensors, log-CO2 slopes); None for the calendar."""
    slopes = tuple(f for f in CO2_SLOPES if f.name in columns)
    current = tuple(c for c in columns if c in SENSOR_COLUMNS)
    if len(current) + len(slopes) != len(columns):
        return None
    raw = tuple(dict.fromkeys((*current, *(["CO2"] if slopes else []))))
    return FeatureSchema(
        raw_columns=raw,
        log_columns=("CO2",) if slopes else (),
        current_columns=current,
        window_features=slopes,
    )


def score_mlp(training: pd.DataFrame, day_rank: np.ndarray, test: pd.DataFrame, seed: int = 42) -> list[Row]:
    from training.config import TrainingConfig
    from training.model import configure_tensorflow
    from training.train import train_model

    configure_tensorflow()
    config = TrainingConfig.from_mapping({"RANDOM_STATE": seed})
    labels = test[LABEL_COLUMN].to_numpy().astype(int)
    sets = {label: schema for label, cols in INPUT_SETS.items() if (schema := mlp_schema(cols)) is not None}
    rows = []
    with tqdm(total=len(sets) * len(SPANS), desc="MLP trainings", unit="model") as progress:
        for label, schema in sets.items():
            correct = []
            for days in SPANS:
                bundle = train_model(training[day_rank < days], config, schema).bundle()
                correct.append(int(((bundle.predict_proba(test) >= 0.5) == labels).sum()))
                progress.update()
            rows.append(Row(label, f"the loop's MLP, seed {seed}", tuple(correct)))
    return rows


def report(rows: list[Row], total: int, console: Console) -> None:
    goal = needed(total)
    table = Table(title=f"datatest.txt: right readings of {total:,} (97.9 % needs {goal:,})")
    table.add_column("inputs")
    table.add_column("model")
    for days in SPANS:
        table.add_column("week" if days == SPANS[-1] else f"{days} days", justify="right")
    for row in rows:
        cells = [f"[green]{c:,}[/]" if c >= goal else f"{c:,}" for c in row.correct]
        table.add_row(row.inputs, row.model, *cells)
    console.print(table)
    week = max(rows, key=lambda r: r.correct[-1])
    reaching = [(r, days) for r in rows for days, c in zip(SPANS, r.correct, strict=True) if c >= goal]
    console.print(
        f"trained on the whole week, the best is {week.correct[-1]:,} ({week.correct[-1] / total:.3%}; "
        f"{week.inputs}, {week.model}); {len(reaching)} of {len(rows) * len(SPANS)} fits reach {goal:,}"
        + (": " + ", ".join(f"{r.inputs} / {r.model} / {d} days" for r, d in reaching) if reaching else "")
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="folder with datatraining.txt, datatest.txt")
    parser.add_argument("--mlp", action="store_true", help="also train the loop's MLP on each input set")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)  # LDA's collinearity notes on humidity
    started = time.perf_counter()
    try:
        folder = locate_occupancy_data(args.data)
    except DataNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    training = load_occupancy_file(folder / "datatraining.txt").sort_values(TIME_COLUMN, kind="stable")
    test = load_occupancy_file(folder / "datatest.txt").sort_values(TIME_COLUMN, kind="stable")
    day = pd.to_datetime(training[TIME_COLUMN]).dt.date
    rank = day.map({d: i for i, d in enumerate(calendar_days(training))}).to_numpy()
    train_x = input_frame(training).reset_index(drop=True)
    test_x = input_frame(test).reset_index(drop=True)
    test_y = test[LABEL_COLUMN].to_numpy().astype(int)
    rows = score(train_x, training[LABEL_COLUMN].to_numpy().astype(int), rank, test_x, test_y)
    if args.mlp:
        rows += score_mlp(training, rank, test)
    console = Console(width=max(Console().width, 130))
    report(rows, len(test), console)
    console.print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
