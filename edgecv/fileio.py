"""Atomic writes and packaged data: every artifact edgecv writes appears complete or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it onto ``final`` only if the block succeeds.

    The temporary file lives in the same directory (same filesystem, so ``os.replace`` is atomic)
    and keeps the final suffix, because some writers (Keras) check it. On any error or signal the
    temporary file is removed and ``final`` is left as it was.
    """
    final = Path(final)
    suffix = final.suffix if suffix is None else suffix
    final.parent.mkdir(parents=True, exist_ok=True)  # output folders are made when the first file is written
    fd, tmp = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".part{suffix}", dir=final.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; artifacts follow the umask like any other file
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_bytes_atomic(final: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)
    return Path(final)


def write_text_atomic(final: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(final, text.encode("utf-8"))


def write_json_atomic(final: str | os.PathLike, obj: Any) -> Path:
    return write_text_atomic(final, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def unsafe_zip_member(zf: zipfile.ZipFile) -> tuple[str, str] | None:
    """The first member of ``zf`` an extractor could write outside the folder it extracts to, as (name, why):
    an absolute name, a ``..`` component or a symbolic link. None if there is none."""
    for info in zf.infolist():
        name = info.filename
        if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
            return name, "is an absolute path"
        if ".." in re.split(r"[/\\]", name):
            return name, "has a '..' component"
        if stat.S_ISLNK(info.external_attr >> 16):
            return name, "is a symbolic link"
    return None


def data_dir(name: str) -> Path:
    """Folder of packaged data (``models`` or ``device_profiles``).

    In a wheel they live inside the package (``edgecv/models``); in a source checkout or an
    editable install they are the top-level folders of the repository.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / name, here.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"edgecv data folder {name!r} not found beside {here}")


def ensure_output_dir(path: str | os.PathLike, option: str = "--output-dir") -> Path:
    """Create ``path`` if needed and check it is a writable directory (else EdgecvError)."""
    from edgecv.errors import EdgecvError

    p = Path(path)
    if p.exists() and not p.is_dir():
        raise EdgecvError(f"{option}: not a directory: {str(p)!r}")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgecvError(f"{option}: cannot create directory {str(p)!r}: {exc.strerror}") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise EdgecvError(f"{option}: directory is not writable: {str(p)!r}")
    return p


def check_output_dir(path: str | os.PathLike, option: str = "--output-dir") -> Path:
    """Like :func:`ensure_output_dir`, but folders it had to create are removed again: a run that fails later
    (bad model, bad calibration data) leaves no empty folder behind; :func:`atomic_path` makes the folder when
    the first file is written."""
    p = Path(path)
    missing = []
    q = p.absolute()
    while not q.exists() and q != q.parent:
        missing.append(q)
        q = q.parent
    ensure_output_dir(p, option)
    for m in missing:  # deepest first
        with contextlib.suppress(OSError):
            m.rmdir()
    return p
