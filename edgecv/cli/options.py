"""Options shared by several commands, and the JSON/table output helpers."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

import click


def output_options(f):
    """--json (result object on stdout only), --quiet (no progress on stderr)."""
    f = click.option("--quiet", "-q", is_flag=True, help="No progress or summary on stderr.")(f)
    f = click.option("--json", "as_json", is_flag=True, help="Print only the result as JSON on stdout.")(f)
    return f


def to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    return obj


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(obj), indent=2) + "\n")


def stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def stdout_console():
    from rich.console import Console

    return Console()


def int_at_least(minimum: int, opt: str):
    """A click callback: an integer >= ``minimum``, else one-line error naming the option and the value."""

    def check(ctx, param, value):
        if value is not None and value < minimum:
            raise click.BadParameter(f"expected an integer >= {minimum}. Received: {value!r}", param_hint=opt)
        return value

    return check


def positive_int(opt: str):
    """A click callback: an integer >= 1."""
    return int_at_least(1, opt)


def progress_status(message: str, quiet: bool = False):
    """A transient spinner on stderr while a slow step runs (nothing when quiet or stderr is not a
    terminal), so that an error stays the only line on stderr."""
    import contextlib

    if quiet:
        return contextlib.nullcontext()
    return stderr_console().status(message)
