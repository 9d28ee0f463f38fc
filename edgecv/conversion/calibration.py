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
import threading
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecv.builders.arch import Preprocessing
from edgecv.conversion.preprocess import InputPreprocessing, from_family
from edgecv.conversion.progress import Reporter, printable
from edgecv.errors import EdgecvError, one_line

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
FEW_SAMPLES = 100
# Decoder bounds, checked on the declared sizes before anything is decoded (raise them with these variables).
MAX_IMAGE_PIXELS_ENV = "EDGECV_MAX_IMAGE_PIXELS"
MAX_IMAGE_PIXELS = 64_000_000  # one calibration image (width x height from its header)
MAX_ARRAY_BYTES_ENV = "EDGECV_MAX_ARRAY_BYTES"
MAX_ARRAY_BYTES = 2 * 2**30  # a .npz member (decompressed in full), or the rows read from a .npy
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


def sample_images(n: int, size: int | tuple[int, int], seed: int = 0) -> np.ndarray:
    """``n`` RGB images (float32 0..255, ``size`` x ``size`` or (height, width)): seeded crops and flips of
    scikit-image's photos.

    Each image is a random crop of the output's aspect ratio (a square: 40-100 % of the short side) of one of
    the photos, flipped left-right half of the time and upside down a fifth of the time, resized with bilinear
    (antialiased) filtering.
    """
    from PIL import Image

    hw = (size, size) if isinstance(size, int) and not isinstance(size, bool) else tuple(size)
    if (isinstance(n, bool) or not isinstance(n, int) or n < 1 or len(hw) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in hw)):
        raise EdgecvError(f"sample_images: expected n >= 1 and size >= 1. Received: n={n!r} size={size!r}")
    oh, ow = hw
    srcs = _photos()
    rng = np.random.default_rng(seed)
    out = np.empty((n, oh, ow, 3), np.float32)
    for i in range(n):
        im = srcs[i] if i < len(srcs) else srcs[rng.integers(len(srcs))]
        w, h = im.size
        side = int(min(h, w) * rng.uniform(0.4, 1.0))
        cw, ch = (side, max(1, round(side * oh / ow))) if oh <= ow else (max(1, round(side * ow / oh)), side)
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = im.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        if rng.random() < 0.2:
            crop = crop.transpose(Image.FLIP_TOP_BOTTOM)
        out[i] = np.asarray(crop.resize((ow, oh), Image.BILINEAR), np.float32)
    return out


# --- the sources ------------------------------------------------------------------------------------

def _limit(env: str, default: int) -> int:
    """A decoder bound: ``default`` unless the environment variable ``env`` gives a positive integer."""
    raw = os.environ.get(env)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip().replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise EdgecvError(f"{env}: expected a positive integer. Received: {raw!r}")
    return value


def image_pixel_limit() -> int:
    return _limit(MAX_IMAGE_PIXELS_ENV, MAX_IMAGE_PIXELS)


def array_byte_limit() -> int:
    return _limit(MAX_ARRAY_BYTES_ENV, MAX_ARRAY_BYTES)


def _input_pre(pre: Preprocessing | InputPreprocessing, channels: int | None = None) -> InputPreprocessing:
    p = pre if isinstance(pre, InputPreprocessing) else from_family(pre, None)
    return p if channels is None else p.for_channels(channels)


def describe_preprocessing(pre: Preprocessing | InputPreprocessing, size: tuple[int, int]) -> str:
    return f"center crop, bilinear resize to {size[0]}x{size[1]}, {_input_pre(pre).describe()}"


def load_calibration(spec: str | os.PathLike | None, *, input_shape: tuple[int | None, ...],
                     preprocessing: Preprocessing | InputPreprocessing, samples: int = 100, holdout: int = 16,
                     seed: int = 0, reporter: Reporter | None = None, warn_few: bool = True) -> CalibrationData:
    """Load ``samples`` calibration and ``holdout`` verification samples from ``spec``.

    ``spec``: a folder of JPEG/PNG images (converted to the model's channels: grayscale for 1, RGB for 3;
    refused for other channel counts), a ``.npy``/``.npz`` array already preprocessed (N, H, W, C),
    ``"synthetic"`` (uniform noise pixels of any shape; poor scales, warns), or None (scikit-image's photos,
    for verifying float conversions when no --calib is given; noise for models with other than 1 or 3
    channels). Image and array decoders are bounded by the declared sizes before they decode
    (``EDGECV_MAX_IMAGE_PIXELS``, ``EDGECV_MAX_ARRAY_BYTES``).
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
    if h is None or w is None or c is None:
        raise EdgecvError(f"calibration needs a fixed input size. Received input shape {shape}")
    pre = _input_pre(preprocessing, c)
    want = samples + holdout
    if spec is None or str(spec) in ("synthetic", "synthetic-verify"):  # generated: bounded by memory only
        from edgecv.validate import check_sample_memory

        check_sample_memory(want, (h, w, c), f"--samples {samples} + --verify-samples {holdout}")
    if spec is None and c not in (1, 3):
        reporter.warn(f"verifying on random noise pixels: the built-in sample photos are RGB and the model takes "
                      f"{c} channels; pass --calib FILE.npy/.npz (N, {h}, {w}, {c}) for real samples")
        spec = "synthetic-verify"
    if spec is None:
        arr = pre.apply(_to_channels(sample_images(want, (h, w), seed), c))
        kind, source, found, skipped = "builtin", "builtin:skimage", want, 0
        desc = describe_preprocessing(pre, (h, w)) + (", grayscale (ITU-R 601 luma)" if c == 1 else "")
    elif str(spec) in ("synthetic", "synthetic-verify"):
        if str(spec) == "synthetic":
            reporter.warn("--calib synthetic: calibrating on random noise gives poor quantization scales; "
                          "use real images (--calib DIR) for a deployable model")
        rng = np.random.default_rng(seed)
        arr = pre.apply(rng.uniform(0.0, 255.0, (want, h, w, c)).astype(np.float32))
        kind, source, found, skipped = "synthetic", "synthetic", want, 0
        desc = "uniform noise pixels, " + pre.describe()
    else:
        path = Path(spec)
        if not path.exists():
            raise EdgecvError(f"--calib: no such file or folder. Received: {str(spec)!r}")
        if path.is_dir():
            arr, found, skipped = _load_dir(path, (h, w, c), pre, want, seed, reporter)
            kind, source = "dir", str(path)
            desc = describe_preprocessing(pre, (h, w)) + (", grayscale (ITU-R 601 luma)" if c == 1 else "")
        elif path.suffix.lower() in (".npy", ".npz"):
            arr, found = _load_array(path, (h, w, c), want, seed)
            skipped = 0
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
    _check_range(summary, pre, reporter)
    return CalibrationData(calib=calib, holdout=held, summary=summary)


def precheck(spec: str | os.PathLike | None) -> None:
    """Checks of ``--calib`` that need no model (run before the slow model load)."""
    if spec is None or str(spec) == "synthetic":
        return
    path = Path(spec)
    if not path.exists():
        raise EdgecvError(f"--calib: no such file or folder. Received: {str(spec)!r}")
    if path.is_dir():
        _folder_images(path)
    elif path.suffix.lower() not in (".npy", ".npz"):
        raise EdgecvError(f"--calib: expected a folder of JPEG/PNG images, a .npy/.npz file or 'synthetic'. "
                          f"Received: {str(spec)!r}")




# ITU-R 601-2 luma, the weights of Pillow's convert("L") (used for 1-channel models).
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _to_channels(pixels: np.ndarray, c: int) -> np.ndarray:
    if c == 3:
        return pixels
    if c == 1:
        return (pixels @ _LUMA)[..., None].astype(np.float32)
    raise EdgecvError(f"built-in sample images are RGB; the model takes {c} channels: pass --calib FILE.npy")


def _check_range(s: CalibrationSummary, pre: InputPreprocessing, reporter: Reporter) -> None:
    lo, hi = pre.range
    span = hi - lo
    vlo, vhi = s.value_range
    if s.kind in ("npy", "npz") and (vlo < lo - 0.5 * span or vhi > hi + 0.5 * span or vhi - vlo < 0.05 * span):
        reporter.warn(f"--calib: values span [{vlo:.3g}, {vhi:.3g}] but this model expects inputs in "
                      f"[{lo:g}, {hi:g}]; check the preprocessing")


def _folder_images(folder: Path) -> list[Path]:
    """The JPEG/PNG files below ``folder``, sorted; one ``--calib`` line when it cannot be read or has none."""
    try:
        files = [p for p in folder.rglob("*") if p.is_file()]
    except OSError as exc:
        raise EdgecvError(f"--calib: cannot read folder {str(folder)!r}: {exc.strerror}") from None
    images = sorted(p for p in files if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise EdgecvError(f"--calib: folder is empty. Received: {str(folder)!r}")
    if not images:
        raise EdgecvError(f"--calib: no JPEG or PNG images in folder {str(folder)!r} ({len(files)} other file(s))")
    return images




class ImageTooLarge(EdgecvError):
    """An image whose header declares more pixels than the limit (never decoded)."""


def _load_dir(folder: Path, shape: tuple[int, int, int], pre: InputPreprocessing, want: int, seed: int,
              reporter: Reporter) -> tuple[np.ndarray, int, int]:
    h, w, c = shape
    if c not in (1, 3):
        raise EdgecvError(f"--calib: the model takes {c} input channels and image folders give 1 (grayscale) or "
                          f"3 (RGB): pass a preprocessed .npy/.npz of shape (N, {h}, {w}, {c}). "
                          f"Received: {str(folder)!r}")
    images = _folder_images(folder)
    from edgecv.validate import check_sample_memory

    check_sample_memory(min(want, len(images)), shape, f"--samples + --verify-samples ({min(want, len(images))} "
                        f"of {len(images)} images in {str(folder)!r})")
    order = np.random.default_rng(seed).permutation(len(images))
    out: list[np.ndarray] = []
    bad: list[str] = []
    big: list[str] = []
    limit = image_pixel_limit()
    with reporter.task("reading calibration images", total=min(want, len(images))) as advance:
        for idx in order:
            if len(out) >= want:
                break
            try:
                out.append(read_image(images[idx], (h, w), c, max_pixels=limit))
                advance(1)
            except ImageTooLarge as exc:
                big.append(str(exc))
            except Exception:  # noqa: BLE001 - any decoder failure means "unreadable image"
                bad.append(printable(images[idx].name))
    if big:
        more = f" (and {len(big) - 1} more)" if len(big) > 1 else ""
        reporter.warn(f"--calib: skipped {len(big)} image(s) over the pixel limit: {big[0]}{more}")
    if not out:
        why = f"; {printable(big[0])}" if big else ""
        raise EdgecvError(f"--calib: none of the {len(images)} image(s) in {str(folder)!r} could be read{why}")
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        reporter.warn(f"--calib: skipped {len(bad)} unreadable image(s): {shown}")
    return pre.apply(np.stack(out)), len(images), len(bad) + len(big)


_PIL_LIMIT_LOCK = threading.Lock()


def _open_bounded(path: Path, limit: int):
    """``Image.open`` (lazy: reads the header only) with Pillow's own bomb check replaced by ``limit``."""
    import warnings

    from PIL import Image

    with _PIL_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None  # checked below, against edgecv's limit, with a message that says how
        try:
            im = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = old
    wi, hi = im.size
    if wi * hi > limit:
        im.close()
        raise ImageTooLarge(f"{printable(str(path))!r} declares {wi}x{hi} = {wi * hi:,} pixels, over the limit of "
                            f"{limit:,} (not decoded; raise it with {MAX_IMAGE_PIXELS_ENV}=N)")
    return im


def read_image(path: Path, size: tuple[int, int], channels: int = 3, max_pixels: int | None = None) -> np.ndarray:
    """One image file -> float32 (H, W, C) pixels 0..255: center crop to the output's aspect ratio, bilinear
    resize. 16-bit grayscale PNGs are scaled to 0..255 (x * 255 / 65535). The header's declared size is checked
    against ``max_pixels`` (default: ``EDGECV_MAX_IMAGE_PIXELS`` or 64 M) before anything is decoded."""
    from PIL import Image

    if channels not in (1, 3):
        raise EdgecvError(f"images give 1 or 3 channels. Received: channels={channels!r}")
    limit = image_pixel_limit() if max_pixels is None else max_pixels
    with _open_bounded(path, limit) as im:
        im.load()
        if im.mode.startswith("I;16") or im.mode in ("I", "F"):
            # 16-bit (or 32-bit) grayscale: Pillow's convert("L") would clip at 255; scale the 16-bit range.
            a = np.asarray(im, dtype=np.float32)
            peak = 65535.0 if im.mode != "F" and (im.mode.startswith("I;16") or a.max(initial=0) > 255) else 255.0
            im = Image.fromarray(np.clip(a * (255.0 / peak), 0.0, 255.0).astype(np.float32), mode="F")
        else:
            im = im.convert("RGB" if channels == 3 else "L")
        wi, hi = im.size
        th, tw = size
        if wi * th > hi * tw:  # wider than the output: crop the width
            cw, ch = max(1, round(hi * tw / th)), hi
        else:
            cw, ch = wi, max(1, round(wi * th / tw))
        left, top = (wi - cw) // 2, (hi - ch) // 2
        im = im.crop((left, top, left + cw, top + ch)).resize((tw, th), Image.BILINEAR)
        arr = np.asarray(im, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] == 1 and channels == 3:
        arr = np.repeat(arr, 3, axis=-1)
    if arr.shape[-1] != channels:
        raise ValueError(f"expected {channels} channels")
    return arr


def _draw(n: int, want: int, seed: int) -> np.ndarray:
    """A seeded subset of ``want`` of ``n`` rows, in file order."""
    rng = np.random.default_rng(seed)
    if n <= 10_000_000:
        order = rng.permutation(n)[:want]
    else:  # never materialize a permutation of a huge row count
        order = rng.choice(n, size=min(want, n), replace=False)
    return np.sort(order)


def _npy_header(fp, what: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype from a .npy header (the data is not read)."""
    from numpy.lib import format as npf

    try:
        version = npf.read_magic(fp)
        if version == (1, 0):
            return npf.read_array_header_1_0(fp)
        if version == (2, 0):
            return npf.read_array_header_2_0(fp)
        return npf._read_array_header(fp, version)  # noqa: SLF001 - version 3.0 (utf-8 field names)
    except Exception as exc:  # noqa: BLE001 - numpy's header parser raises ValueError, SyntaxError, TokenError ...
        raise EdgecvError(f"--calib: cannot read {what} as a NumPy array: {one_line(exc)[:200]}") from None


def _check_header(shape: tuple[int, ...], dtype: np.dtype, want_shape: tuple[int, int, int], what: str) -> None:
    if dtype.hasobject or not np.issubdtype(dtype, np.floating):
        raise EdgecvError(f"--calib: expected a float array (already preprocessed). "
                          f"Received: dtype={dtype} in {what}")
    want = "(N, " + ", ".join(map(str, want_shape)) + ")"
    if len(shape) != 4 or tuple(shape[1:]) != tuple(want_shape) or shape[0] < 1:
        raise EdgecvError(f"--calib: expected an array of shape {want} for this model. "
                          f"Received: shape={tuple(shape)} in {what}")


def _load_array(path: Path, shape: tuple[int, int, int], want: int, seed: int) -> tuple[np.ndarray, int]:
    """A seeded subset of ``want`` rows of a .npy/.npz and the file's row count, bounded before reading:
    the header's shape and dtype are checked first; a .npy header must match the file's size and only the
    drawn rows are read (memory-mapped); a .npz member's declared uncompressed size must be within
    ``EDGECV_MAX_ARRAY_BYTES``."""
    import zipfile

    shown = repr(str(path))
    limit = array_byte_limit()
    if path.suffix.lower() == ".npy" or not zipfile.is_zipfile(path):
        try:
            with open(path, "rb") as fp:
                dims, fortran, dtype = _npy_header(fp, shown)
                offset = fp.tell()
                size = os.fstat(fp.fileno()).st_size
        except OSError as exc:
            raise EdgecvError(f"--calib: cannot read {shown}: {exc.strerror}") from None
        _check_header(dims, dtype, shape, shown)
        declared = int(np.prod(dims, dtype=np.float64)) * dtype.itemsize
        if declared > size - offset:
            raise EdgecvError(f"--calib: {shown} declares shape {tuple(dims)} {dtype} ({declared:,} bytes) but "
                              f"holds {size - offset:,} bytes of data (truncated or a false header)")
        idx = _draw(dims[0], want, seed)
        if len(idx) * (declared // dims[0]) > limit:
            raise EdgecvError(f"--calib: reading {len(idx)} rows of {shown} takes "
                              f"{len(idx) * (declared // dims[0]):,} bytes, over the limit of {limit:,} "
                              f"(raise it with {MAX_ARRAY_BYTES_ENV}=N, or lower --samples)")
        try:
            mm = np.load(path, mmap_mode="r", allow_pickle=False)
            arr = np.array(mm[idx], dtype=np.float32)
            del mm
        except (OSError, ValueError, EOFError) as exc:
            raise EdgecvError(f"--calib: cannot read {shown} as a NumPy array: {exc}") from None
        found = int(dims[0])
    else:
        try:
            with zipfile.ZipFile(path) as zf:
                members = {n[:-4] if n.endswith(".npy") else n: n for n in zf.namelist()}
                keys = list(members)
                if len(keys) == 1:
                    key = keys[0]
                elif "x" in keys or "images" in keys:
                    key = "x" if "x" in keys else "images"
                else:
                    raise EdgecvError(f"--calib: {shown} holds several arrays {keys}; name the images 'x'")
                info = zf.getinfo(members[key])
                if info.file_size > limit:
                    raise EdgecvError(f"--calib: array {key!r} of {shown} declares {info.file_size:,} bytes "
                                      f"uncompressed (from {info.compress_size:,}), over the limit of {limit:,} "
                                      f"(not decompressed; raise it with {MAX_ARRAY_BYTES_ENV}=N)")
                with zf.open(info) as fp:
                    dims, fortran, dtype = _npy_header(fp, f"array {key!r} of {shown}")
                    _check_header(dims, dtype, shape, shown)
                    declared = int(np.prod(dims, dtype=np.float64)) * dtype.itemsize
                    if declared > info.file_size:
                        raise EdgecvError(f"--calib: array {key!r} of {shown} declares shape {tuple(dims)} "
                                          f"({declared:,} bytes) in a member of {info.file_size:,} bytes "
                                          f"(a false header)")
                with zf.open(info) as fp:
                    from numpy.lib import format as npf

                    full = npf.read_array(fp, allow_pickle=False)
        except EdgecvError:
            raise
        except Exception as exc:  # noqa: BLE001 - zipfile/zlib on a damaged member: BadZipFile, zlib.error, ...
            raise EdgecvError(f"--calib: cannot read {shown} as a NumPy array: {one_line(exc)[:200]}") from None
        found = len(full)
        arr = np.asarray(full[_draw(len(full), want, seed)], dtype=np.float32)
    if not np.isfinite(arr).all():
        raise EdgecvError(f"--calib: the array holds NaN or infinite values: {shown}")
    return arr, found
