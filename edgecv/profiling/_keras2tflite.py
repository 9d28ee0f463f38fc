"""Child-process entry: convert a .keras file to float32 TFLite (``python -m ... IN.keras OUT.tflite``).

TensorFlow is imported only here, in a separate process, so profiling never loads it into edgecv itself.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    src, dst = argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stdout.flush()
    os.dup2(2, 1)  # TensorFlow logs on stdout; the parent reads nothing from it
    try:
        import keras
        import tensorflow as tf
    except ImportError:
        sys.stderr.write("profiling a .keras file needs TensorFlow: pip install 'edgecv[build]'\n")
        return 2
    from edgecv.errors import root_cause

    try:
        model = keras.saving.load_model(src, compile=False, safe_mode=True)
    except Exception as exc:
        sys.stderr.write(f"not a readable .keras model: {root_cause(exc)}\n")
        return 2
    try:
        data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    except Exception as exc:
        sys.stderr.write(f"TFLite conversion failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}\n")
        return 2
    with open(dst, "wb") as fh:
        fh.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
