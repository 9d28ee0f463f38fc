"""Shared test helpers: real photos that ship with scikit-image, and BatchNorm recalibration.

A ``weights=None`` Keras model gives degenerate outputs (softmax = 1/classes), so comparisons of
outputs are only meaningful after its BatchNorm statistics are recalibrated on real images.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REFERENCE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "reference")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina")


def photos(n: int, size: int, seed: int = 0) -> np.ndarray:
    """``n`` RGB crops (0..255 float32, ``size`` x ``size``) of scikit-image's sample photos, with flips."""
    from skimage import data
    from skimage.transform import resize

    rng = np.random.default_rng(seed)
    srcs = [np.asarray(getattr(data, name)(), dtype=np.float32) for name in PHOTOS]
    out = np.empty((n, size, size, 3), np.float32)
    for i in range(n):
        img = srcs[i % len(srcs)]
        h, w = img.shape[:2]
        side = int(min(h, w) * rng.uniform(0.5, 1.0))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = img[y:y + side, x:x + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out[i] = resize(crop, (size, size), preserve_range=True, anti_aliasing=True)
    return out


from edgecv.builders.batchnorm import recalibrate_batchnorm as recalibrate_bn  # noqa: E402,F401


@pytest.fixture(scope="session")
def reference_dir() -> str:
    if not os.path.isdir(REFERENCE):
        pytest.skip("../shared/reference is not beside this checkout")
    return REFERENCE
