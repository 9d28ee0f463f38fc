"""Child-process entry: convert a .keras file to float32 TFLite (``python -m ... IN.keras OUT.tflite``).

TensorFlow is imported only here, in a separate process, so profiling never loads it into edgecv itself.
"""

from __future__ import annotations

import errno
import os
import sys
import tempfile


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
    from edgecv.errors import exception_line, root_cause

    try:
        model = keras.saving.load_model(src, compile=False, safe_mode=True)
    except Exception as exc:
        sys.stderr.write(f"not a readable .keras model: {root_cause(exc)}\n")
        return 2
    try:
        data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    except Exception as exc:
        # The converter saves the model to the temporary folder first; when that fails it falls back to a path
        # that raises an unrelated error ("'NoneType' object is not callable"): say what the problem is.
        why = _temp_folder_problem(os.path.getsize(src))
        if why is None:
            why = exception_line(exc)
        sys.stderr.write(f"TFLite conversion failed: {why}\n")
        return 2
    try:
        with open(dst, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        sys.stderr.write(f"cannot write the converted model to {dst!r}: {exc.strerror or exc}"
                         f"{' (TMPDIR)' if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ''}\n")
        return 2
    return 0


def _temp_folder_problem(nbytes: int) -> str | None:
    """Why the temporary folder cannot hold ``nbytes`` (the model's size), or None if it can."""
    folder = tempfile.gettempdir()
    try:
        with tempfile.TemporaryFile(dir=folder) as fh:
            fh.write(b"\0" * min(max(nbytes, 1 << 16), 1 << 28))
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        return f"cannot write to the temporary folder {folder!r} (TMPDIR): {exc.strerror or exc}"
    return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
