"""Benchmark of the default occupancy model on days it has never seen: ``python -m bench.bench_model``.

Leave-one-day-out over the labeled days of ``datatraining.txt`` (2015-02-04 evening to 02-10 morning,
a weekend included): for every seed and every calendar day, the loop's own training code
(:func:`training.train.train_model`, the defaults the loop ships) learns from the other days and is
scored on the held-out day. The day's readings keep the hour before them as history, as a serving
request would. Beside it, the baseline a model must beat: the fixed rule ``Light > t`` with ``t``
the accuracy-optimal threshold on the other days (the middle of the optimal range when several tie).
Then one model per seed on the whole of ``datatraining.txt`` is scored on ``datatest.txt``, which
no choice ever looked at; ``--extra FILE`` scores more files the same way (the later week of the
publication, ``datatest2.txt``, if you have it).

Targets (issue 11; exit status 1 when one is missed), every seed of 42 to 46:
- mean held-out-day accuracy at least the light rule's mean over the same days;
- no held-out day more than 0.2 points below the rule on that day;
- ``datatest.txt`` accuracy at least 97.9 %;
- on every held-out day, the spread between seeds (best minus worst) at most 0.3 points.
Brier score and expected calibration error are reported over the held-out days (all rows pooled).
``--plot PNG`` draws held-out-day accuracy per seed against the rule.

How the default model was chosen (issue 11; held-out days of ``datatraining.txt`` only, never
``datatest.txt``). Mean accuracy over the 7 held-out days (the rule: 98.04 %), seed 42 (43 in
brackets), and the day furthest below the rule; ``datatest.txt`` only as the final check:

    log1p(Light) + log-CO2 slopes 30/60 min (the old default)  96.68 (96.06)  02-07 -4.79   97.86
      + Platt scaling                                          97.81 (96.99)  02-07 -0.90   97.82
    log1p(Light) alone                                         96.86          02-07 -7.08   97.82
    Light in lux alone                                         97.98          02-07 -0.41   95.46
    lux + log-CO2 slopes                                       98.39          02-04 -0.27   96.29
    lux clipped at 600 + log-CO2 slopes + Platt                98.92          02-04 -0.27   97.00
    monotone, log1p(Light) + log-CO2 slopes + Platt            97.86          02-07 -1.25   97.86
    monotone, lux + log-CO2 slopes                             98.10          02-06 -0.07   97.86
    monotone, lux + log-CO2 slopes + Platt (TREND_SCHEMA)      98.51 (98.77)  02-06 -0.07   97.86
    monotone, lux alone + Platt (chosen)                       98.33          02-05 -0.28   97.86
    monotone, lux + log-CO2 slopes 15/30/60 min + Platt        98.25          02-09 -0.41   97.86
    monotone, lux + ppm CO2 slopes + Platt                     98.19 (98.55)  02-09 -0.20   97.86

What the numbers say: ``log1p`` squeezes 200-450 lux together, so the learned boundary fell inside
the daylight of empty rooms (Saturday 02-07 has 231 empty minutes above 200 lux). In lux the
boundary sits at the bottom of the lamps' 390-500 lux, but an unconstrained MLP then learned "very
bright means empty" from that one sunny Saturday (1,546 lux) and missed occupied sunny minutes of
other weeks (721-1,697 lux on ``datatest.txt``). Non-negative weights make the probability rise with
light and with rising CO2 whatever the seed; Platt scaling on the training rows moves the 0.5
boundary to where the classes cross and calibrates the probability.

Then the loop's own case, retrains on the first 2, 3, 4 and 5 days (seed 42, ``datatest.txt``):
lux + log-CO2 slopes 95.42 / 97.86 / 94.78 / 97.86 % (with 2 or 4 days it leans on falling CO2 and
misses occupied minutes at 430 lux), lux alone 97.82 / 97.82 / 97.86 / 97.86 %, the old default
(log1p, unconstrained) 97.07 / 97.07 / 97.00 / 97.86 %. The loop starts with few days, so the default is
lux alone; the CO2 trend stays available as ``training.features.TREND_SCHEMA``.

The ``datatest.txt`` target is out of reach of Light alone: a model that never lowers the probability
as the light rises is a threshold on Light, and the best threshold chosen on ``datatest.txt`` itself
(197 or 269 lux) is right on 2,609 of its 2,665 readings, 97.899 %; 97.9 % needs 2,610. The default
reaches 2,608 (97.86 %, the rule chosen on the training week). Beating it takes a second input that
tells an empty lit room from an occupied one (54 of the 57 errors); the CO2 trend does on some
training sets and not others (above), so the default stays with Light.

The seed spread on the held-out Saturday (1.88 points with the defaults, seeds 42-46) is where the
boundary lands in a gap of the data. The six other days hold 5 readings between 300 and 365 lux (4
occupied); the Saturday holds 139, all daylight in an empty room. The seeds put the Light boundary at
331-340 lux, anywhere the other days allow, and on that Saturday each lux of boundary is about 0.2
points (the bench prints the boundaries and the counts for the day the seeds disagree on most). A
spread of 0.3 points needs the boundary pinned to about 1.5 lux where the data say nothing. Tried,
Saturday held out, seeds 42-46 (spread; Saturday accuracy): longer training (PATIENCE 15,
MAX_EPOCHS 100: 2.99 points), no dropout (2.43), batch 256 (1.46; 95.97-97.43 %), batch 512 (3.82),
an L2 kernel penalty of 1e-4 (2.08) and 1e-3 (0.56, but 92.99-93.54 % against the rule's 93.19 %:
a smoother model falls back to the rule), batch 256 with L2 1e-4 (0.56). None pins it; a boundary
chosen by the data rather than by the seed (the middle of the gap, as the rule does) would be the rule.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from training.bundle import ModelBundle
from training.config import DEFAULTS, TrainingConfig
from training.data import (
    LABEL_COLUMN,
    TIME_COLUMN,
    DataNotFoundError,
    load_occupancy_file,
    locate_occupancy_data,
)
from training.evaluate import compute_metrics

SEEDS = tuple(range(DEFAULTS["RANDOM_STATE"], DEFAULTS["RANDOM_STATE"] + 5))  # 42, 43, 44, 45, 46
TARGET_DATATEST = 0.979
MAX_DAY_DEFICIT = 0.002
MAX_DAY_SPREAD = 0.003


def light_rule_threshold(frame: pd.DataFrame) -> float:
    """The ``Light > t`` threshold with the best accuracy on ``frame``.

    When several thresholds tie, the middle of the widest contiguous range of them: the ties can lie
    in separate ranges (on ``datatest.txt`` both 197 and 269 lux are optimal, 254 lux is not), and
    the middle of their whole span would then be a worse rule.
    """
    light = frame["Light"].to_numpy(dtype=float)
    occupied = frame[LABEL_COLUMN].to_numpy().astype(bool)
    values = np.unique(light)
    order = np.argsort(light, kind="stable")
    ranked_light, ranked_occupied = light[order], occupied[order]
    # rows at or below each candidate value are predicted empty: right = empty rows there + occupied above
    upto = np.searchsorted(ranked_light, values, side="right")
    empty_below = np.concatenate([[0], np.cumsum(~ranked_occupied)])[upto]
    occupied_above = occupied.sum() - np.concatenate([[0], np.cumsum(ranked_occupied)])[upto]
    correct = empty_below + occupied_above
    best = np.flatnonzero(correct == correct.max())
    # "Light > t" is the same rule for every t from a tied value up to the next reading's value
    runs = np.split(best, np.flatnonzero(np.diff(best) > 1) + 1)

    def span(run: np.ndarray) -> tuple[float, float]:
        high = values[run[-1] + 1] if run[-1] + 1 < len(values) else values[run[-1]]
        return float(values[run[0]]), float(high)

    low, high = max((span(run) for run in runs), key=lambda lh: lh[1] - lh[0])
    return (low + high) / 2


def rule_accuracy(frame: pd.DataFrame, threshold: float) -> float:
    return float(np.mean((frame["Light"].to_numpy() > threshold) == frame[LABEL_COLUMN].to_numpy()))


@dataclass
class SeedRun:
    seed: int
    day_accuracy: dict[date, float] = field(default_factory=dict)
    day_proba: list[np.ndarray] = field(default_factory=list)
    day_labels: list[np.ndarray] = field(default_factory=list)
    file_accuracy: dict[str, float] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)
    day_boundary: dict[date, float] = field(default_factory=dict)
    """The Light (lux) where the model trained without the day crosses 0.5 (Light-only schemas)."""


LUX_GRID = np.arange(0.0, 2000.0, 0.5)


def light_boundary(bundle: ModelBundle) -> float:
    """Where a model of Light alone crosses probability 0.5, to half a lux; NaN for other schemas."""
    if tuple(bundle.schema.feature_names) != ("Light",) or bundle.schema.log_columns:
        return math.nan
    above = bundle.portable.predict_proba(LUX_GRID[:, None]) >= 0.5
    return float(LUX_GRID[np.argmax(above)]) if above.any() else math.nan


def calendar_days(frame: pd.DataFrame) -> list[date]:
    return sorted(set(pd.to_datetime(frame[TIME_COLUMN]).dt.date))


def run_seed(training: pd.DataFrame, checks: dict[str, pd.DataFrame], seed: int, progress: tqdm) -> SeedRun:
    from training.train import train_model

    config = TrainingConfig.from_mapping({"RANDOM_STATE": seed})
    run = SeedRun(seed)
    day_of = pd.to_datetime(training[TIME_COLUMN]).dt.date.to_numpy()
    labels = training[LABEL_COLUMN].to_numpy()
    for day in calendar_days(training):
        trained = train_model(training[day_of != day], config)
        bundle = trained.bundle()
        proba = bundle.predict_proba(training)[day_of == day]  # the day, with its history
        run.day_boundary[day] = light_boundary(bundle)
        run.day_accuracy[day] = float(np.mean((proba >= 0.5) == labels[day_of == day]))
        run.day_proba.append(proba)
        run.day_labels.append(labels[day_of == day])
        run.seconds.append(trained.seconds)
        progress.update()
    trained = train_model(training, config)
    run.seconds.append(trained.seconds)
    bundle = trained.bundle()
    for name, frame in checks.items():
        proba = bundle.predict_proba(frame)
        run.file_accuracy[name] = float(np.mean((proba >= 0.5) == frame[LABEL_COLUMN].to_numpy()))
    progress.update()
    return run


def report(
    runs: list[SeedRun], rule: dict[date, float], thresholds: dict[date, float], console: Console
) -> bool:
    days = list(rule)
    table = Table(title="held-out day accuracy: trained on the other days of datatraining.txt")
    table.add_column("day", justify="left")
    table.add_column("rows", justify="right")
    table.add_column("Light > t (t)", justify="right")
    for r in runs:
        table.add_column(f"seed {r.seed}", justify="right")
    table.add_column("spread", justify="right")
    spreads: dict[date, float] = {}
    for i, day in enumerate(days):
        values = [r.day_accuracy[day] for r in runs]
        spreads[day] = max(values) - min(values)
        cells = []
        for v in values:
            deficit = rule[day] - v
            style = "red" if deficit > MAX_DAY_DEFICIT else ("green" if v > rule[day] else "")
            cells.append(f"[{style}]{v:.2%}[/]" if style else f"{v:.2%}")
        table.add_row(
            f"{day:%a %m-%d}",
            f"{len(runs[0].day_labels[i]):,}",
            f"{rule[day]:.2%} ({thresholds[day]:.0f})",
            *cells,
            f"{spreads[day] * 100:.2f} pt",
        )
    console.print(table)

    summary = Table(title="per seed")
    for column in ("seed", "held-out mean", "rule mean", "worst day vs rule", "Brier", "ECE"):
        summary.add_column(column, justify="right")
    names = list(runs[0].file_accuracy)
    for name in names:
        summary.add_column(name, justify="right")
    summary.add_column("train s (max)", justify="right")
    rule_mean = statistics.fmean(rule.values())
    checks: list[tuple[str, bool]] = []
    for r in runs:
        mean = statistics.fmean(r.day_accuracy.values())
        worst_day = min(days, key=lambda d: r.day_accuracy[d] - rule[d])
        worst = r.day_accuracy[worst_day] - rule[worst_day]
        pooled = compute_metrics(np.concatenate(r.day_labels), np.concatenate(r.day_proba))
        summary.add_row(
            str(r.seed),
            f"{mean:.2%}",
            f"{rule_mean:.2%}",
            f"{worst * 100:+.2f} pt ({worst_day:%m-%d})",
            f"{pooled.brier:.4f}",
            f"{pooled.ece:.4f}",
            *(f"{r.file_accuracy[n]:.2%}" for n in names),
            f"{max(r.seconds):.1f}",
        )
        checks.append(
            (f"seed {r.seed}: held-out mean {mean:.2%} >= the rule's {rule_mean:.2%}", mean >= rule_mean)
        )
        checks.append(
            (
                f"seed {r.seed}: worst day {worst_day} {worst * 100:+.2f} pt vs the rule "
                f"(>= -{MAX_DAY_DEFICIT * 100:.1f})",
                worst >= -MAX_DAY_DEFICIT - 1e-12,
            )
        )
        if "datatest.txt" in r.file_accuracy:
            acc = r.file_accuracy["datatest.txt"]
            checks.append(
                (f"seed {r.seed}: datatest.txt {acc:.2%} >= {TARGET_DATATEST:.1%}", acc >= TARGET_DATATEST)
            )
    console.print(summary)
    widest = max(spreads, key=lambda d: spreads[d])
    if len(runs) > 1:
        checks.append(
            (
                f"widest seed spread {spreads[widest] * 100:.2f} pt ({widest}) "
                f"<= {MAX_DAY_SPREAD * 100:.1f} pt",
                spreads[widest] <= MAX_DAY_SPREAD + 1e-12,
            )
        )
    for text, ok in checks:
        console.print(f"[{'green' if ok else 'red'}]{'PASS' if ok else 'FAIL'}[/] {text}")
    return all(ok for _, ok in checks)


def explain_spread(runs: list[SeedRun], training: pd.DataFrame, day_of: np.ndarray, console: Console) -> None:
    """For the day the seeds disagree on most: where each seed put its Light boundary, and how many
    readings of the training days (the other days) and of the day itself lie in that range."""
    days = list(runs[0].day_accuracy)
    day = max(days, key=lambda d: max(r.day_accuracy[d] for r in runs) - min(r.day_accuracy[d] for r in runs))
    bounds = [r.day_boundary.get(day, math.nan) for r in runs]
    if not all(math.isfinite(b) for b in bounds):
        return
    low, high = min(bounds), max(bounds)
    light = training["Light"].to_numpy()
    inside = (light > low - 0.5) & (light <= high)
    occupied = training[LABEL_COLUMN].to_numpy().astype(bool)
    others = inside & (day_of != day)
    console.print(
        f"{day:%a %m-%d}: the seeds' boundaries lie at {', '.join(f'{b:.1f}' for b in bounds)} lux; the "
        f"days they learned from hold {int(others.sum())} reading(s) in {low:.1f}-{high:.1f} lux "
        f"({int((others & occupied).sum())} occupied), the day itself {int((inside & (day_of == day)).sum())}"
    )


def plot(runs: list[SeedRun], rule: dict[date, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = list(rule)
    x = np.arange(len(days))
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(
        x, [rule[d] * 100 for d in days], "k--", marker="s", label="Light > t (t chosen on the other days)"
    )
    for r in runs:
        ax.plot(x, [r.day_accuracy[d] * 100 for d in days], marker="o", alpha=0.7, label=f"MLP seed {r.seed}")
    ax.set_xticks(x, [f"{d:%a\n%m-%d}" for d in days])
    ax.set_ylabel("accuracy on the held-out day (%)")
    ax.set_title("Leave-one-day-out: the MLP and the light rule on days they never saw")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="folder with datatraining.txt, datatest.txt")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--extra", type=Path, nargs="*", default=[], help="more labeled files to score")
    parser.add_argument("--plot", type=Path, default=None, help="write the per-day plot to this PNG")
    args = parser.parse_args(argv)
    try:
        folder = locate_occupancy_data(args.data)
    except DataNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    missing = [str(path) for path in args.extra if not path.is_file()]
    if missing:
        print(f"error: --extra names no file at {', '.join(missing)}", file=sys.stderr)
        return 2
    from training.model import configure_tensorflow

    configure_tensorflow(intra_op_threads=2, inter_op_threads=1)  # before any TensorFlow work
    console = Console(width=max(Console().width, 120))  # the per-seed columns need the room
    started = time.perf_counter()
    training = load_occupancy_file(folder / "datatraining.txt").sort_values(TIME_COLUMN, kind="stable")
    checks = {
        "datatest.txt": load_occupancy_file(folder / "datatest.txt").sort_values(TIME_COLUMN, kind="stable")
    }
    for path in args.extra:
        checks[path.name] = load_occupancy_file(path).sort_values(TIME_COLUMN, kind="stable")
    day_of = pd.to_datetime(training[TIME_COLUMN]).dt.date.to_numpy()
    thresholds = {d: light_rule_threshold(training[day_of != d]) for d in calendar_days(training)}
    rule = {d: rule_accuracy(training[day_of == d], thresholds[d]) for d in thresholds}
    console.print(
        f"{len(training):,} labeled readings over {len(rule)} days; {len(args.seeds)} seeds × "
        f"{len(rule) + 1} trainings with the loop's defaults"
    )
    with tqdm(total=len(args.seeds) * (len(rule) + 1), desc="trainings", unit="model") as progress:
        runs = [run_seed(training, checks, seed, progress) for seed in args.seeds]
    ok = report(runs, rule, thresholds, console)
    explain_spread(runs, training, day_of, console)
    for name, frame in checks.items():
        # a model of Light alone that never lowers the probability as the light rises (the default) is
        # a threshold on Light: it cannot beat the best threshold chosen on the file itself
        best = rule_accuracy(frame, light_rule_threshold(frame))
        console.print(
            f"{name}: the best Light > t, chosen on {name} itself, is right on "
            f"{round(best * len(frame)):,} of {len(frame):,} readings ({best:.3%}): the ceiling of "
            "any model monotone in Light alone"
        )
    if args.plot:
        plot(runs, rule, args.plot)
        console.print(f"plot: {args.plot}")
    console.print(f"total {time.perf_counter() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
