"""Progress and warnings for the conversion pipeline, kept apart from the work itself.

The API takes a :class:`Reporter`; the CLI passes a :class:`RichReporter` (progress bars with counts and
elapsed time on stderr) or a :class:`Reporter` that only collects warnings (``--quiet``).

TensorFlow, tf2onnx and the TFLite converter write a lot of native log lines to file descriptors 1 and 2;
:func:`edgecv.native.native_output_silenced` points both at a temporary file while they
work, so ``--json`` keeps stdout clean; the rich console writes to a duplicate of the original stderr.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator


def printable(text: str) -> str:
    """``text`` that any stream can print: file names that are not UTF-8 (surrogate escapes) as ``\\xNN``."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


class Reporter:
    """Silent reporter: collects warnings, shows nothing."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warn(self, msg: str) -> None:
        self.warnings.append(printable(msg))

    def info(self, msg: str) -> None:  # noqa: D401 - a sink
        pass

    @contextlib.contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        """A unit of work with ``total`` steps (None: unknown); yields ``advance(n=1)``."""
        yield lambda n=1: None


class RichReporter(Reporter):
    """Progress bars (description, bar, done/total, elapsed) and warnings on the original stderr."""

    def __init__(self, show_progress: bool = True) -> None:
        super().__init__()
        from rich.console import Console

        # A duplicate of fd 2 taken now: stays the terminal while native output is silenced.
        # (When sys.stderr is not fd 2, e.g. under click's CliRunner, write to it as it is.)
        try:
            real = sys.stderr.fileno() == 2
        except (AttributeError, OSError, ValueError):
            real = False
        self._stream = os.fdopen(os.dup(2), "w", buffering=1) if real else sys.stderr
        self._owns_stream = real
        self.console = Console(file=self._stream, stderr=False, highlight=False)
        self.show_progress = show_progress

    def warn(self, msg: str) -> None:
        super().warn(msg)
        from rich.markup import escape

        self.console.print(f"[yellow]warning:[/yellow] {escape(self.warnings[-1])}", markup=True, soft_wrap=True)

    def info(self, msg: str) -> None:
        if self.show_progress:
            self.console.print(msg, soft_wrap=True)

    @contextlib.contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        if not self.show_progress:
            yield lambda n=1: None
            return
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                                   TimeElapsedColumn)

        cols = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn()]
        if total is not None:
            cols.append(MofNCompleteColumn())
        cols.append(TimeElapsedColumn())
        # transient: bars vanish when done (and never print when stderr is not a terminal),
        # so an error stays the only line on stderr
        with Progress(*cols, console=self.console, transient=True) as bar:
            tid = bar.add_task(description, total=total)
            yield lambda n=1: bar.advance(tid, n)
            if total is not None:
                bar.update(tid, completed=total)
            else:
                bar.update(tid, total=1, completed=1)

    def close(self) -> None:
        if self._owns_stream:
            with contextlib.suppress(OSError):
                self._stream.close()
