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


def root_cause(exc: BaseException, limit: int = 300) -> str:
    """``"TypeError: message"`` on one line for the innermost exception of ``exc``'s chain: loaders wrap the
    reason (Keras: "Functional could not be deserialized" around "Could not locate class 'system'")."""
    seen = {id(exc)}
    while (inner := exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)) is not None \
            and id(inner) not in seen:
        seen.add(id(inner))
        exc = inner
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:limit]}"
