"""Native (C++) output of TensorFlow and friends, kept off the user's terminal.

TensorFlow, tf2onnx and the TFLite converter write log lines straight to file descriptors 1 and 2, past
Python's ``sys.stdout``/``sys.stderr``. :func:`native_output_silenced` points both descriptors at a
temporary file while they work. :func:`import_tensorflow` imports TensorFlow once under it: TF 2.21 logs
through absl before ``absl::InitializeLog()`` runs, and those lines ignore ``TF_CPP_MIN_LOG_LEVEL`` (on a
CPU where oneDNN's custom ops are on, e.g. with AVX-512, every import prints "oneDNN custom operations are
on" twice), so a one-line error would otherwise arrive under a screenful of start-up chatter.
``EDGECV_DEBUG=1`` leaves everything on the terminal.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator


def import_tensorflow():
    """``import tensorflow`` with its start-up lines silenced (once per process); returns the module."""
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        with native_output_silenced():
            import tensorflow  # noqa: F401
    return sys.modules["tensorflow"]


@contextlib.contextmanager
def native_output_silenced(enabled: bool = True) -> Iterator[Callable[[], str]]:
    """Send fds 1 and 2 (C++ logs, absl, prints) to a temporary file; yields a getter for that text."""
    if not enabled or os.environ.get("EDGECV_DEBUG"):
        yield lambda: ""
        return
    import logging
    import warnings

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    sink = tempfile.TemporaryFile(mode="w+b")
    prev_disable = logging.root.manager.disable
    try:
        for fd in (1, 2):
            os.dup2(sink.fileno(), fd)
        logging.disable(logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")

            def text() -> str:
                sink.flush()
                sink.seek(0)
                return sink.read().decode("utf-8", "replace")

            yield text
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        for fd, dup in saved.items():
            os.dup2(dup, fd)
            os.close(dup)
        logging.disable(prev_disable)
        sink.close()
