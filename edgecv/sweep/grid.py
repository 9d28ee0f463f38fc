"""The sweep grid: comma-separated option lists parsed and validated, expanded into points.

A *point* is one model configuration converted to one precision and format: the unit that is built,
converted, verified and profiled, and cached. Devices are not part of a point: predictions for each
``--device`` are computed from the point's static profile (cheap, pure Python), so adding a device to a
finished sweep costs no conversion.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from edgecv import formats as _formats
from edgecv.errors import EdgecvError, suggest

MAX_POINTS_WITHOUT_YES = 500
PRECISIONS = _formats.PRECISIONS
FORMATS = tuple(_formats.FORMATS)
SUPPORTED = {f.name: f.precisions for f in _formats.FORMATS.values()}  # formats x precisions the converter supports
SCHEMA = "edgecv.sweep.point/v1"


def _items(opt: str, text: str | None) -> list[str]:
    """``"a,b,c"`` -> ["a", "b", "c"]; empty items (``"0.5,,x"``, ``"0.5,"``) are an error naming the option."""
    if text is None:
        return []
    if not text.strip():
        raise EdgecvError(f"{opt}: empty list. Received: {text!r}")
    items = [t.strip() for t in text.split(",")]
    if any(not t for t in items):
        raise EdgecvError(f"{opt}: empty item in the list (expected values separated by single commas). "
                          f"Received: {text!r}")
    return items


def _dedup(values: list) -> list:
    out: list = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def _parse_numbers(opt: str, text: str | None, kind: type, noun: str, bound: str, ok) -> list:
    """Comma-separated ``kind`` values that satisfy ``ok``, deduplicated; one-line errors naming ``opt``."""
    article = "an" if noun[0] in "aeiou" else "a"
    out = []
    for t in _items(opt, text):
        try:
            v = kind(t)
        except ValueError:
            raise EdgecvError(f"{opt}: expected {noun}s separated by commas; {t!r} is not {article} {noun}. "
                              f"Received: {text!r}") from None
        if not ok(v):
            raise EdgecvError(f"{opt}: expected {noun}s {bound}; got {t!r}. Received: {text!r}")
        out.append(v)
    return _dedup(out)


def parse_floats(opt: str, text: str | None) -> list[float]:
    return _parse_numbers(opt, text, float, "number", "> 0", lambda v: math.isfinite(v) and v > 0)


def parse_ints(opt: str, text: str | None) -> list[int]:
    return _parse_numbers(opt, text, int, "integer", ">= 1", lambda v: v >= 1)


def parse_choices(opt: str, text: str | None, choices: tuple[str, ...] | list[str]) -> list[str]:
    out = []
    for t in _items(opt, text):
        if t not in choices:
            raise EdgecvError(f"{opt}: unknown value {t!r}; expected one of {', '.join(choices)}."
                              f"{suggest(t, choices)} Received: {text!r}")
        out.append(t)
    return _dedup(out)


def parse_devices(text: str | None) -> list[str]:
    """Device ids, each checked against ``device_profiles/`` (unknown: one line with close names)."""
    from edgecv.devices.profile import device_ids, load_profile

    names = _items("--device", text)
    known = device_ids()
    for d in names:
        if d not in known:
            hint = suggest(d, known) or f" Known devices: {', '.join(known)}."
            raise EdgecvError(f"--device: unknown device {d!r}.{hint} Received: {text!r}")
        load_profile(d)  # a broken profile file fails here, before any work
    return _dedup(names)


@dataclass(frozen=True)
class Point:
    """One model configuration at one precision and format."""

    family: str  # registry family id: mobilenet_v1, mobilenet_v2, efficientnet, efficientnet_lite
    model: str  # registry name, e.g. mobilenet_v1_0.50_160
    width: float  # alpha (MobileNets) or width coefficient (EfficientNets)
    resolution: int
    variant: str | None
    precision: str
    format: str

    @property
    def id(self) -> str:
        return f"{self.model}_{self.precision}_{self.format}"

    def config(self):
        from edgecv.builders.registry import get_config

        return get_config(self.model)


@dataclass(frozen=True)
class SweepSpec:
    """Everything that decides what a sweep computes (the CLI options, parsed)."""

    family: str  # the CLI family name (mobilenet, mobilenet_v2, efficientnet, efficientnet_lite)
    models: tuple[str, ...]  # registry names, in grid order
    precisions: tuple[str, ...]
    formats: tuple[str, ...] = ("tflite",)
    devices: tuple[str, ...] = ()
    calib: str | None = None  # None: scikit-image's sample photos
    samples: int = 100  # int8 calibration samples
    verify_samples: int = 16  # held-out samples per artifact (the CLI's --verify-samples default)
    measure_host: bool = False
    host_threads: int | None = None
    host_runs: int = 20
    host_min_time_s: float = 0.5
    threads: int | None = None  # threads of the device predictions (None: the device's default)
    points: tuple[Point, ...] = field(default=(), compare=False)
    # trained models: ``.keras`` files (model name, path, sha256 of the content), or the registry models built
    # with a weights file (path, sha256 of the content); both content digests are part of the points' keys
    files: tuple[tuple[str, str, str], ...] = ()
    weights: str | None = None
    weights_sha256: str | None = None

    def file_of(self, model: str) -> tuple[str, str] | None:
        """(path, sha256) of the ``.keras`` file behind ``model``, or None for a registry model."""
        for name, path, digest in self.files:
            if name == model:
                return path, digest
        return None

    def conversion_options(self) -> dict[str, Any]:
        """The options that change a point's result (part of its cache key)."""
        return {"calib": self.calib, "samples": self.samples, "verify_samples": self.verify_samples,
                "measure_host": self.measure_host, "host_threads": self.host_threads,
                "host_runs": self.host_runs, "host_min_time_s": self.host_min_time_s}


def build_spec(family: str, *, alpha: str | None = None, resolution: str | None = None,
               variant: str | None = None, precision: str | None = "float32,float16,int8",
               fmt: str | None = "tflite", device: str | None = None,
               combos: tuple[tuple[str, str], ...] | None = None, classes: int | None = None,
               weights: str | None = None, **options: Any) -> SweepSpec:
    """Parse the CLI's comma-separated lists into a validated :class:`SweepSpec` (EdgecvError on bad input).

    ``combos``: explicit (precision, format) pairs instead of every supported precision x format.
    ``classes``: output classes of the registry models (default 1000). ``weights``: a Keras weights file
    (``.h5``/``.weights.h5``, read as ``edgecv build --weights`` reads it) loaded into the grid's one model.
    """
    from edgecv.builders.arch import family_by_cli_name
    from edgecv.builders.registry import config_for

    fam = family_by_cli_name(family)
    alphas = parse_floats("--alpha", alpha) if alpha is not None else []
    resolutions = parse_ints("--resolution", resolution) if resolution is not None else []
    variants = _items("--variant", variant) if variant is not None else []
    precisions = parse_choices("--precision", precision, PRECISIONS)
    formats = parse_choices("--format", fmt, FORMATS)
    devices = parse_devices(device) if device is not None else []

    if fam.has_named_variants:
        if alphas:
            raise EdgecvError(f"--alpha: {fam.cli} is scaled with --variant. Received: {alpha!r}")
        variants = _dedup(variants) or [fam.published_variants[0]]
        knobs = [dict(variant=v, resolution=r) for v in variants for r in (resolutions or [None])]
    else:
        if variants:
            raise EdgecvError(f"--variant: {fam.cli} is scaled with --alpha. Received: {variant!r}")
        knobs = [dict(alpha=a, resolution=r) for a in (alphas or [1.0]) for r in (resolutions or [None])]
    configs = []
    for k in knobs:
        if classes is not None:
            k["classes"] = classes
        cfg = config_for(family, **k)  # validates (EdgecvError naming the option and value)
        if cfg.name not in [c.name for c in configs]:
            configs.append(cfg)

    # the samples every point draws (and, without --calib, the photos written once): bounded by memory up front
    from edgecv.validate import check_sample_memory

    samples = options.get("samples", SweepSpec.samples)
    verify = options.get("verify_samples", SweepSpec.verify_samples)
    shapes = [tuple(c.input_shape) for c in configs]
    if options.get("calib") is None:
        shapes.append((256, 256, 3))  # edgecv.sweep.api.prepare_calibration's photos
    if isinstance(samples, int) and isinstance(verify, int):
        check_sample_memory(samples + verify, max(shapes, key=lambda s: s[0] * s[1] * s[2]),
                            f"--samples {samples} + --verify-samples {verify}")
    pairs = [(p, f) for p in precisions for f in formats if p in SUPPORTED[f]]
    if combos is not None:
        for p, f in combos:
            if f not in SUPPORTED or p not in SUPPORTED[f]:
                raise EdgecvError(f"precision {p!r} is not available with format {f!r}")
        pairs = list(combos)
        precisions = _dedup([p for p, _ in pairs])
        formats = _dedup([f for _, f in pairs])
    for p in precisions:
        if not any(pp == p for pp, _ in pairs):
            raise EdgecvError(f"--precision {p} is not available with --format {','.join(formats)} "
                              f"(tflite: {', '.join(SUPPORTED['tflite'])}; onnx: {', '.join(SUPPORTED['onnx'])})")
    points = tuple(Point(family=c.family, model=c.name, width=c.width, resolution=c.resolution, variant=c.variant,
                         precision=p, format=f) for c in configs for p, f in pairs)
    wsha = None
    if weights is not None:
        wsha = _weights_digest(weights)
        if len(configs) > 1:
            raise EdgecvError(f"--weights: one weights file fits one architecture, and the grid has {len(configs)} "
                              f"({', '.join(c.name for c in configs)}); sweep one --alpha/--variant and "
                              f"--resolution. Received: {weights!r}")
    return SweepSpec(family=fam.cli, models=tuple(c.name for c in configs), precisions=tuple(precisions),
                     formats=tuple(formats), devices=tuple(devices), points=points, weights=weights,
                     weights_sha256=wsha, **options)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _weights_digest(weights: str) -> str:
    import os

    if not os.path.isfile(weights):
        raise EdgecvError(f"--weights: no such file. Received: {weights!r}")
    if not weights.lower().endswith((".h5", ".hdf5")):
        raise EdgecvError(f"--weights: expected a Keras weights file (.weights.h5 or .h5). Received: {weights!r}")
    try:
        return _sha256(weights)
    except OSError as exc:
        raise EdgecvError(f"--weights: cannot read {weights!r}: {exc.strerror or exc}") from None


def files_spec(models: str, *, precision: str | None = "float32,float16,int8", fmt: str | None = "tflite",
               device: str | None = None, **options: Any) -> SweepSpec:
    """A sweep of trained models given as ``.keras`` files (``--model a.keras,b.keras``): each file is a point
    source (no build stage), checked here without TensorFlow (``check_keras_file``: a .keras zip, sizes bounded,
    no unsafe member) and loaded later in a child process; its content digest is part of its points' keys."""
    import os
    import re
    from pathlib import Path

    from edgecv.conversion.loading import check_keras_file

    precisions = parse_choices("--precision", precision, PRECISIONS)
    formats = parse_choices("--format", fmt, FORMATS)
    devices = parse_devices(device) if device is not None else []
    files: list[tuple[str, str, str]] = []
    for item in _items("--model", models):
        check_keras_file(Path(item), option="--model")
        if any(os.path.abspath(item) == os.path.abspath(f[1]) for f in files):
            continue
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(item).stem) or "model"
        base, n = name, 2
        while any(f[0] == name for f in files):
            name, n = f"{base}_{n}", n + 1
        try:
            digest = _sha256(item)
        except OSError as exc:
            raise EdgecvError(f"--model: cannot read {item!r}: {exc.strerror or exc}") from None
        files.append((name, item, digest))
    pairs = [(p, f) for p in precisions for f in formats if p in SUPPORTED[f]]
    for p in precisions:
        if not any(pp == p for pp, _ in pairs):
            raise EdgecvError(f"--precision {p} is not available with --format {','.join(formats)} "
                              f"(tflite: {', '.join(SUPPORTED['tflite'])}; onnx: {', '.join(SUPPORTED['onnx'])})")
    points = tuple(Point(family="keras", model=name, width=0.0, resolution=0, variant=None, precision=p, format=f)
                   for name, _, _ in files for p, f in pairs)
    return SweepSpec(family="keras", models=tuple(f[0] for f in files), precisions=tuple(precisions),
                     formats=tuple(formats), devices=tuple(devices), points=points, files=tuple(files), **options)


def check_size(spec: SweepSpec, yes: bool, limit: int = MAX_POINTS_WITHOUT_YES) -> None:
    n = len(spec.points)
    if n > limit and not yes:
        raise EdgecvError(f"the grid has {n} points (models x precisions x formats), more than {limit}; "
                          "pass --yes to run it anyway")


def calib_identity(calib: str | None) -> str:
    """What the calibration data is, for the cache key: 'builtin', 'synthetic', or a digest of the files."""
    if calib is None:
        return "builtin:skimage"
    if calib == "synthetic":
        return "synthetic"
    from pathlib import Path

    p = Path(calib)
    h = hashlib.sha256()
    files = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(p) if p.is_dir() else f.name}:{st.st_size}:{int(st.st_mtime)}\n".encode())
    return f"{p.resolve()}#{h.hexdigest()[:16]}"


def point_key(point: Point, spec: SweepSpec, versions: dict[str, str]) -> str:
    """Hash of the point's configuration, the options that change its result, and the tool versions."""
    opts = spec.conversion_options()
    if point.precision in _formats.CALIBRATED:
        opts["calib"] = calib_identity(spec.calib)
    else:  # only full-integer precisions are calibrated: the others do not depend on --calib/--samples
        opts["calib"] = opts["samples"] = None
    if spec.measure_host:
        if opts["host_threads"] is None:
            from edgecv.profiling.api import default_threads

            opts["host_threads"] = default_threads()
    else:
        opts.update(host_threads=None, host_runs=None, host_min_time_s=None)
    src = spec.file_of(point.model)
    if src is not None:
        opts["model_sha256"] = src[1]
    if spec.weights_sha256 is not None:
        opts["weights_sha256"] = spec.weights_sha256
    blob = json.dumps({"schema": SCHEMA, "point": asdict(point), "options": opts, "versions": versions},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()
