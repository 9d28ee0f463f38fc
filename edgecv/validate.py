"""Validators for user input: one home for the checks every command and API function shares.

Each raises :class:`edgecv.errors.EdgecvError` (exit code 2, one line) naming the option and echoing the value
received, keras-style: ``--seed: expected an integer from 0 to 4294967295. Received: -1``. Dependency-free
(no numpy, no click at import): the CLI wraps them with :func:`click_callback`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

from edgecv.errors import EdgecvError, suggest

SEED_MAX = 2**32 - 1  # numpy, TensorFlow and Keras all accept seeds in 0..2**32-1
MAX_THREADS = 1024  # LiteRT runs 1024 threads; 100000 crashes it (SIGSEGV)
MAX_SAMPLE_BYTES_ENV = "EDGECV_MAX_SAMPLE_BYTES"


def _received(name: str, value: Any, keyword: bool | str) -> str:
    """``keyword``: echo as ``name=value`` (True) or ``keyword=value`` (a str), keras-style."""
    if keyword:
        return f"Received: {keyword if isinstance(keyword, str) else name}={value!r}"
    return f"Received: {value!r}"


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def int_at_least(name: str, value: Any, minimum: int, *, maximum: int | None = None, keyword: bool | str = False) -> int:
    """An integer >= ``minimum`` (and <= ``maximum``). ``keyword``: echo as ``name=value`` (API arguments)."""
    if not is_int(value) or value < minimum or (maximum is not None and value > maximum):
        want = f"an integer >= {minimum}" if maximum is None else f"an integer from {minimum} to {maximum}"
        raise EdgecvError(f"{name}: expected {want}. {_received(name, value, keyword)}")
    return value


def seed(name: str, value: Any) -> int:
    """A random seed: an integer 0..2**32-1."""
    return int_at_least(name, value, 0, maximum=SEED_MAX)


def positive_float(name: str, value: Any, *, keyword: bool | str = False, unit: str = "") -> float:
    """A finite number > 0 (``unit``: "milliseconds" gives "a number of milliseconds > 0")."""
    if not is_number(value) or value <= 0:
        raise EdgecvError(f"{name}: expected a number{' of ' + unit if unit else ''} > 0. "
                          f"{_received(name, value, keyword)}")
    return float(value)


def non_negative_float(name: str, value: Any, *, keyword: bool | str = False) -> float:
    if not is_number(value) or value < 0:
        raise EdgecvError(f"{name}: expected a number >= 0. {_received(name, value, keyword)}")
    return float(value)


def fraction(name: str, value: Any) -> float:
    """A number from 0 to 1."""
    if not is_number(value) or not 0.0 <= value <= 1.0:
        raise EdgecvError(f"{name}: expected a fraction from 0 to 1. Received: {value!r}")
    return float(value)


def choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """One of ``choices``, with close names suggested."""
    if value not in choices:
        raise EdgecvError(f"{name}: expected one of {', '.join(choices)}. Received: {value!r}"
                          f"{suggest(str(value), choices)}")
    return value


def env_int(var: str, default: int, *, minimum: int = 1) -> int:
    """An integer limit from the environment (``default`` when unset); a bad value names the variable."""
    text = os.environ.get(var)
    if text is None or not text.strip():
        return default
    try:
        v = int(text.strip().replace("_", ""))
    except ValueError:
        raise EdgecvError(f"{var}: expected an integer >= {minimum}. Received: {text!r}") from None
    return int_at_least(var, v, minimum)


def physical_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


WORKER_BYTES = 3 * 2**29  # a conversion worker (TensorFlow + one model) peaks at about 1.5 GiB
WORKERS_PER_CPU = 4


def max_workers() -> int:
    """Local worker processes edgecv starts at most: 4 per CPU, and no more than fit this machine's memory at
    about 1.5 GiB each (at least 1)."""
    by_cpu = (os.cpu_count() or 1) * WORKERS_PER_CPU
    mem = physical_memory_bytes()
    by_mem = mem // WORKER_BYTES if mem else by_cpu
    return max(1, min(by_cpu, by_mem))


def worker_count(name: str, value: Any, *, keyword: bool | str = False) -> int:
    """A number of local worker processes: an integer from 1 to :func:`max_workers`."""
    top = max_workers()
    if not is_int(value) or not 1 <= value <= top:
        raise EdgecvError(f"{name}: expected an integer from 1 to {top} (at most {WORKERS_PER_CPU} per CPU and "
                          f"{_size(WORKER_BYTES)} of memory each). {_received(name, value, keyword)}")
    return value


def max_sample_bytes() -> tuple[int, str]:
    """The memory edgecv lets calibration/verification samples take, and where that limit comes from:
    ``EDGECV_MAX_SAMPLE_BYTES`` when set, else half of this machine's memory (4 GiB when unknown)."""
    if os.environ.get(MAX_SAMPLE_BYTES_ENV, "").strip():
        return env_int(MAX_SAMPLE_BYTES_ENV, 0), MAX_SAMPLE_BYTES_ENV
    mem = physical_memory_bytes()
    return (mem // 2, "half of this machine's memory") if mem else (4 * 2**30, "default")


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} PB"


# float32 samples, held twice while they are made (raw pixels and the preprocessed copy)
SAMPLE_COPIES = 2


def check_sample_memory(count: int, shape: Sequence[int | None], what: str, *, copies: int = SAMPLE_COPIES) -> None:
    """Refuse a request for ``count`` float32 samples of ``shape`` (H, W, C) that would not fit the limit of
    :func:`max_sample_bytes`, in one line naming ``what`` (the options asked for), the bytes and the limit."""
    per = 4 * copies
    for d in shape:
        per *= int(d or 1)
    need = count * per
    limit, source = max_sample_bytes()
    if need > limit:
        dims = "x".join(str(d) for d in shape)
        raise EdgecvError(f"{what}: {count:,} samples of {dims} need about {_size(need)} of memory, more than "
                          f"the limit of {_size(limit)} ({source}); ask for fewer samples, or set "
                          f"{MAX_SAMPLE_BYTES_ENV} (bytes) to raise the limit")


def click_callback(check: Callable[..., Any], name: str, *args: Any, **kwargs: Any):
    """A click option callback running ``check(name, value, ...)``; None passes through; an EdgecvError becomes
    ``click.BadParameter`` (the CLI's one-line usage error naming the option)."""

    def callback(ctx, param, value):
        if value is None:
            return value
        try:
            return check(name, value, *args, **kwargs)
        except EdgecvError as exc:
            import click

            msg = str(exc)
            prefix = f"{name}: "
            raise click.BadParameter(msg[len(prefix):] if msg.startswith(prefix) else msg, param_hint=name) from None

    return callback


MAX_ARCHIVE_BYTES_ENV = "EDGECV_MAX_ARCHIVE_BYTES"
DEFAULT_MAX_ARCHIVE_BYTES = 4 * 2**30  # Keras' own floor; EfficientNet-B7 saves ~260 MB
MAX_ZIP_RATIO_ENV = "EDGECV_MAX_ZIP_RATIO"
DEFAULT_MAX_ZIP_RATIO = 100  # Keras saves members stored (ratio 1); deflated weights reach ~1.1
ZIP_RATIO_FLOOR_BYTES = 2**20  # members smaller than this are not judged by their ratio


def check_zip_sizes(zf: Any, option: str, path: str) -> None:
    """Bound a zip archive by the sizes its central directory declares, before any member is decompressed:
    the declared total (``EDGECV_MAX_ARCHIVE_BYTES``) and each member's expansion ratio
    (``EDGECV_MAX_ZIP_RATIO``, for members above 1 MiB). Python's zipfile, which Keras uses, never returns more
    than a member's declared size, so the declared sizes bound the work."""
    limit = env_int(MAX_ARCHIVE_BYTES_ENV, DEFAULT_MAX_ARCHIVE_BYTES)
    ratio_limit = env_int(MAX_ZIP_RATIO_ENV, DEFAULT_MAX_ZIP_RATIO)
    total = 0
    for info in zf.infolist():
        total += info.file_size
        if total > limit:
            raise EdgecvError(f"{option}: {path!r} declares {_size(total)}+ of uncompressed members (at "
                              f"{info.filename!r}), more than the limit of {_size(limit)}; set "
                              f"{MAX_ARCHIVE_BYTES_ENV} (bytes) to raise it")
        if info.file_size > ZIP_RATIO_FLOOR_BYTES and info.file_size > ratio_limit * max(info.compress_size, 1):
            ratio = info.file_size / max(info.compress_size, 1)
            raise EdgecvError(f"{option}: {path!r} member {info.filename!r} expands {ratio:,.0f}x "
                              f"({_size(info.compress_size)} to {_size(info.file_size)}), more than the limit of "
                              f"{ratio_limit}x (a zip bomb?); set {MAX_ZIP_RATIO_ENV} to raise it")


# --- records read back from disk (sweep points, stage results): typed checks against their dataclass --------

def conforms(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a type annotation: scalars, ``X | None``, ``list``/``tuple``/``dict`` of X and
    dataclasses (a dict; see :func:`record_problem`). ``float`` accepts integers (JSON writes 2.0 as 2.0, but
    hand-made files may not); ``int`` refuses booleans."""
    import dataclasses
    import types
    import typing

    if hint is Any or hint is object:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(conforms(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return is_int(value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if not args:
            return True
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return len(value) == len(args) and all(conforms(v, a) for v, a in zip(value, args))
        return all(conforms(v, args[0]) for v in value)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            return False
        return not args or all(isinstance(k, str) and conforms(v, args[1]) for k, v in value.items())
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return record_problem(value, hint) is None
    return True  # a type this checker does not know: not judged


def record_problem(d: Any, cls: type) -> str | None:
    """Why the dict ``d`` is not a serialized ``cls`` (a dataclass): the first missing or mistyped field, or None.
    Fields with defaults may be missing (writers drop some, e.g. ``ops``); unknown keys are ignored."""
    import dataclasses
    import typing

    if not isinstance(d, dict):
        return f"expected an object, got {type(d).__name__}"
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name not in d:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                return f"missing {f.name!r}"
            continue
        if not conforms(d[f.name], hints[f.name]):
            return f"{f.name!r} is {d[f.name]!r:.60}, expected {hints[f.name]}"
    return None
