"""The occupancy MLP (Keras) and its training with early stopping.

Architecture (the user's model family): BatchNormalization on the input, then two blocks of
Dense(layer_size, relu) → BatchNormalization → Dropout(dropout), then Dense(1, sigmoid).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

from training.config import DEFAULTS

# the training defaults live in training/config.py (DEFAULTS); these names read them, never repeat them
RANDOM_STATE: int = DEFAULTS["RANDOM_STATE"]
LAYER_SIZE: int = DEFAULTS["LAYER_SIZE"]
DROPOUT: float = DEFAULTS["DROPOUT"]
PATIENCE: int = DEFAULTS["PATIENCE"]
LEARNING_RATE: float = DEFAULTS["LEARNING_RATE"]
BATCH_SIZE: int = DEFAULTS["BATCH_SIZE"]
MAX_EPOCHS: int = DEFAULTS["MAX_EPOCHS"]
MIN_EPOCHS: int = DEFAULTS["MIN_EPOCHS"]
BN_MOMENTUM = 0.9
"""Keras' default 0.99 leaves the moving statistics far from the data after the few hundred steps
this model trains for, and early stopping then picks a bad epoch for some seeds."""
MONOTONE: bool = DEFAULTS["MONOTONE"]
CLASS_WEIGHT = False
"""Balanced class weights changed nothing on validation; off by default."""
STEPS_PER_EXECUTION = 32
"""Training batches run per call into TensorFlow. The same batches in the same order, so the weights are
bit for bit those of one batch per call; only Python's per-batch overhead goes."""


def configure_tensorflow(intra_op_threads: int = 2, inter_op_threads: int = 1) -> None:
    """Limit TensorFlow's thread pools and make its ops deterministic; call before any TF work."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
    except RuntimeError:  # TF already initialised: keep its pools
        pass
    tf.config.experimental.enable_op_determinism()


def build_model(
    n_features: int,
    layer_size: int = LAYER_SIZE,
    dropout: float = DROPOUT,
    learning_rate: float = LEARNING_RATE,
    seed: int | None = None,
    bn_momentum: float = BN_MOMENTUM,
    monotone: bool | None = None,
    steps_per_execution: int = STEPS_PER_EXECUTION,
) -> keras.Model:
    """The MLP, compiled with Adam and binary cross-entropy (metric: accuracy).

    ``seed`` (optional) sets Keras' global seeds first, so weights and dropout masks repeat.
    ``monotone`` (default :data:`MONOTONE`): every kernel and batch-norm scale is kept non-negative,
    so the probability can only rise with each input (more light, faster-rising CO2), whatever the seed.
    """
    if seed is not None:
        keras.utils.set_random_seed(seed)
    nonneg = keras.constraints.NonNeg() if (MONOTONE if monotone is None else monotone) else None
    norm = {"momentum": bn_momentum, "gamma_constraint": nonneg}
    inputs = keras.Input(shape=(n_features,), name="features")
    x = keras.layers.BatchNormalization(**norm, name="input_norm")(inputs)
    for block in (1, 2):
        x = keras.layers.Dense(layer_size, "relu", kernel_constraint=nonneg, name=f"dense_{block}")(x)
        x = keras.layers.BatchNormalization(**norm, name=f"norm_{block}")(x)
        x = keras.layers.Dropout(dropout, name=f"dropout_{block}")(x)
    outputs = keras.layers.Dense(1, "sigmoid", kernel_constraint=nonneg, name="occupancy")(x)
    model = keras.Model(inputs, outputs, name="occupancy_mlp")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )
    return model


@dataclass(frozen=True)
class FitResult:
    epochs_run: int
    best_epoch: int
    """1-based epoch whose weights were restored."""
    best_score: float
    """The monitored validation metric at the best epoch."""
    seconds: float
    history: dict[str, list[float]]
    """Per-epoch values of every metric (``loss``, ``val_loss``, ``accuracy``, ...)."""


def balanced_class_weight(y: np.ndarray) -> dict[int, float]:
    """``n / (2 * n_class)`` per class, as scikit-learn's ``class_weight="balanced"``."""
    y = np.asarray(y).astype(int)
    counts = np.bincount(y, minlength=2).astype(float)
    return {k: float(len(y) / (2 * counts[k])) for k in (0, 1) if counts[k] > 0}


def fit(
    model: keras.Model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    epochs: int = MAX_EPOCHS,
    batch_size: int = BATCH_SIZE,
    patience: int = PATIENCE,
    class_weight: dict[int, float] | None = None,
    monitor: str = "val_loss",
    start_from_epoch: int = MIN_EPOCHS,
    seed: int | None = None,
    verbose: int = 0,
    callbacks: list[keras.callbacks.Callback] | None = None,
) -> FitResult:
    """Train with early stopping on ``monitor`` (validation loss); the best epoch's weights are restored.

    The training rows are shuffled every epoch (seeded by ``seed`` when given).
    """
    if seed is not None:
        keras.utils.set_random_seed(seed)
    stop = keras.callbacks.EarlyStopping(
        monitor=monitor,
        patience=patience,
        restore_best_weights=True,
        start_from_epoch=start_from_epoch,
        verbose=0,
    )
    started = time.perf_counter()
    history = model.fit(
        np.asarray(x_train, dtype="float32"),
        np.asarray(y_train, dtype="float32"),
        validation_data=(np.asarray(x_val, dtype="float32"), np.asarray(y_val, dtype="float32")),
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        class_weight=class_weight,
        callbacks=[stop, *(callbacks or [])],
        verbose=verbose,
    )
    seconds = time.perf_counter() - started
    scores = [float(v) for v in history.history[monitor]]
    best = int(stop.best_epoch) if stop.best_weights is not None else len(scores) - 1
    return FitResult(
        epochs_run=len(scores),
        best_epoch=best + 1,
        best_score=scores[best],
        seconds=seconds,
        history={k: [float(v) for v in vals] for k, vals in history.history.items()},
    )


def predict_proba(model: keras.Model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Occupancy probability per row, shape ``(n,)`` (inference mode: moving statistics, no dropout)."""
    x = np.asarray(x, dtype="float32")
    parts = [np.asarray(model(x[i : i + batch_size], training=False)) for i in range(0, len(x), batch_size)]
    return np.concatenate(parts).ravel() if parts else np.zeros(0, dtype="float32")


def output_logits(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The output layer's pre-sigmoid value per row (inference mode)."""
    proba = np.clip(predict_proba(model, x).astype(np.float64), 1e-7, 1 - 1e-7)
    return np.log(proba / (1 - proba))


def calibrate_output(model: keras.Model, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Platt scaling folded into the output layer: fit ``sigmoid(a * logit + c)`` to the labels by
    maximum likelihood, then scale the output Dense layer's kernel by ``a`` and map its bias to
    ``a * bias + c``, so the Keras model and its portable form both return calibrated probabilities.

    Returns ``(a, c)``; ``(1, 0)`` (nothing changed) when the fit is degenerate (one class, a
    non-positive or non-finite slope).
    """
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(y).astype(int)
    if len(np.unique(y)) < 2:
        return 1.0, 0.0
    logits = output_logits(model, x)
    fitted = LogisticRegression(C=1e4, max_iter=1000).fit(logits[:, None], y)
    a, c = float(fitted.coef_[0, 0]), float(fitted.intercept_[0])
    if not (np.isfinite(a) and np.isfinite(c)) or a <= 0:
        return 1.0, 0.0
    layer = model.get_layer("occupancy")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * a, bias * a + c])
    return a, c
