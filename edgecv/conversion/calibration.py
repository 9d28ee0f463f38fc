"""Calibration and verification samples: ``--calib DIR | FILE.npy | FILE.npz | synthetic``.

Every source gives model-ready float32 arrays (N, H, W, C), preprocessed the way the model family
expects (:class:`edgecv.builders.arch.Preprocessing`), drawn with a seeded generator so the same
options give the same samples. A held-out part (never used for calibration) is kept for verification.

Images (JPEG/PNG, found recursively) are read with Pillow, center-cropped to a square and resized
to the model's input size with bilinear filtering, then normalized: ``(pixels - mean) / std``
(EfficientNet takes raw 0..255 pixels: its Rescaling/Normalization layers are inside the model).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecv.builders.arch import Preprocessing
from edgecv.conversion.progress import Reporter
from edgecv.errors import EdgecvError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
FEW_SAMPLES = 100
# Photos that ship inside scikit-image (no download); used by tests, the demo and float verification.
SAMPLE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
                 "retina", "colorwheel")


@dataclass(frozen=True)
class CalibrationSummary:
    """What the calibration (and verification) samples were: stored in the sidecar JSON."""

    source: str  # the --calib value, "synthetic", or "builtin:skimage" (verification only)
    kind: str  # dir | npy | npz | synthetic | builtin
    samples: int  # used for calibration
    holdout: int  # held out for verification
    seed: int
    input_shape: tuple[int, ...]
    preprocessing: str  # e.g. "center crop, bilinear resize to 224x224, (x - 127.5) / 127.5"
    files_found: int = 0
    files_skipped: int = 0
    value_range: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class CalibrationData:
    calib: np.ndarray  # (samples, H, W, C) float32, model-ready
    holdout: np.ndarray  # (holdout, H, W, C) float32, model-ready, disjoint from calib when possible
    summary: CalibrationSummary


# --- real photos for tests and the demo -----------------------------------------------------------

@functools.cache
def _photos() -> tuple:
    """scikit-image's sample photos as PIL images, the large ones shrunk to at most 640 px once."""
    try:
        from skimage import data
    except ImportError as exc:  # pragma: no cover - scikit-image is a test/demo dependency
        raise EdgecvError("sample images need scikit-image (pip install scikit-image)") from exc
    from PIL import Image

    out = []
    for name in SAMPLE_PHOTOS:
        im = Image.fromarray(np.asarray(getattr(data, name)())[..., :3].astype(np.uint8))
        if max(im.size) > 640:
            im.thumbnail((640, 640), Image.BILINEAR)
        out.append(im)
    return tuple(out)


def sample_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """``n`` RGB images (float32 0..255, ``size`` x ``size``): seeded crops and flips of scikit-image's photos.

    Each image is a random square crop (40-100 % of the short side) of one of the photos, flipped left-right
    half of the time and upside down a fifth of the time, resized with bilinear (antialiased) filtering.
    """
    from PIL import Image

    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or not isinstance(size, int) or size < 1:
        raise EdgecvError(f"sample_images: expected n >= 1 and size >= 1. Received: n={n!r} size={size!r}")
    srcs = _photos()
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), np.float32)
    for i in range(n):
        im = srcs[i] if i < len(srcs) else srcs[rng.integers(len(srcs))]
        w, h = im.size
        side = int(min(h, w) * rng.uniform(0.4, 1.0))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = im.crop((x, y, x + side, y + side))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        if rng.random() < 0.2:
            crop = crop.transpose(Image.FLIP_TOP_BOTTOM)
        out[i] = np.asarray(crop.resize((size, size), Image.BILINEAR), np.float32)
    return out


# --- the sources ------------------------------------------------------------------------------------

def describe_preprocessing(pre: Preprocessing, size: tuple[int, int]) -> str:
    resize = f"center crop, bilinear resize to {size[0]}x{size[1]}"
    if pre.in_model:
        return f"{resize}, raw RGB 0..255 (normalization inside the model)"
    mean = pre.mean[0] if len(set(pre.mean)) == 1 else list(pre.mean)
    std = pre.std[0] if len(set(pre.std)) == 1 else list(pre.std)
    return f"{resize}, (x - {mean}) / {std} -> range {list(pre.range)}"


def load_calibration(spec: str | os.PathLike | None, *, input_shape: tuple[int | None, ...],
                     preprocessing: Preprocessing, samples: int = 100, holdout: int = 16, seed: int = 0,
                     reporter: Reporter | None = None, warn_few: bool = True) -> CalibrationData:
    """Load ``samples`` calibration and ``holdout`` verification samples from ``spec``.

    ``spec``: a folder of JPEG/PNG images, a ``.npy``/``.npz`` array already preprocessed (N, H, W, C),
    ``"synthetic"`` (uniform noise pixels; poor scales, warns), or None (scikit-image's photos, for
    verifying float conversions when no --calib is given).
    """
    reporter = reporter or Reporter()
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise EdgecvError(f"--samples: expected an integer >= 1. Received: {samples!r}")
    if isinstance(holdout, bool) or not isinstance(holdout, int) or holdout < 0:
        raise EdgecvError(f"verify_samples: expected an integer >= 0. Received: {holdout!r}")
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise EdgecvError(f"calibration needs an image model with input (H, W, C). Received input shape {shape}")
    h, w, c = shape
    if h is None or w is None:
        raise EdgecvError(f"calibration needs a fixed input size. Received input shape {shape}")
    want = samples + holdout
    if spec is None or str(spec) in ("synthetic", "synthetic-verify"):  # generated: bounded by memory only
        from edgecv.validate import check_sample_memory

        check_sample_memory(want, (h, w, c), f"--samples {samples} + --verify-samples {holdout}")
    if spec is None:
        pixels = sample_images(want, max(h, w), seed)[:, :h, :w, :]
        arr, kind, source, found = _to_channels(pixels, c), "builtin", "builtin:skimage", want
        arr = preprocessing.apply(arr)
        desc = describe_preprocessing(preprocessing, (h, w))
        skipped = 0
    elif str(spec) == "synthetic":
        reporter.warn("--calib synthetic: calibrating on random noise gives poor quantization scales; "
                      "use real images (--calib DIR) for a deployable model")
        rng = np.random.default_rng(seed)
        arr = preprocessing.apply(rng.uniform(0.0, 255.0, (want, h, w, c)).astype(np.float32))
        kind, source, found, skipped = "synthetic", "synthetic", want, 0
        desc = "uniform noise pixels, " + describe_preprocessing(preprocessing, (h, w)).split(", ", 2)[-1]
    else:
        path = Path(spec)
        if not path.exists():
            raise EdgecvError(f"--calib: no such file or folder. Received: {str(spec)!r}")
        if path.is_dir():
            arr, found, skipped = _load_dir(path, (h, w, c), preprocessing, want, seed, reporter)
            kind, source = "dir", str(path)
            desc = describe_preprocessing(preprocessing, (h, w))
        elif path.suffix.lower() in (".npy", ".npz"):
            arr = _load_array(path, (h, w, c))
            found, skipped = len(arr), 0
            order = np.random.default_rng(seed).permutation(len(arr))[:want]
            arr = arr[np.sort(order)]  # a seeded subset, in file order
            kind, source = path.suffix.lower()[1:], str(path)
            desc = "preprocessed array (used as given)"
        else:
            raise EdgecvError(f"--calib: expected a folder of JPEG/PNG images, a .npy/.npz file or 'synthetic'. "
                              f"Received: {str(spec)!r}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    n = len(arr)
    # Split: holdout from the end; if the source is too small, verification reuses calibration samples.
    if n > holdout and n - holdout >= 1 and holdout > 0:
        n_cal = min(samples, n - holdout)
        calib, held = arr[:n_cal], arr[n_cal:n_cal + holdout]
    else:
        calib = arr[:samples]
        held = arr[:holdout] if holdout else arr[:0]
        if holdout and spec is not None:
            reporter.warn(f"--calib: only {n} sample(s); verification reuses calibration samples")
    if len(calib) < samples and spec is not None and warn_few:
        reporter.warn(f"--calib: {len(calib)} calibration sample(s) available, fewer than --samples {samples}")
    if len(calib) < FEW_SAMPLES and spec is not None and warn_few:
        reporter.warn(f"calibrating on {len(calib)} sample(s) (fewer than {FEW_SAMPLES}): "
                      "quantization scales may be unreliable")
    summary = CalibrationSummary(
        source=source, kind=kind, samples=len(calib), holdout=len(held), seed=seed, input_shape=(h, w, c),
        preprocessing=desc, files_found=found, files_skipped=skipped,
        value_range=(float(arr.min()), float(arr.max())) if n else (0.0, 0.0),
    )
    _check_range(summary, preprocessing, reporter)
    return CalibrationData(calib=calib, holdout=held, summary=summary)


def precheck(spec: str | os.PathLike | None) -> None:
    """Checks of ``--calib`` that need no model (run before the slow model load)."""
    if spec is None or str(spec) == "synthetic":
        return
    path = Path(spec)
    if not path.exists():
        raise EdgecvError(f"--calib: no such file or folder. Received: {str(spec)!r}")
    if path.is_dir():
        try:
            images, n_files = _find_images(path)
        except OSError as exc:
            raise EdgecvError(f"--calib: cannot read folder {str(path)!r}: {exc.strerror}") from None
        if n_files == 0:
            raise EdgecvError(f"--calib: folder is empty. Received: {str(path)!r}")
        if not images:
            raise EdgecvError(f"--calib: no JPEG or PNG images in folder {str(path)!r} ({n_files} other file(s))")
    elif path.suffix.lower() not in (".npy", ".npz"):
        raise EdgecvError(f"--calib: expected a folder of JPEG/PNG images, a .npy/.npz file or 'synthetic'. "
                          f"Received: {str(spec)!r}")


def _to_channels(pixels: np.ndarray, c: int) -> np.ndarray:
    if c == 3:
        return pixels
    if c == 1:
        return pixels.mean(axis=-1, keepdims=True)
    raise EdgecvError(f"built-in sample images are RGB; the model takes {c} channels: pass --calib FILE.npy")


def _check_range(s: CalibrationSummary, pre: Preprocessing, reporter: Reporter) -> None:
    lo, hi = pre.range
    span = hi - lo
    vlo, vhi = s.value_range
    if s.kind in ("npy", "npz") and (vlo < lo - 0.5 * span or vhi > hi + 0.5 * span or vhi - vlo < 0.05 * span):
        reporter.warn(f"--calib: values span [{vlo:.3g}, {vhi:.3g}] but this model expects inputs in "
                      f"[{lo:g}, {hi:g}]; check the preprocessing")


def _find_images(folder: Path) -> tuple[list[Path], int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    images = sorted(p for p in files if p.suffix.lower() in IMAGE_SUFFIXES)
    return images, len(files)


def _load_dir(folder: Path, shape: tuple[int, int, int], pre: Preprocessing, want: int, seed: int,
              reporter: Reporter) -> tuple[np.ndarray, int, int]:
    try:
        images, n_files = _find_images(folder)
    except OSError as exc:
        raise EdgecvError(f"--calib: cannot read folder {str(folder)!r}: {exc.strerror}") from None
    if n_files == 0:
        raise EdgecvError(f"--calib: folder is empty. Received: {str(folder)!r}")
    if not images:
        raise EdgecvError(f"--calib: no JPEG or PNG images in folder {str(folder)!r} ({n_files} other file(s))")
    from edgecv.validate import check_sample_memory

    check_sample_memory(min(want, len(images)), shape, f"--samples + --verify-samples ({min(want, len(images))} "
                        f"of {len(images)} images in {str(folder)!r})")
    order = np.random.default_rng(seed).permutation(len(images))
    h, w, c = shape
    out: list[np.ndarray] = []
    bad: list[str] = []
    with reporter.task("reading calibration images", total=min(want, len(images))) as advance:
        for idx in order:
            if len(out) >= want:
                break
            try:
                out.append(read_image(images[idx], (h, w), c))
                advance(1)
            except Exception:  # noqa: BLE001 - any decoder failure means "unreadable image"
                bad.append(images[idx].name)
    if not out:
        raise EdgecvError(f"--calib: none of the {len(images)} image(s) in {str(folder)!r} could be read")
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        reporter.warn(f"--calib: skipped {len(bad)} unreadable image(s): {shown}")
    return pre.apply(np.stack(out)), len(images), len(bad)


def read_image(path: Path, size: tuple[int, int], channels: int = 3) -> np.ndarray:
    """One image file -> float32 (H, W, C) pixels 0..255: center square crop, bilinear resize."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        im = im.convert("RGB" if channels == 3 else "L")
        wi, hi = im.size
        side = min(wi, hi)
        left, top = (wi - side) // 2, (hi - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((size[1], size[0]), Image.BILINEAR)
        arr = np.asarray(im, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] != channels:
        raise ValueError(f"expected {channels} channels")
    return arr


def _load_array(path: Path, shape: tuple[int, int, int]) -> np.ndarray:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise EdgecvError(f"--calib: cannot read {str(path)!r} as a NumPy array: {exc}") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.keys())
            if len(keys) == 1:
                key = keys[0]
            elif "x" in keys or "images" in keys:
                key = "x" if "x" in keys else "images"
            else:
                raise EdgecvError(f"--calib: {str(path)!r} holds several arrays {keys}; name the images 'x'")
            try:
                arr = loaded[key]
            except ValueError as exc:
                raise EdgecvError(f"--calib: cannot read array {key!r} of {str(path)!r}: {exc}") from None
    else:
        arr = loaded
    if not np.issubdtype(arr.dtype, np.floating):
        raise EdgecvError(f"--calib: expected a float array (already preprocessed). "
                          f"Received: dtype={arr.dtype} in {str(path)!r}")
    want = "(N, " + ", ".join(map(str, shape)) + ")"
    if arr.ndim != 4 or tuple(arr.shape[1:]) != tuple(shape) or arr.shape[0] < 1:
        raise EdgecvError(f"--calib: expected an array of shape {want} for this model. "
                          f"Received: shape={tuple(arr.shape)} in {str(path)!r}")
    if not np.isfinite(arr).all():
        raise EdgecvError(f"--calib: the array holds NaN or infinite values: {str(path)!r}")
    return arr.astype(np.float32, copy=False)
