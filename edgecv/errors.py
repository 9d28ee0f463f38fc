"""Errors a user can trigger. The CLI turns them into one line on stderr and exit code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EdgecvError(Exception):
    """A problem with the user's input (option, file, model). Exit code 2, one line, no traceback."""

    exit_code = 2


class GateFailed(EdgecvError):
    """A verification gate (e.g. --min-sqnr) was not met. Exit code 3."""

    exit_code = 3


def suggest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """``" Did you mean: a, b?"`` with the closest valid names, or ``""`` if none is close."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def one_line(text: object) -> str:
    """``text`` on one line: every run of whitespace (newlines included) becomes one space. The CLI prints every
    error through it. (``edgecv/profiling/runner.py`` keeps its own copy: it runs on a target without edgecv.)"""
    return " ".join(str(text).split())


def last_line(text: str | None, default: str = "", skip: tuple[str, ...] = ()) -> str:
    """The last non-empty line of a dead child's stderr, stripped, or ``default``. That line is the reason: a
    Python traceback ends with the exception, and a runtime that aborts prints its failed check last; the lines
    before it are the stack or progress output. ``skip`` drops lines that start with one of its prefixes (ssh's
    "Warning: Permanently added ..." notices)."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip() and not ln.startswith(skip)]
    return lines[-1] if lines else default


def exception_line(exc: BaseException, limit: int = 300) -> str:
    """``"RuntimeError: message"`` on one line for a converter's or runtime's exception, from the text after its
    first ``error: `` (TensorFlow's and MLIR's messages repeat a location prefix before it), cut at ``limit``."""
    text = one_line(exc)
    for marker in ("error: ", "Error: "):
        if marker in text:
            text = text[text.index(marker) + len(marker):]
            break
    return f"{type(exc).__name__}: {text[:limit]}"


def root_cause(exc: BaseException, limit: int = 300) -> str:
    """``"TypeError: message"`` on one line for the innermost exception of ``exc``'s chain: loaders wrap the
    reason (Keras: "Functional could not be deserialized" around "Could not locate class 'system'")."""
    seen = {id(exc)}
    while (inner := exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)) is not None \
            and id(inner) not in seen:
        seen.add(id(inner))
        exc = inner
    return f"{type(exc).__name__}: {one_line(exc)[:limit]}"
