"""Every setting of a training run, in one place.

The dict is what ``task.connect(config)`` tracks: it appears as the ``General`` hyperparameter
section, and a clone can override any key (``General/CLEARML_DATASET_ID`` is how the scheduler points
a retrain at a new dataset version). The first five keys are the user's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

DEFAULTS: dict[str, Any] = {
    "CLEARML_DATASET_ID": "",  # the dataset version to train on
    "RANDOM_STATE": 42,
    "LAYER_SIZE": 255,
    "DROPOUT": 0.3,
    "PATIENCE": 5,  # early-stopping patience, in epochs
    "EVAL_DATASET_ID": "",  # the fixed evaluation set the gate compares champion and challenger on
    "MAX_EPOCHS": 60,
    # early stopping watches the validation loss only from this epoch on; without it a noisy validation
    # loss in the first epochs stopped training at epoch 3 (six daily files of the training week, seed
    # 42: validation accuracy 97.25 % instead of 99.5 %)
    "MIN_EPOCHS": 10,
    "BATCH_SIZE": 64,
    "LEARNING_RATE": 0.001,
    "VALIDATION_FRACTION": 0.25,  # the latest part of the training data, by time, for early stopping
    # every kernel and batch-norm scale non-negative: the probability only rises with each input (more
    # light; faster-rising CO2 with TREND_SCHEMA). Unconstrained, seeds learned "very bright means
    # empty" from one sunny Saturday and missed occupied sunny minutes of other weeks (issue 11;
    # bench/bench_model.py)
    "MONOTONE": True,
    # Platt scaling of the output on the training rows after fitting, folded into the output layer: the
    # probability means what it says, and the 0.5 boundary moves to where the classes cross
    "CALIBRATE": True,
    "GATE_FLOOR": 0.97,  # the least accuracy a model needs on the evaluation set to be published
    "GATE_TOLERANCE": 0.005,  # how much worse than the champion a challenger may be
    "MODEL_NAME": "occupancy-mlp",
    "DEPLOY_MODE": "canary",  # "canary": the gate submits, the canary controller promotes; "direct": the gate
    # promotes a passing challenger at once (setups without serving and canary controller)
    # the gate's evaluation windows (docs/training.md): "file" (each file of the evaluation set), "day" or
    # "week" (ISO); a window with fewer rows than EVAL_WINDOW_MIN_ROWS is merged with its neighbours
    "EVAL_WINDOW": "file",
    "EVAL_WINDOW_MIN_ROWS": 500,
    "GATE_RECENT_CHAMPIONS": 3,  # a challenger is also compared with the best of the last N champions
}
EVAL_WINDOWS = ("file", "day", "week")
DEPLOY_MODES = ("canary", "direct")


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _boolean(value: Any) -> bool:
    """A flag from a bool or from its text form (a cloned task's hyperparameters are strings)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ValueError(f"{value!r} is not true or false")


@dataclass(frozen=True)
class TrainingConfig:
    CLEARML_DATASET_ID: str
    RANDOM_STATE: int
    LAYER_SIZE: int
    DROPOUT: float
    PATIENCE: int
    EVAL_DATASET_ID: str
    MAX_EPOCHS: int
    MIN_EPOCHS: int
    BATCH_SIZE: int
    LEARNING_RATE: float
    VALIDATION_FRACTION: float
    MONOTONE: bool
    CALIBRATE: bool
    GATE_FLOOR: float
    GATE_TOLERANCE: float
    MODEL_NAME: str
    DEPLOY_MODE: str
    EVAL_WINDOW: str
    EVAL_WINDOW_MIN_ROWS: int
    GATE_RECENT_CHAMPIONS: int

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TrainingConfig:
        """Defaults overridden by ``values``; a wrong key or value is named in the error."""
        unknown = set(values) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
        merged = {**DEFAULTS, **values}
        typed: dict[str, Any] = {}
        for f in fields(cls):
            kind = type(DEFAULTS[f.name])
            value = merged[f.name]
            try:
                if kind is bool:
                    typed[f.name] = _boolean(value)
                else:
                    typed[f.name] = kind(value) if not isinstance(value, kind) or kind is float else value
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"training setting {f.name}={value!r} is not a valid {kind.__name__}"
                ) from exc
        config = cls(**typed)
        config.check()
        return config

    def check(self) -> None:
        problems = []
        if self.LAYER_SIZE < 1:
            problems.append(f"LAYER_SIZE={self.LAYER_SIZE} must be at least 1")
        if not 0.0 <= self.DROPOUT < 1.0:
            problems.append(f"DROPOUT={self.DROPOUT} must be within [0, 1)")
        if self.PATIENCE < 0 or self.MIN_EPOCHS < 0 or self.MAX_EPOCHS < 1 or self.BATCH_SIZE < 1:
            problems.append("PATIENCE and MIN_EPOCHS must be >= 0, MAX_EPOCHS and BATCH_SIZE >= 1")
        if not 0.0 < self.VALIDATION_FRACTION < 0.9:
            problems.append(f"VALIDATION_FRACTION={self.VALIDATION_FRACTION} must be within (0, 0.9)")
        if self.LEARNING_RATE <= 0:
            problems.append(f"LEARNING_RATE={self.LEARNING_RATE} must be positive")
        if self.DEPLOY_MODE not in DEPLOY_MODES:
            problems.append(f"DEPLOY_MODE={self.DEPLOY_MODE!r} must be one of {', '.join(DEPLOY_MODES)}")
        if self.EVAL_WINDOW not in EVAL_WINDOWS:
            problems.append(f"EVAL_WINDOW={self.EVAL_WINDOW!r} must be one of {', '.join(EVAL_WINDOWS)}")
        if self.EVAL_WINDOW_MIN_ROWS < 1 or self.GATE_RECENT_CHAMPIONS < 1:
            problems.append("EVAL_WINDOW_MIN_ROWS and GATE_RECENT_CHAMPIONS must be at least 1")
        if problems:
            raise ValueError("; ".join(problems))


def default_config() -> dict[str, Any]:
    """A fresh, mutable copy of the defaults, for ``task.connect``."""
    return dict(DEFAULTS)
