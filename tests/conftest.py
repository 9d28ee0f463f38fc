"""Shared test fixtures: real photos that ship with scikit-image, and BatchNorm recalibration.

A ``weights=None`` Keras model gives degenerate outputs (softmax = 1/classes), so comparisons of
outputs are only meaningful after its BatchNorm statistics are recalibrated on real images.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REFERENCE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "reference")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ``photos(n, size, seed)``: seeded crops of the photos that ship with scikit-image (float32 0..255), the same
# images the demo and float verification use.
from edgecv.conversion.calibration import sample_images as photos  # noqa: E402,F401
from edgecv.builders.batchnorm import recalibrate_batchnorm as recalibrate_bn  # noqa: E402,F401


@pytest.fixture(scope="session")
def reference_dir() -> str:
    if not os.path.isdir(REFERENCE):
        pytest.skip("../shared/reference is not beside this checkout")
    return REFERENCE
