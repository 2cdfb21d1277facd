"""Evaluation metrics and the gate that decides whether a challenger may replace the champion."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
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


@dataclass(frozen=True)
class GatePolicy:
    """A challenger is published only if its accuracy on the evaluation data is at least ``floor``
    and at most ``tolerance`` below the champion's accuracy on the same data."""

    floor: float = 0.97
    tolerance: float = 0.005

    def __post_init__(self) -> None:
        if not 0.0 <= self.floor <= 1.0:
            raise ValueError(f"gate floor must be within [0, 1], got {self.floor}")
        if not 0.0 <= self.tolerance <= 1.0:
            raise ValueError(f"gate tolerance must be within [0, 1], got {self.tolerance}")


@dataclass(frozen=True)
class GateDecision:
    publish: bool
    reason: str
    challenger: Metrics
    champion: Metrics | None


def decide(challenger: Metrics, champion: Metrics | None, policy: GatePolicy) -> GateDecision:
    """The gate's verdict with a reason a person can read in the model registry."""
    acc = challenger.accuracy
    if not np.isfinite(acc) or acc < policy.floor:
        return GateDecision(
            False, f"accuracy {acc:.4f} is below the floor {policy.floor:.4f}", challenger, champion
        )
    if champion is None:
        return GateDecision(
            True, f"first model: accuracy {acc:.4f} clears the floor {policy.floor:.4f}", challenger, None
        )
    delta = acc - champion.accuracy
    if delta < -policy.tolerance:
        return GateDecision(
            False,
            f"accuracy {acc:.4f} regresses {-delta:.4f} from the champion's {champion.accuracy:.4f} "
            f"(tolerance {policy.tolerance:.4f})",
            challenger,
            champion,
        )
    return GateDecision(
        True,
        f"accuracy {acc:.4f} vs champion {champion.accuracy:.4f} "
        f"({delta:+.4f}, tolerance {policy.tolerance:.4f})",
        challenger,
        champion,
    )
