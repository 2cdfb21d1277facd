"""Brier score and expected calibration error: what they report for calibrated and miscalibrated
probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluate import compute_metrics, expected_calibration_error


def test_calibrated_probabilities_have_small_ece_and_overconfident_ones_large() -> None:
    rng = np.random.default_rng(0)
    proba = rng.uniform(0, 1, 50_000)
    labels = (rng.uniform(0, 1, proba.size) < proba).astype(int)  # occupied at the stated rate
    assert expected_calibration_error(labels, proba) < 0.01
    overconfident = np.where(proba > 0.5, 1.0, 0.0)  # same decisions, certainty it does not have
    assert expected_calibration_error(labels, overconfident) > 0.2
    calibrated = compute_metrics(labels, proba)
    sharp = compute_metrics(labels, overconfident)
    assert calibrated.accuracy == pytest.approx(sharp.accuracy)  # accuracy cannot tell them apart
    assert calibrated.brier < sharp.brier


def test_brier_is_the_mean_squared_gap() -> None:
    labels = np.array([0, 1, 1, 0])
    assert compute_metrics(labels, np.full(4, 0.5)).brier == pytest.approx(0.25)
    assert compute_metrics(labels, labels.astype(float)).brier == 0.0
    assert compute_metrics(labels, labels.astype(float)).ece == 0.0
