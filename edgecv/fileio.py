"""Atomic writes and packaged data: every artifact edgecv writes appears complete or not at all."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: writers of one output are not serialized
    fcntl = None  # type: ignore[assignment]

# errors of a write that the user can fix (free space, quota, permissions): one line naming the file, exit 2
_USER_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
                      errno.EISDIR, errno.ENOTDIR}

_live_temps: set[str] = set()  # temporary files of atomic_path blocks in progress (removed on a forced exit)
_held: dict[str, list] = {}  # lock path -> [fd, depth, RLock]: output_lock is reentrant within a process
_held_guard = threading.Lock()


def _write_error(final: Path, tmp: Path | None, exc: OSError):
    """A one-line EdgecvError for an OSError raised while writing ``final``, or None when it is not a write
    error the user can fix. It names the file the error is about (``final`` for its temporary file)."""
    from edgecv.errors import EdgecvError

    if exc.errno not in _USER_WRITE_ERRORS:
        return None
    ours = {None, str(final), str(tmp) if tmp else None, str(final.parent)}
    name = exc.filename if exc.filename not in ours else str(final)
    if exc.errno in (errno.EACCES, errno.EPERM) and name != str(final):
        return None  # a permission error about another file (an input): not ours to word
    why = "a directory is in the way" if exc.errno == errno.EISDIR else (exc.strerror or str(exc))
    return EdgecvError(f"cannot write {name!r}: {why}")


@contextlib.contextmanager
def output_lock(final: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on the output ``final`` (a ``.<name>.lock`` file beside it, ``flock``): writers of
    one output, in any process, take turns. Reentrant within a process; the lock file is removed on release.
    Where no lock file can be made (read-only folder, Windows) the block runs unlocked and the write itself
    reports the problem."""
    final = Path(final)
    key = os.path.abspath(final.parent / f".{final.name}.lock")
    with _held_guard:
        entry = _held.setdefault(key, [None, 0, threading.RLock()])
    with entry[2]:
        if entry[1] > 0:
            entry[1] += 1
            try:
                yield
            finally:
                entry[1] -= 1
            return
        fd = _acquire(key)
        entry[0], entry[1] = fd, 1
        try:
            yield
        finally:
            entry[1] = 0
            entry[0] = None
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.unlink(key)
                os.close(fd)  # closing the descriptor releases the flock


def _acquire(key: str) -> int | None:
    if fcntl is None:
        return None
    while True:
        try:
            fd = os.open(key, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # the holder before us removes the file on release: lock again if we hold a removed file
            if os.path.exists(key) and os.path.samestat(os.fstat(fd), os.stat(key)):
                return fd
        except OSError:
            pass
        os.close(fd)


def _umask() -> int:
    """The process's umask, read without setting it where Linux shows it (``os.umask`` sets while it reads: a file
    another thread creates in between would get mode 0666)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _part_pattern(final: Path, suffix: str) -> re.Pattern:
    # tempfile.mkstemp names: prefix + 8 characters of [a-z0-9_] + suffix
    return re.compile(re.escape(f".{final.stem}.") + r"[a-z0-9_]{8}" + re.escape(f".part{suffix}") + r"\Z")


def remove_stale_parts(final: str | os.PathLike, suffix: str | None = None) -> list[Path]:
    """Remove the temporary files a killed writer of ``final`` left beside it (``.<stem>.XXXXXXXX.part<suffix>``,
    the names :func:`atomic_path` makes). Call with :func:`output_lock` held: then no live writer of ``final``
    can own one. Returns the removed paths."""
    final = Path(final)
    pat = _part_pattern(final, final.suffix if suffix is None else suffix)
    gone = []
    try:
        entries = list(os.scandir(final.parent))
    except OSError:
        return gone
    for e in entries:
        if pat.match(e.name) and e.is_file(follow_symlinks=False) and e.path not in _live_temps:
            with contextlib.suppress(OSError):
                os.unlink(e.path)
                gone.append(Path(e.path))
    return gone


_ANY_PART = re.compile(r"\.(?P<stem>.+)\.[a-z0-9_]{8}\.part(?P<suffix>.*)\Z")


def remove_stale_parts_in(folder: str | os.PathLike) -> list[Path]:
    """:func:`remove_stale_parts` for every output of ``folder`` that has a temporary file beside it, each under
    its output's lock: a live writer's temporary file (in any process) is left alone."""
    gone: list[Path] = []
    try:
        names = sorted(e.name for e in os.scandir(folder) if e.name.startswith("."))
    except OSError:
        return gone
    finals = {m["stem"] + m["suffix"]: m["suffix"] for m in map(_ANY_PART.match, names) if m}
    for name, suffix in finals.items():
        final = Path(folder) / name
        with output_lock(final):
            gone += remove_stale_parts(final, suffix)
    return gone


def remove_live_temporaries() -> None:
    """Remove the temporary files of every :func:`atomic_path` block in progress in this process (used when the
    process must end now, e.g. its parent died or a signal could not unwind)."""
    for t in list(_live_temps):
        with contextlib.suppress(OSError):
            os.unlink(t)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it onto ``final`` only if the block succeeds.

    The temporary file lives in the same directory (same filesystem, so ``os.replace`` is atomic)
    and keeps the final suffix, because some writers (Keras) check it. On any error or signal the
    temporary file is removed, folders made for it are removed again, and ``final`` is left as it was.
    Writers of one ``final`` take turns (:func:`output_lock`); temporary files killed writers left are
    removed first. A full disk, a missing permission or a directory at ``final`` raise a one-line
    ``EdgecvError`` that names ``final``.
    """
    final = Path(final)
    suffix = final.suffix if suffix is None else suffix
    made = []
    q = final.parent.absolute()
    while not q.exists() and q != q.parent:
        made.append(q)
        q = q.parent
    tmp_path = None
    try:
        final.parent.mkdir(parents=True, exist_ok=True)  # output folders are made when the first file is written
        with output_lock(final):
            remove_stale_parts(final, suffix)
            if final.is_dir():
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(final))
            fd, tmp = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".part{suffix}", dir=final.parent)
            os.close(fd)
            tmp_path = Path(tmp)
            _live_temps.add(tmp)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; artifacts follow the umask like any other file
            yield tmp_path
            with open(tmp_path, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp_path, final)
    except BaseException as exc:
        if tmp_path is not None:
            with contextlib.suppress(FileNotFoundError):
                tmp_path.unlink()
        for m in made:  # deepest first; only folders still empty
            with contextlib.suppress(OSError):
                m.rmdir()
        err = _write_error(final, tmp_path, exc) if isinstance(exc, OSError) else None
        if err is not None:
            raise err from None
        raise
    finally:
        if tmp_path is not None:
            _live_temps.discard(str(tmp_path))


def write_bytes_atomic(final: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)
    return Path(final)


def write_text_atomic(final: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(final, text.encode("utf-8"))


def write_json_atomic(final: str | os.PathLike, obj: Any) -> Path:
    return write_text_atomic(final, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def write_sidecar(artifact: str | os.PathLike, content: bytes, sidecar: str | os.PathLike, obj: Any) -> bool:
    """Write the JSON ``sidecar`` that describes ``artifact``, only if ``artifact`` still holds ``content``
    (the bytes this writer put there), under the artifact's :func:`output_lock`.

    With the artifact's writer removing the old sidecar before it renames the artifact (both under the same
    lock, inside :func:`atomic_path`), concurrent writers of one output leave an artifact with its own sidecar
    or with none, never one that describes another file. Returns False when another writer's artifact took the
    place (its sidecar is that writer's to write)."""
    artifact = Path(artifact)
    with output_lock(artifact):
        try:
            if artifact.stat().st_size != len(content) or artifact.read_bytes() != content:
                return False
        except FileNotFoundError:
            return False
        write_json_atomic(sidecar, obj)
    return True


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
