"""BatchNorm recalibration: give an untrained model realistic activation ranges."""

from __future__ import annotations


def recalibrate_batchnorm(model, pixels) -> None:
    """Set every BatchNorm's moving statistics to the batch statistics of ``pixels`` (one training pass).

    A freshly initialised model has mean 0 / variance 1 statistics and gives degenerate outputs; with
    statistics of real photos its activations have realistic ranges, so int8 calibration and the
    verification figures (SQNR, top-1 agreement) mean something. Latency does not depend on weights.
    """
    import keras

    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    model(pixels, training=True)
    for bn, m in zip(bns, saved):
        bn.momentum = m
