"""Benchmark of the default occupancy model: ``python -m bench.bench_model``.

For each seed: compute the causal window features of ``datatraining.txt`` and ``datatest.txt``
(each file its own segment), train the MLP on the first 75 % of ``datatraining.txt`` by time with
early stopping on the last 25 % (the validation split), then score the restored best model on the
validation split and on ``datatest.txt`` (never used for any choice, only this final check).

Targets (exit status 1 when missed): datatest accuracy >= 98.5 % on average over the seeds, >= 98.0 %
for the worst seed, training <= 60 s per seed. Seeds: 42 (the user's RANDOM_STATE) to 46.

How the features and settings were chosen (``datatest.txt`` not involved): validation errors, mean
over seeds (5 seeds where marked *, else 42 and 43), on the official split (B: train to 2015-02-08
23:38, validate on the remaining 2,036 rows) and two more time-blocked splits of
``datatraining.txt`` (A: train to 02-05, validate on 02-06, 1,440 rows; C: train on 02-06..02-10,
validate on 02-04/05, 1,809 rows, the block holding most "lights on, nobody there" rows):

    5 raw sensors, untransformed                        A 16.5  B 148   C -
    5 raw sensors, log1p Light and CO2                  A 40.5  B 171   C 79.5
    log Light alone *                                   A 18.8  B 8.0   C 67.4
    log Light + CO2 slope 30 and 60 min * (chosen)      A 18.4  B 8.4   C 64.6
    5 sensors + Light mean/min/std, CO2/HR diff 5/15    A 34.5  B 31    C -
    log Light, CO2 level + CO2 slope 30 and 60 min      A 33    B 8     C 66
    log Light + time of day (sin, cos)                  A 47    B 54.5  C 70
    chosen, batch-norm momentum 0.99 (Keras default) *  A 68.2  B 9.0   C 83.0
    chosen, balanced class weights *                    A 19.4  B 8.4   C 64.4

Second round (issue 3; seeds 42 and 43; the chosen schema re-measured A 18.5 B 8.5 C 64.5). "+" adds
features to the chosen schema; slopes, std, min, max are of log1p(Light), log1p(CO2) unless named:

    + log Light std 5 and 10 min                        A 21.0  B 25.5  C 60.0
    + log Light std 10 min                              A 27.0  B 23.0  C 64.0
    + log Light std 5/10 min, weekend flag              A 21.0  B 14.0  C 67.0
    + Light std / mean over 10 min (raw lux)            A 29.0  B 35.0  C 62.0
    + log Light max and min 60 min                      A 22.5  B 35.5  C 69.5
    + log Light min 3 min                               A 17.5  B 12.0  C 65.5
    + log Light diff 5 and 15 min                       A 34.5  B 11.0  C 68.0
    + minutes since log Light last moved > 0.02 (<=60)  A 29.5  B 29.0  C 97.0
    + CO2 slope 5, 10, 15 min                           A 22.0  B 10.0  C 65.0
    + CO2 slope 15 min, weekend flag                    A 19.0  B 8.5   C 64.0
    + CO2 slope 120 min                                 A 18.5  B 8.5   C 77.5
    + CO2 diff 10 and 30 min                            A 29.0  B 14.0  C 93.5
    + log CO2 minus its 60-min max                      A 29.0  B 11.5  C 108.0
    + log CO2 minus its 30-min max                      A 27.0  B 8.5   C 120.5
    + Humidity slope 5, 10, 15 min                      A 22.0  B 17.0  C 83.5
    + Temperature slope 10 and 30 min                   A 47.5  B 7.5   C 70.5
    + time of day (seconds since midnight / 86400)      A 28.5  B 15.0  C 73.5
    + time of day, weekend flag (the paper's NSM, WS)   A 28.5  B 13.0  C 67.0
    + weekend flag                                      A 18.5  B 8.0   C 65.0
    chosen, CO2 slopes x60 (per hour) **                A 28.5  B 15.0  C 129.5
    chosen, CO2 slopes x400 (about unit variance) **    A 24.5  B 15.5  C 131.0
    + CO2 slope 10/15, all slopes per hour **           A 25.5  B 38.5  C 120.0
    + Humidity slope 15/30, all slopes per hour **      A 22.0  B 27.0  C 122.5
    + Temperature slope 15/30, all slopes per hour **   A 83.5  B 10.5  C 81.0
    chosen, learning rate 3e-4                          A 18.5  B 10.0  C 85.5
    chosen, batch 256                                   A 18.5  B 79.0  C 90.5
    chosen, patience 10                                 A 18.5  B 8.5   C 64.5
    chosen, dropout 0.5                                 A 18.5  B 7.0   C 84.5
    chosen, layer size 64                               A 18.0  B 8.0   C 66.0

** The CO2 slopes of log1p(CO2) are tiny (std about 0.0025 a minute, variance below the input
batch-norm's epsilon 1e-3), so the input layer shrinks them about 13-fold. Rescaling them to unit
size lets the model use them fully, and it then overfits badly (C doubles): the shrinkage is
acting as a regulariser.

Nothing beat the chosen schema and settings on all three splits; the best changes (weekend flag,
CO2 slope 15 min, layer 64, patience 10) are within seed noise of it, so the default stays. Within
weekday rows with lights on, no causal feature separates "nobody there" well on more than one day
(ROC-AUC of CO2 change over 5-60 min: 0.81-0.86 on 02-05, 0.52-0.73 on 02-06), so every
feature that catches absences on one split adds errors on another. The issue 3 target (98.5 %)
is not reached: datatest mean 97.87 %, worst 97.86 % (the paper's best is about 97.9 %).

Nothing beats a threshold on Light by more than a few rows: the model is, in effect, that threshold.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from tqdm import tqdm

from training.data import LABEL_COLUMN, TIME_COLUMN, load_occupancy_file, locate_occupancy_data
from training.features import DEFAULT_SCHEMA, FeatureSchema, make_features
from training.model import (
    BATCH_SIZE,
    BN_MOMENTUM,
    CLASS_WEIGHT,
    DROPOUT,
    LAYER_SIZE,
    LEARNING_RATE,
    MAX_EPOCHS,
    MIN_EPOCHS,
    PATIENCE,
    RANDOM_STATE,
    balanced_class_weight,
    build_model,
    configure_tensorflow,
    fit,
    predict_proba,
)

SEEDS = tuple(range(RANDOM_STATE, RANDOM_STATE + 5))  # 42, 43, 44, 45, 46
TRAIN_FRACTION = 0.75
TARGET_MEAN_ACCURACY = 0.985
TARGET_MIN_ACCURACY = 0.980
TARGET_SECONDS = 60.0


@dataclass(frozen=True)
class SeedResult:
    seed: int
    val_accuracy: float
    test_accuracy: float
    test_f1: float
    test_roc_auc: float
    seconds: float
    epochs_run: int
    best_epoch: int


@dataclass(frozen=True)
class Prepared:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    split_time: pd.Timestamp


def prepare(folder: Path, schema: FeatureSchema, train_fraction: float = TRAIN_FRACTION) -> Prepared:
    """Features per file; a time-ordered split of the training file into train and validation."""
    training = load_occupancy_file(folder / "datatraining.txt").sort_values(TIME_COLUMN, kind="stable")
    test = load_occupancy_file(folder / "datatest.txt").sort_values(TIME_COLUMN, kind="stable")
    x_all = make_features(training, schema).to_numpy()
    y_all = training[LABEL_COLUMN].to_numpy()
    cut = int(len(training) * train_fraction)
    return Prepared(
        x_train=x_all[:cut],
        y_train=y_all[:cut],
        x_val=x_all[cut:],
        y_val=y_all[cut:],
        x_test=make_features(test, schema).to_numpy(),
        y_test=test[LABEL_COLUMN].to_numpy(),
        split_time=pd.Timestamp(training[TIME_COLUMN].iloc[cut]),
    )


def run_seed(data: Prepared, seed: int) -> SeedResult:
    model = build_model(data.x_train.shape[1], LAYER_SIZE, DROPOUT, LEARNING_RATE, seed=seed)
    result = fit(
        model,
        data.x_train,
        data.y_train,
        data.x_val,
        data.y_val,
        epochs=MAX_EPOCHS,
        batch_size=BATCH_SIZE,
        patience=PATIENCE,
        class_weight=balanced_class_weight(data.y_train) if CLASS_WEIGHT else None,
        seed=seed,
    )
    p_val = predict_proba(model, data.x_val)
    p_test = predict_proba(model, data.x_test)
    return SeedResult(
        seed=seed,
        val_accuracy=float(accuracy_score(data.y_val, p_val > 0.5)),
        test_accuracy=float(accuracy_score(data.y_test, p_test > 0.5)),
        test_f1=float(f1_score(data.y_test, p_test > 0.5)),
        test_roc_auc=float(roc_auc_score(data.y_test, p_test)),
        seconds=result.seconds,
        epochs_run=result.epochs_run,
        best_epoch=result.best_epoch,
    )


def report(results: list[SeedResult], console: Console) -> bool:
    table = Table(title="occupancy MLP: validation = last 25 % of datatraining.txt; test = datatest.txt")
    for column in ("seed", "val acc", "test acc", "test F1", "test ROC-AUC", "train s", "epochs (best)"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            str(r.seed),
            f"{r.val_accuracy:.2%}",
            f"{r.test_accuracy:.2%}",
            f"{r.test_f1:.4f}",
            f"{r.test_roc_auc:.4f}",
            f"{r.seconds:.1f}",
            f"{r.epochs_run} ({r.best_epoch})",
        )
    for label, agg in (("mean", statistics.fmean), ("min", min)):
        table.add_row(
            label,
            f"{agg(r.val_accuracy for r in results):.2%}",
            f"{agg(r.test_accuracy for r in results):.2%}",
            f"{agg(r.test_f1 for r in results):.4f}",
            f"{agg(r.test_roc_auc for r in results):.4f}",
            f"{(max if label == 'min' else agg)(r.seconds for r in results):.1f}"
            + (" (max)" if label == "min" else ""),
            "",
            style="bold",
        )
    console.print(table)
    mean_acc = statistics.fmean(r.test_accuracy for r in results)
    min_acc = min(r.test_accuracy for r in results)
    max_seconds = max(r.seconds for r in results)
    checks = [
        (
            f"mean datatest accuracy {mean_acc:.2%} >= {TARGET_MEAN_ACCURACY:.1%}",
            mean_acc >= TARGET_MEAN_ACCURACY,
        ),
        (
            f"worst seed's datatest accuracy {min_acc:.2%} >= {TARGET_MIN_ACCURACY:.1%}",
            min_acc >= TARGET_MIN_ACCURACY,
        ),
        (f"slowest training {max_seconds:.1f} s <= {TARGET_SECONDS:.0f} s", max_seconds <= TARGET_SECONDS),
    ]
    for text, ok in checks:
        console.print(f"[{'green' if ok else 'red'}]{'PASS' if ok else 'FAIL'}[/] {text}")
    return all(ok for _, ok in checks)


def bench_versions(folder: Path, seeds: list[int], days: tuple[int, ...], console: Console) -> None:
    """The loop's own path: the first N days as daily files (a dataset version), the tracked task's
    training code, scored on datatest.txt. Shows how stable retrains of growing versions are."""
    import tempfile

    from training.config import TrainingConfig
    from training.data import load_labeled, split_by_day
    from training.train import train_model

    test = load_labeled([folder / "datatest.txt"])
    table = Table(title="retrains of growing dataset versions (daily files, as the loop trains them)")
    for column in ("days", "rows", "seed", "val acc", "test acc", "best epoch", "train s"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        daily = split_by_day(load_occupancy_file(folder / "datatraining.txt"), Path(tmp))
        for n in tqdm(days, desc="versions", unit="version"):
            frame = load_labeled(daily[:n])
            for seed in seeds:
                trained = train_model(frame, TrainingConfig.from_mapping({"RANDOM_STATE": seed}))
                acc = accuracy_score(test[LABEL_COLUMN], trained.bundle().predict_proba(test) > 0.5)
                table.add_row(
                    str(n),
                    f"{len(frame):,}",
                    str(seed),
                    f"{trained.validation.accuracy:.2%}",
                    f"{acc:.2%}",
                    str(trained.best_epoch),
                    f"{trained.seconds:.1f}",
                )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="folder with datatraining.txt, datatest.txt")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument(
        "--versions",
        type=int,
        nargs="*",
        default=[5, 6, 7],
        help="also retrain on the first N days as daily files, as the loop does (none: skip)",
    )
    args = parser.parse_args(argv)
    configure_tensorflow(intra_op_threads=2, inter_op_threads=1)  # before any TensorFlow work
    console = Console()
    started = time.perf_counter()
    data = prepare(locate_occupancy_data(args.data), DEFAULT_SCHEMA)
    console.print(
        f"features ({len(DEFAULT_SCHEMA.feature_names)}, window {DEFAULT_SCHEMA.window_minutes} min): "
        f"{', '.join(DEFAULT_SCHEMA.feature_names)}\n"
        f"train {len(data.y_train)} rows (to {data.split_time}), validation {len(data.y_val)}, "
        f"datatest {len(data.y_test)}; layer {LAYER_SIZE}, dropout {DROPOUT}, lr {LEARNING_RATE}, "
        f"batch {BATCH_SIZE}, epochs <= {MAX_EPOCHS}, patience {PATIENCE} (val loss, from epoch "
        f"{MIN_EPOCHS}), "
        f"batch-norm momentum {BN_MOMENTUM}, class weights {CLASS_WEIGHT}"
    )
    results = [run_seed(data, seed) for seed in tqdm(args.seeds, desc="seeds", unit="seed")]
    ok = report(results, console)
    if args.versions:
        bench_versions(locate_occupancy_data(args.data), args.seeds, tuple(args.versions), console)
    console.print(f"total {time.perf_counter() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
