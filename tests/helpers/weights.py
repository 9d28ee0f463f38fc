"""Trained-looking weights for test and benchmark models built with ``weights=None``."""

from __future__ import annotations

import numpy as np


def randomize_weights(model, seed: int = 0) -> None:
    """Trained-looking BatchNorm statistics and biases (non-zero), so no converter can drop them."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape).astype("float32"),
                               rng.normal(0, 0.1, b.shape).astype("float32"),
                               rng.normal(0, 0.1, m.shape).astype("float32"),
                               rng.uniform(0.5, 1.5, v.shape).astype("float32")])
        elif getattr(layer, "use_bias", False) and getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.1, tuple(layer.bias.shape)).astype("float32"))
