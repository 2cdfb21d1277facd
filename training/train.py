"""Training: validated labeled frame → causal features → the MLP → a model folder.

The latest ``VALIDATION_FRACTION`` of the rows by time is held out for early stopping, so the model
is chosen on readings later than any it learned from, as it will be used.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.bundle import KERAS_FILE, PORTABLE_FILE, ModelBundle, schema_to_dict, write_metadata
from training.config import TrainingConfig
from training.data import LABEL_COLUMN, ROOM_COLUMN, TIME_COLUMN
from training.drift import build_reference
from training.evaluate import Metrics, compute_metrics
from training.features import DEFAULT_SCHEMA, FeatureSchema, make_features
from training.portable import PortableModel, from_keras

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass
class TrainedModel:
    keras_model: Any
    portable: PortableModel
    schema: FeatureSchema
    config: TrainingConfig
    validation: Metrics
    history: dict[str, list[float]]
    best_epoch: int
    seconds: float
    train_rows: int
    extra_metadata: dict[str, Any] = field(default_factory=dict)
    drift_reference: dict[str, Any] | None = None
    """The training readings' distributions (:mod:`training.drift`), as ``metadata["drift_reference"]``."""

    def bundle(self) -> ModelBundle:
        return ModelBundle(self.portable, self.schema, self.metadata())

    def metadata(self) -> dict[str, Any]:
        import keras
        import tensorflow as tf

        return {
            "model_name": self.config.MODEL_NAME,
            "feature_schema": schema_to_dict(self.schema),
            "config": {k: getattr(self.config, k) for k in self.config.__dataclass_fields__},
            "validation": self.validation.as_dict(),
            "best_epoch": self.best_epoch,
            "train_rows": self.train_rows,
            "train_seconds": round(self.seconds, 2),
            "threshold": 0.5,
            "drift_reference": self.drift_reference,
            "versions": {
                "python": platform.python_version(),
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
                "numpy": np.__version__,
                "pandas": pd.__version__,
            },
            **self.extra_metadata,
        }

    def save(self, folder: Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.keras_model.save(folder / KERAS_FILE)
        self.portable.save(folder / PORTABLE_FILE)
        write_metadata(folder, self.metadata())
        return folder


@contextlib.contextmanager
def native_stderr_to(path: Path | None) -> Iterator[None]:
    """Send the process's native stderr (file descriptor 2: TensorFlow's C++ log lines, which no
    Python setting silences) to ``path`` while the block runs; ``None`` leaves it alone. Python's own
    errors are raised after the block, on the restored stderr."""
    if path is None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with path.open("ab") as log:
            os.dup2(log.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def time_split(frame: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Earliest rows for training, the latest ``fraction`` (by time) for validation."""
    ordered = frame.sort_values(TIME_COLUMN, kind="stable")
    cut = round(len(ordered) * (1 - fraction))
    if cut < 1 or cut >= len(ordered):
        raise ValueError(f"cannot split {len(ordered)} rows with VALIDATION_FRACTION={fraction}")
    return ordered.iloc[:cut], ordered.iloc[cut:]


def train_model(
    frame: pd.DataFrame,
    config: TrainingConfig,
    schema: FeatureSchema = DEFAULT_SCHEMA,
    on_epoch: EpochCallback | None = None,
) -> TrainedModel:
    """Train the MLP on a validated labeled frame (see :func:`training.data.load_labeled`)."""
    import keras

    from training.model import build_model, calibrate_output, configure_tensorflow, fit

    if frame[LABEL_COLUMN].nunique() < 2:
        raise ValueError("the training data holds only one class: nothing to learn")
    configure_tensorflow()
    # features over the whole frame first (they look back within a room's segments only), then split
    by = [ROOM_COLUMN, TIME_COLUMN] if ROOM_COLUMN in frame.columns else [TIME_COLUMN]
    ordered = frame.sort_values(by, kind="stable")
    features = make_features(ordered, schema)
    train_part, val_part = time_split(ordered, config.VALIDATION_FRACTION)
    x_train, y_train = features.loc[train_part.index].to_numpy(), train_part[LABEL_COLUMN].to_numpy()
    x_val, y_val = features.loc[val_part.index].to_numpy(), val_part[LABEL_COLUMN].to_numpy()

    model = build_model(
        x_train.shape[1],
        config.LAYER_SIZE,
        config.DROPOUT,
        config.LEARNING_RATE,
        seed=config.RANDOM_STATE,
        monotone=config.MONOTONE,
    )
    callbacks = []
    if on_epoch is not None:
        callbacks.append(
            keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: on_epoch(
                    epoch, {k: float(v) for k, v in (logs or {}).items()}
                )
            )
        )
    result = fit(
        model,
        x_train,
        y_train,
        x_val,
        y_val,
        epochs=config.MAX_EPOCHS,
        batch_size=config.BATCH_SIZE,
        patience=config.PATIENCE,
        start_from_epoch=config.MIN_EPOCHS,
        seed=config.RANDOM_STATE,
        callbacks=callbacks,
    )
    calibration: dict[str, Any] = {"method": "none"}
    if config.CALIBRATE:  # on every training row, validation included: two parameters, many rows
        slope, intercept = calibrate_output(model, features.to_numpy(), ordered[LABEL_COLUMN].to_numpy())
        calibration = {"method": "platt", "slope": slope, "intercept": intercept}
    portable = from_keras(model)
    return TrainedModel(
        keras_model=model,
        portable=portable,
        schema=schema,
        config=config,
        validation=compute_metrics(y_val, portable.predict_proba(x_val)),
        history=result.history,
        best_epoch=result.best_epoch,
        seconds=result.seconds,
        train_rows=len(train_part),
        drift_reference=build_reference(ordered, schema).to_dict(),
        extra_metadata={"calibration": calibration},
    )
