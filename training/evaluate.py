"""Evaluation metrics and the gate that decides whether a challenger may replace the champion."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score, roc_curve


@dataclass(frozen=True)
class Metrics:
    accuracy: float
    f1: float
    roc_auc: float
    rows: int
    positives: int
    brier: float = float("nan")
    """Mean squared error of the probability against the label (0 is perfect; 0.25 is a constant 0.5)."""
    ece: float = float("nan")
    """Expected calibration error: over ten equal-width probability bins, the row-weighted mean gap
    between the mean predicted probability and the observed occupied rate."""

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


CALIBRATION_BINS = 10


def expected_calibration_error(labels: np.ndarray, proba: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """Row-weighted mean of |mean probability - occupied rate| over equal-width probability bins."""
    labels = np.asarray(labels, dtype=float)
    proba = np.clip(np.asarray(proba, dtype=float), 0.0, 1.0)
    if len(labels) == 0:
        return float("nan")
    which = np.minimum((proba * bins).astype(int), bins - 1)
    counts = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, proba, bins) - np.bincount(which, labels, bins))
    return float(gap.sum() / counts.sum())


def compute_metrics(labels: np.ndarray, proba: np.ndarray, threshold: float = 0.5) -> Metrics:
    labels = np.asarray(labels).astype(int)
    if len(labels) == 0:
        raise ValueError("no rows to evaluate")
    proba = np.asarray(proba, dtype=float).ravel()
    predicted = (proba >= threshold).astype(int)
    both_classes = len(np.unique(labels)) == 2
    return Metrics(
        accuracy=float(accuracy_score(labels, predicted)),
        f1=float(f1_score(labels, predicted, zero_division=0)),
        roc_auc=float(roc_auc_score(labels, proba)) if both_classes else float("nan"),
        rows=len(labels),
        positives=int(labels.sum()),
        brier=float(np.mean((proba - labels) ** 2)),
        ece=expected_calibration_error(labels, proba),
    )


def confusion(labels: np.ndarray, proba: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """2×2 confusion matrix, rows = truth (0, 1), columns = prediction (0, 1)."""
    return confusion_matrix(
        np.asarray(labels).astype(int), (np.asarray(proba) >= threshold).astype(int), labels=[0, 1]
    )


def roc_points(labels: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    fpr, tpr, _ = roc_curve(np.asarray(labels).astype(int), proba)
    return fpr, tpr


# ---------------------------------------------------------------------------- evaluation windows

WINDOW_KINDS = ("file", "day", "week")
"""How the evaluation set is cut into windows: one per file of the evaluation dataset, per calendar
day, or per ISO week (Monday to Sunday) of the readings' timestamps."""


@dataclass(frozen=True)
class EvalWindow:
    """A named part of the evaluation set; ``positions`` index its rows in the evaluation frame."""

    name: str
    positions: np.ndarray = field(compare=False, repr=False)
    parts: tuple[str, ...] = ()
    """The windows merged into this one (empty when it was not merged)."""

    @property
    def rows(self) -> int:
        return len(self.positions)


def _window_keys(frame: pd.DataFrame, kind: str) -> pd.Series:
    times = pd.to_datetime(frame["date"])
    if kind == "file":
        if "source" not in frame.columns:
            return pd.Series("all", index=frame.index)
        return frame["source"].astype(str)
    if kind == "day":
        return times.dt.strftime("%Y-%m-%d")
    if kind == "week":
        iso = times.dt.isocalendar()
        return iso["year"].astype(str) + "-W" + iso["week"].astype(int).map("{:02d}".format)
    raise ValueError(f"evaluation window {kind!r} must be one of {', '.join(WINDOW_KINDS)}")


def _merged_name(parts: Sequence[str]) -> str:
    return "+".join(parts) if len(parts) <= 3 else f"{parts[0]}…{parts[-1]} ({len(parts)} windows)"


def split_windows(frame: pd.DataFrame, kind: str, min_rows: int) -> tuple[list[EvalWindow], list[str]]:
    """The evaluation windows of ``frame`` in time order (by their first reading), and notes for people.

    A window with fewer than ``min_rows`` rows is merged with the windows after it until the group
    has ``min_rows`` (a small last group joins the window before it), so a few rows never decide the
    gate alone. An evaluation set smaller than ``min_rows`` is one window. Every row is in exactly
    one window."""
    if kind not in WINDOW_KINDS:
        raise ValueError(f"evaluation window {kind!r} must be one of {', '.join(WINDOW_KINDS)}")
    if len(frame) == 0:
        raise ValueError("no rows to evaluate")
    keys = _window_keys(frame, kind).to_numpy()
    times = pd.to_datetime(frame["date"]).to_numpy()
    first: dict[str, np.datetime64] = {}
    for key in pd.unique(keys):
        first[str(key)] = times[keys == key].min()
    ordered = sorted(first, key=lambda k: (first[k], k))
    positions = {k: np.flatnonzero(keys == k) for k in ordered}
    groups: list[list[str]] = []
    pending: list[str] = []
    for key in ordered:
        pending.append(key)
        if sum(len(positions[k]) for k in pending) >= min_rows:
            groups.append(pending)
            pending = []
    if pending:
        if groups:
            groups[-1].extend(pending)
        else:
            groups.append(pending)
    windows, notes = [], []
    for group in groups:
        rows = np.sort(np.concatenate([positions[k] for k in group]))
        if len(group) == 1:
            windows.append(EvalWindow(group[0], rows))
            continue
        name = _merged_name(group)
        windows.append(EvalWindow(name, rows, tuple(group)))
        small = ", ".join(f"{k} ({len(positions[k])} rows)" for k in group if len(positions[k]) < min_rows)
        notes.append(f"{small} merged into window {name}: fewer than {min_rows} rows")
    return windows, notes


@dataclass(frozen=True)
class Scores:
    """One model's metrics on the whole evaluation set and on each window (in window order)."""

    model_id: str
    overall: Metrics
    windows: dict[str, Metrics]


def score_windows(
    model_id: str, labels: np.ndarray, proba: np.ndarray, windows: Sequence[EvalWindow]
) -> Scores:
    """Metrics of predictions made on the WHOLE evaluation frame (a reading's history may lie in the
    window before), overall and per window."""
    labels = np.asarray(labels).astype(int)
    proba = np.asarray(proba, dtype=float).ravel()
    return Scores(
        model_id,
        compute_metrics(labels, proba),
        {w.name: compute_metrics(labels[w.positions], proba[w.positions]) for w in windows},
    )


# ---------------------------------------------------------------------------- the gate rule


@dataclass(frozen=True)
class GatePolicy:
    """A challenger is published only if its accuracy on the whole evaluation set is at least
    ``floor`` and, on EVERY evaluation window, at most ``tolerance`` below both the champion's and
    the best recent champion's accuracy on that window (the best of the champion and the
    ``recent - 1`` newest former champions, by accuracy on the whole set)."""

    floor: float = 0.97
    tolerance: float = 0.005
    window: str = "file"
    """How the evaluation set is cut into windows: one of :data:`WINDOW_KINDS`."""
    min_rows: int = 500
    """Smaller windows are merged with their neighbours."""
    recent: int = 3
    """Champions compared with: the current one and the ``recent - 1`` newest former champions."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.floor <= 1.0:
            raise ValueError(f"gate floor must be within [0, 1], got {self.floor}")
        if not 0.0 <= self.tolerance <= 1.0:
            raise ValueError(f"gate tolerance must be within [0, 1], got {self.tolerance}")
        if self.window not in WINDOW_KINDS:
            raise ValueError(f"evaluation window {self.window!r} must be one of {', '.join(WINDOW_KINDS)}")
        if self.min_rows < 1:
            raise ValueError(
                f"the minimum rows per evaluation window must be at least 1, got {self.min_rows}"
            )
        if self.recent < 1:
            raise ValueError(f"the number of recent champions must be at least 1, got {self.recent}")


@dataclass(frozen=True)
class WindowVerdict:
    """The gate's comparison on one evaluation window."""

    window: str
    rows: int
    challenger: Metrics
    champion: Metrics | None = None
    best_recent: Metrics | None = None
    """The best recent champion's metrics here (None when it is the champion itself, or none)."""
    problems: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "window": self.window,
            "rows": self.rows,
            "accuracy": self.challenger.accuracy,
            "brier": self.challenger.brier,
            "ece": self.challenger.ece,
            "passed": self.passed,
        }
        if self.champion is not None:
            out["champion_accuracy"] = self.champion.accuracy
        if self.best_recent is not None:
            out["best_recent_accuracy"] = self.best_recent.accuracy
        return out


@dataclass(frozen=True)
class GateDecision:
    publish: bool
    reason: str
    challenger: Metrics
    champion: Metrics | None
    windows: tuple[WindowVerdict, ...] = ()
    best_recent_id: str | None = None
    """The recent champion with the best accuracy on the whole set, when it is not the champion."""
    best_recent: Metrics | None = None
    notes: tuple[str, ...] = ()
    """What people should know besides the verdict: merged windows, champions that were skipped."""


def _short(model_id: str) -> str:
    return model_id[:8]


def decide(
    challenger: Scores,
    champion: Scores | None,
    policy: GatePolicy,
    recent: Sequence[Scores] = (),
    notes: Sequence[str] = (),
) -> GateDecision:
    """The gate's verdict with a reason a person can read in the model registry.

    ``recent`` are the scores of the former champions still to compare with (the champion itself
    need not be in it); the best of them and the champion, by accuracy on the whole set, is the
    best recent champion. Windows are those of ``challenger.windows``; the others must have been
    scored on the same windows."""
    acc = challenger.overall.accuracy
    notes = tuple(notes)
    suffix = "".join(f"; {n}" for n in notes)
    verdicts = tuple(
        WindowVerdict(name, m.rows, m, champion.windows.get(name) if champion else None)
        for name, m in challenger.windows.items()
    )
    if not np.isfinite(acc) or acc < policy.floor:
        return GateDecision(
            False,
            f"accuracy {acc:.4f} is below the floor {policy.floor:.4f}{suffix}",
            challenger.overall,
            champion.overall if champion else None,
            verdicts,
            notes=notes,
        )
    if champion is None:
        per_window = ", ".join(f"{v.window} {v.challenger.accuracy:.4f}" for v in verdicts)
        many = f" (windows: {per_window})" if len(verdicts) > 1 else ""
        return GateDecision(
            True,
            f"first model: accuracy {acc:.4f} clears the floor {policy.floor:.4f}{many}{suffix}",
            challenger.overall,
            None,
            verdicts,
            notes=notes,
        )
    best = max([champion, *recent], key=lambda s: s.overall.accuracy)
    best_other = (
        best
        if best.model_id != champion.model_id and best.overall.accuracy > champion.overall.accuracy
        else None
    )
    tol = policy.tolerance
    judged = []
    for v in verdicts:
        problems = []
        mine = v.challenger.accuracy
        theirs = v.champion
        if theirs is not None and mine - theirs.accuracy < -tol:
            problems.append(
                f"regresses {theirs.accuracy - mine:.4f} from the champion's {theirs.accuracy:.4f}"
            )
        best_here = best_other.windows.get(v.window) if best_other else None
        if best_other is not None and best_here is not None and mine - best_here.accuracy < -tol:
            problems.append(
                f"is {best_here.accuracy - mine:.4f} below the best recent champion "
                f"{_short(best_other.model_id)}'s {best_here.accuracy:.4f}"
            )
        judged.append(WindowVerdict(v.window, v.rows, v.challenger, v.champion, best_here, tuple(problems)))
    failed = [v for v in judged if not v.passed]
    best_id = best_other.model_id if best_other else None
    best_metrics = best_other.overall if best_other else None
    if failed:
        detail = "; ".join(
            f"{v.window}: accuracy {v.challenger.accuracy:.4f} {' and '.join(v.problems)}" for v in failed
        )
        of = f" ({len(failed)} of {len(judged)} windows)" if len(judged) > 1 else ""
        return GateDecision(
            False,
            f"{detail} (tolerance {tol:.4f}){of}{suffix}",
            challenger.overall,
            champion.overall,
            tuple(judged),
            best_id,
            best_metrics,
            notes,
        )
    delta = acc - champion.overall.accuracy
    reason = (
        f"accuracy {acc:.4f} vs champion {champion.overall.accuracy:.4f} ({delta:+.4f}, tolerance {tol:.4f})"
    )
    if len(judged) > 1:
        worst = min(
            judged, key=lambda v: v.challenger.accuracy - (v.champion.accuracy if v.champion else 0.0)
        )
        gap = worst.challenger.accuracy - (worst.champion.accuracy if worst.champion else 0.0)
        reason += f"; within the tolerance on all {len(judged)} windows (closest {worst.window}: {gap:+.4f})"
    if best_other is not None:
        reason += (
            f"; best recent champion {_short(best_other.model_id)} {best_other.overall.accuracy:.4f} "
            f"({acc - best_other.overall.accuracy:+.4f})"
        )
    return GateDecision(
        True,
        reason + suffix,
        challenger.overall,
        champion.overall,
        tuple(judged),
        best_id,
        best_metrics,
        notes,
    )
