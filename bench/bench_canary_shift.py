"""Why the canary compares probabilities by shift, not PSI or KS: ``python -m bench.bench_canary_shift``.

Trains the demo's two models with the loop's defaults (seed 42): a champion on the first five days of
``datatraining.txt`` and a challenger on all seven, as ``make demo``'s second live round does. Both
score ``datatest.txt``; its readings are cut into consecutive windows of ``--window`` readings (one
room over an hour, as an analysis window of live traffic), and each window is split at random
between the two arms at ``--share`` (the canary step). Per window, the canary's histogram (the
serving buckets, 0.05 wide) is compared with the champion's by the PSI and KS the controller used
before and by the shift it uses now, each against its threshold: ``max(configured, noise)``. Rows
for made-up canaries show what the checks are for: probabilities pushed up by 1 and 3 logits, and a
model answering 0.5 to everything. Prints, per pair, how many windows each check fails and its
largest value.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from services.canary.analysis import NOISE_ALPHA, ArmStats, bin_counts, shift, shift_noise
from services.canary.settings import CanarySettings
from services.serving.metrics import PROBABILITY_BUCKETS
from training.config import DEFAULTS, TrainingConfig
from training.data import TIME_COLUMN, load_occupancy_file, locate_occupancy_data
from training.drift import psi as binned_psi

BOUNDS = [*PROBABILITY_BUCKETS, math.inf]
OLD_MAX_PSI, OLD_MAX_KS = 0.25, 0.2
_Z = 3.090  # standard normal quantile of 1 - NOISE_ALPHA


def arm(name: str, proba: np.ndarray) -> ArmStats:
    cumulative = {b: float((proba <= b).sum()) for b in BOUNDS}
    return ArmStats(name, name, 60, float(len(proba)), 0.0, 0.01, cumulative)


def old_checks(champion: ArmStats, canary: ArmStats) -> tuple[float, float, float, float]:
    """PSI and KS over the bins and their thresholds, as the controller computed them before."""
    a = np.array(bin_counts(champion.buckets, BOUNDS))
    b = np.array(bin_counts(canary.buckets, BOUNDS))
    psi = binned_psi(a / a.sum(), b / b.sum(), floor=1e-4)
    ks = float(np.max(np.abs(np.cumsum(a) / a.sum() - np.cumsum(b) / b.sum())))
    n, m = canary.requests, champion.requests
    k = max(1, int(((a > 0) | (b > 0)).sum()) - 1)
    chi2 = k * (1 - 2 / (9 * k) + _Z * math.sqrt(2 / (9 * k))) ** 3
    psi_noise = (1 / n + 1 / m) * chi2
    ks_noise = math.sqrt(-math.log(NOISE_ALPHA / 2) / 2) * math.sqrt((n + m) / (n * m))
    return psi, max(OLD_MAX_PSI, psi_noise), ks, max(OLD_MAX_KS, ks_noise)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=60, help="readings per analysis window (60)")
    parser.add_argument("--share", type=float, default=0.5, help="the canary's share of the traffic (0.5)")
    args = parser.parse_args(argv)
    from training.train import train_model

    folder = locate_occupancy_data()
    training = load_occupancy_file(folder / "datatraining.txt")
    test = load_occupancy_file(folder / "datatest.txt")
    day = pd.to_datetime(training[TIME_COLUMN]).dt.date
    config = TrainingConfig.from_mapping(DEFAULTS)
    days = sorted(set(day))
    champion_model = train_model(training[day.isin(days[:5])], config).bundle()
    challenger_model = train_model(training, config).bundle()
    champion = champion_model.predict_proba(test)
    logit = np.log(np.clip(champion, 1e-9, 1 - 1e-9) / np.clip(1 - champion, 1e-9, 1))
    canaries = {
        "7-day model (the demo's round 2)": challenger_model.predict_proba(test),
        "champion itself": champion,
        "champion + 1 logit": 1 / (1 + np.exp(-(logit + 1))),
        "champion + 3 logits": 1 / (1 + np.exp(-(logit + 3))),
        "0.5 for every reading": np.full_like(champion, 0.5),
    }
    max_shift = float(CanarySettings.model_fields["max_shift"].default)
    table = Table(title=f"windows of {args.window} readings of datatest.txt, canary at {args.share:.0%}")
    columns = ("canary", "windows", "PSI fails", "max PSI", "KS fails", "max KS", "shift fails", "max shift")
    for column in columns:
        table.add_column(column, justify="right")
    rng = np.random.default_rng(0)
    for name, proba in canaries.items():
        windows = fails_psi = fails_ks = fails_shift = 0
        top_psi = top_ks = top_shift = 0.0
        for start in range(0, len(test) - args.window + 1, args.window):
            rows = np.arange(start, start + args.window)
            to_canary = rng.random(args.window) < args.share
            if to_canary.sum() < 5 or (~to_canary).sum() < 5:
                continue
            a, b = arm("champion", champion[rows[~to_canary]]), arm("canary", proba[rows[to_canary]])
            psi, psi_limit, ks, ks_limit = old_checks(a, b)
            value, noise = shift(a.buckets, b.buckets), shift_noise(a, b)
            windows += 1
            fails_psi += psi > psi_limit
            fails_ks += ks > ks_limit
            fails_shift += value > max(max_shift, noise)
            top_psi, top_ks, top_shift = max(top_psi, psi), max(top_ks, ks), max(top_shift, value)
        table.add_row(
            name, str(windows), str(fails_psi), f"{top_psi:.2f}", str(fails_ks), f"{top_ks:.2f}",
            str(fails_shift), f"{top_shift:.3f}",
        )  # fmt: skip
    Console(width=max(Console().width, 120)).print(table)
    print(
        f"thresholds: PSI max({OLD_MAX_PSI}, noise), KS max({OLD_MAX_KS}, noise), "
        f"shift max({max_shift}, noise)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
