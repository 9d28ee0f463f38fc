"""Labelled evaluation data: ``--data DIR`` (one sub-folder per class) or ``--data FILE.npz`` (``x``, ``y``).

A folder follows the layout of Keras' ``image_dataset_from_directory``: every sub-folder is a class, in
alphabetical order unless ``--labels FILE`` (one class name a line, in the model's output order) says
otherwise; images (JPEG/PNG) are found recursively inside each class folder. They are decoded with the
calibration module's bounded reader (:func:`edgecv.conversion.calibration.read_image`: center square crop,
bilinear resize to the model's input size) and kept as pixels 0..255; each artifact's preprocessing is applied
afterwards, so the same images feed every artifact.

A ``.npz`` holds ``x`` (N, H, W, C) and ``y`` (N,) integer labels: ``x`` of an integer dtype is raw pixels
0..255 (each artifact's preprocessing is applied), a float ``x`` is used as given (already model-ready).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecv.conversion.calibration import IMAGE_SUFFIXES, read_image
from edgecv.conversion.progress import Reporter
from edgecv.errors import EdgecvError, one_line

MAX_CLASSES = 100_000


@dataclass(frozen=True)
class DataSummary:
    """Where the evaluation images came from (kept in JSON output and sidecars)."""

    source: str
    kind: str  # dir | npz
    samples: int
    classes: tuple[str, ...]
    per_class: tuple[int, ...]
    skipped: tuple[str, ...] = ()  # unreadable files (dir only)
    ready: bool = False  # npz with a float x: model-ready values, no preprocessing applied


@dataclass(frozen=True)
class Dataset:
    """Labelled samples at one input size: ``x`` pixels 0..255 (or model-ready when ``summary.ready``)."""

    x: np.ndarray  # (N, H, W, C) float32
    y: np.ndarray  # (N,) int64 class index
    summary: DataSummary

    def hashes(self) -> frozenset[str]:
        """Content hashes (sha256 of each sample's float32 bytes) for overlap checks."""
        return frozenset(sample_hashes(self.x))


def sample_hashes(x: np.ndarray) -> list[str]:
    x = np.ascontiguousarray(x, np.float32)
    return [hashlib.sha256(s.tobytes()).hexdigest() for s in x]


@dataclass(frozen=True)
class Source:
    """A checked ``--data`` value, before any image is decoded (so errors come before models load)."""

    path: Path
    kind: str  # dir | npz
    classes: tuple[str, ...]
    files: tuple[tuple[Path, int], ...] = ()  # dir: (image, class index), sorted by class then path


def _read_labels(labels: str | os.PathLike) -> tuple[str, ...]:
    p = Path(labels)
    try:
        if p.stat().st_size > 16 * 2**20:
            raise EdgecvError(f"--labels: file larger than 16 MiB. Received: {str(p)!r}")
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EdgecvError(f"--labels: no such file. Received: {str(p)!r}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgecvError(f"--labels: cannot read {str(p)!r}: {getattr(exc, 'strerror', None) or exc}") from None
    names = tuple(ln.strip() for ln in text.splitlines() if ln.strip())
    if len(names) < 2:
        raise EdgecvError(f"--labels: expected at least 2 class names, one a line. Received {len(names)} in "
                          f"{str(p)!r}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise EdgecvError(f"--labels: class name {dup[0]!r} appears more than once in {str(p)!r}")
    return names


def open_source(data: str | os.PathLike, labels: str | os.PathLike | None = None, option: str = "--data") -> Source:
    """Check ``--data`` (named ``option`` in messages) and ``--labels``, and list the images, without decoding any."""
    if data is None or str(data) == "":
        raise EdgecvError(f"{option}: expected a folder of class sub-folders or a .npz file. Received: ''")
    p = Path(data)
    if not p.exists():
        raise EdgecvError(f"{option}: no such file or folder. Received: {str(data)!r}")
    if p.is_file():
        if p.suffix.lower() != ".npz":
            raise EdgecvError(f"{option}: expected a folder of class sub-folders or a .npz file with x and y. "
                              f"Received: {str(data)!r}")
        names = _read_labels(labels) if labels is not None else ()
        return Source(p, "npz", names)
    if not p.is_dir():
        raise EdgecvError(f"{option}: not a regular file or folder. Received: {str(data)!r}")
    try:
        subdirs = sorted(d.name for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))
    except OSError as exc:
        raise EdgecvError(f"{option}: cannot read folder {str(p)!r}: {exc.strerror}") from None
    if not subdirs:
        raise EdgecvError(f"{option}: no class sub-folders in {str(p)!r} (expected one sub-folder per class)")
    if labels is not None:
        names = _read_labels(labels)
        missing = [n for n in names if n not in subdirs]
        if missing:
            raise EdgecvError(f"--labels: class {missing[0]!r} has no sub-folder in {str(p)!r}")
        extra = [d for d in subdirs if d not in names]
        if extra:
            raise EdgecvError(f"{option}: sub-folder {extra[0]!r} of {str(p)!r} is not a class in --labels")
    else:
        names = tuple(subdirs)
    files: list[tuple[Path, int]] = []
    empty = []
    for i, name in enumerate(names):
        try:
            imgs = sorted(f for f in (p / name).rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        except OSError as exc:
            raise EdgecvError(f"{option}: cannot read folder {str(p / name)!r}: {exc.strerror}") from None
        if not imgs:
            empty.append(name)
        files.extend((f, i) for f in imgs)
    if not files:
        raise EdgecvError(f"{option}: no JPEG or PNG images in the class folders of {str(p)!r}")
    have = [n for n in names if n not in empty]
    if len(have) < 2:
        raise EdgecvError(f"{option}: only one class ({have[0]!r}) has images in {str(p)!r}; "
                          "accuracy needs at least 2 classes")
    return Source(p, "dir", tuple(names), tuple(files))


def load(src: Source, shape: tuple[int, int, int], reporter: Reporter | None = None) -> Dataset:
    """Decode ``src`` at ``shape`` (H, W, C): pixels 0..255 float32 (npz float: as given)."""
    reporter = reporter or Reporter()
    h, w, c = shape
    if src.kind == "npz":
        return _load_npz(src, shape)
    xs, ys, bad = [], [], []
    with reporter.task(f"reading {len(src.files)} images ({h}x{w})", total=len(src.files)) as advance:
        for f, label in src.files:
            try:
                xs.append(read_image(f, (h, w), c))
                ys.append(label)
            except EdgecvError as exc:  # the decoder's bounds (an image too large to decode): one line
                raise EdgecvError(f"--data: {str(f.relative_to(src.path))!r}: {exc}") from None
            except Exception:  # noqa: BLE001 - any decoder failure means "unreadable image"
                bad.append(str(f.relative_to(src.path)))
            advance(1)
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise EdgecvError(f"--data: {len(bad)} unreadable image(s) in {str(src.path)!r}: {shown}")
    y = np.asarray(ys, np.int64)
    counts = np.bincount(y, minlength=len(src.classes))
    summary = DataSummary(str(src.path), "dir", len(y), src.classes, tuple(int(k) for k in counts), ())
    return Dataset(np.stack(xs).astype(np.float32), y, summary)


def _load_npz(src: Source, shape: tuple[int, int, int]) -> Dataset:
    import zipfile

    from edgecv.conversion.calibration import array_byte_limit

    p = src.path
    limit = array_byte_limit()
    try:  # bounded before anything is decompressed: the members' declared sizes
        with zipfile.ZipFile(p) as zf:
            big = [(i.filename, i.file_size) for i in zf.infolist() if i.file_size > limit]
    except Exception as exc:  # noqa: BLE001 - BadZipFile, OSError, NotImplementedError (zip version) ...
        raise EdgecvError(f"--data: cannot read {str(p)!r} as a .npz file: {exc}") from None
    if big:
        raise EdgecvError(f"--data: {str(p)!r} member {big[0][0]!r} declares {big[0][1]:,} bytes, over the limit "
                          f"of {limit:,} (raise it with EDGECV_MAX_ARRAY_BYTES=N)")
    try:
        with np.load(p, allow_pickle=False) as z:
            keys = set(z.keys())
            if not {"x", "y"} <= keys:
                raise EdgecvError(f"--data: {str(p)!r} must hold arrays named x and y. Received: {sorted(keys)}")
            x, y = z["x"], z["y"]
    except EdgecvError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged member: BadZipFile, zlib.error, TokenError (header) ...
        raise EdgecvError(f"--data: cannot read {str(p)!r} as a .npz file: {one_line(exc)[:300]}") from None
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape) or len(x) < 1:
        raise EdgecvError(f"--data: x must have shape (N, {', '.join(map(str, shape))}) for this model. "
                          f"Received: shape={tuple(x.shape)} in {str(p)!r}")
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise EdgecvError(f"--data: y must be {len(x)} integer labels. Received: shape={tuple(y.shape)} "
                          f"dtype={y.dtype} in {str(p)!r}")
    ready = bool(np.issubdtype(x.dtype, np.floating))
    if not (ready or np.issubdtype(x.dtype, np.integer)):
        raise EdgecvError(f"--data: x must be integer pixels or float model-ready values. Received: dtype={x.dtype}")
    if ready and not np.isfinite(x).all():
        raise EdgecvError(f"--data: x holds NaN or infinite values: {str(p)!r}")
    if (y < 0).any():
        raise EdgecvError(f"--data: y holds a negative label ({int(y.min())}) in {str(p)!r}")
    n_classes = int(y.max()) + 1
    if n_classes > MAX_CLASSES:
        raise EdgecvError(f"--data: label {int(y.max())} is out of range in {str(p)!r}")
    names = src.classes or tuple(str(i) for i in range(n_classes))
    if len(names) < n_classes:
        raise EdgecvError(f"--labels: {len(names)} class names but y holds label {n_classes - 1}")
    counts = np.bincount(y.astype(np.int64), minlength=len(names))
    if int((counts > 0).sum()) < 2:
        raise EdgecvError(f"--data: only one class in y of {str(p)!r}; accuracy needs at least 2 classes")
    summary = DataSummary(str(p), "npz", len(y), tuple(names), tuple(int(k) for k in counts), (), ready)
    return Dataset(np.ascontiguousarray(x, np.float32), y.astype(np.int64), summary)
