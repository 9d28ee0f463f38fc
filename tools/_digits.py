"""The digits task of the quality benchmarks: the code lives in ``tests/helpers/digits.py`` (shared with the
tests, which never import from ``tools/``); this module re-exports it for the scripts here."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers.digits import *  # noqa: E402,F401,F403
from helpers.digits import (CLASSES, TRAIN_BN_MOMENTUM, Digits, Trained, accuracy, augment,  # noqa: E402,F401
                            keras_predict, load_digits, run_on, save_calibration, seed_everything, train)
