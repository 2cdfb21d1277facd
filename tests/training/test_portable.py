"""The portable numpy model must agree with Keras (the parity test of real trained models is in
tests/training/test_train.py; this one covers the folding itself on random weights)."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from training.portable import PortableModel, from_keras  # noqa: E402


def _random_mlp(n_features: int, seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((n_features,)),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    rng = np.random.default_rng(seed)
    for layer in model.layers:  # non-trivial batch-norm statistics, so folding is really exercised
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = (w.numpy() for w in layer.weights)
            layer.set_weights(
                [
                    rng.uniform(0.5, 2, gamma.shape),
                    rng.normal(0, 1, beta.shape),
                    rng.normal(0, 3, mean.shape),
                    rng.uniform(0.1, 5, var.shape),
                ]
            )
    return model


def test_folded_model_matches_keras(tmp_path):
    model = _random_mlp(7, seed=3)
    x = np.random.default_rng(0).normal(0, 2, (500, 7)).astype("float32")
    expected = model(x, training=False).numpy()[:, 0]
    portable = from_keras(model)
    assert len(portable.layers) == 3, "three Dense layers remain once batch norm is folded in"
    assert np.max(np.abs(portable.predict_proba(x) - expected)) < 1e-5
    portable.save(tmp_path / "model.npz")
    again = PortableModel.load(tmp_path / "model.npz")
    assert np.array_equal(again.predict_proba(x), portable.predict_proba(x))
    assert again.n_inputs == 7


def test_unsupported_layers_are_named():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh")])
    with pytest.raises(ValueError, match="tanh"):
        from_keras(model)


def test_loading_another_file_is_refused(tmp_path):
    np.savez(tmp_path / "other.npz", meta=np.frombuffer(b'{"format": "x"}', dtype=np.uint8))
    with pytest.raises(ValueError, match="not a portable occupancy model"):
        PortableModel.load(tmp_path / "other.npz")
