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
