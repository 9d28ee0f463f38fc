"""Measured-vs-predicted comparison and calibration anchors (rows of ``published_latency.csv``'s format).

A user with a real board runs ``edgecv profile MODEL --target ssh://pi@board --save-anchor anchors.csv``
on a few models; each run appends one row that the device-profile fit reads like the published anchors.
"""

from __future__ import annotations

import csv
import io
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgecv.errors import EdgecvError
from edgecv.fileio import atomic_path, output_lock
from edgecv.records import DeviceComparison

ANCHOR_COLUMNS = ("device", "runtime", "model", "width", "resolution", "precision", "threads", "latency_ms",
                  "note", "source")


def measured_ms(result) -> float | None:
    """The latency a measurement is summarised by: the median when known, else the mean."""
    lat = result.latency_ms
    if lat is None:
        return None
    return lat.p50 if lat.p50 is not None else lat.mean


def model_identity(path: str | os.PathLike, input_shape: list[int] | None = None) -> dict[str, Any]:
    """Family, width and resolution from a registry name in the file name (``mobilenet_v1_0.50_224_int8.tflite``),
    else the file stem and the input resolution."""
    stem = Path(path).stem
    parts = stem.split("_")
    try:
        from edgecv.builders.registry import get_config
    except ImportError:  # builders not installed: fall back to the stem
        get_config = None
    if get_config is not None:
        for n in range(len(parts), 0, -1):
            name = "_".join(parts[:n])
            try:
                cfg = get_config(name)
            except Exception:  # noqa: BLE001 - any unparsable prefix simply does not name a model
                continue
            # the columns edgecv.devices reads: mobilenet_v1,0.5,224 / efficientnet,b0,224
            return {"model": cfg.family, "width": cfg.variant or cfg.width, "resolution": cfg.resolution}
    res = None
    if input_shape and len(input_shape) == 4:
        # NHWC (TFLite) or NCHW (ONNX): the spatial size is the repeated dimension
        h, w = (input_shape[1], input_shape[2]) if input_shape[3] in (1, 3, 4) else (input_shape[2], input_shape[3])
        res = h if h == w else f"{h}x{w}"
    return {"model": stem, "width": "", "resolution": res if res is not None else ""}


def runtime_label(result) -> str:
    rt = result.runtime
    name = rt.name or "unknown"
    ver = rt.version
    label = f"{name}-{ver}" if ver and ver != "?" else str(name)
    delegate = str(rt.delegate or "")
    if delegate.startswith("xnnpack") and "xnnpack" not in label:
        label += "-xnnpack"
    return label


def anchor_row(result, device: str | None = None, source: str | None = None) -> dict[str, Any]:
    """One row in published_latency.csv's columns for a measured ProfileResult."""
    ms = measured_ms(result)
    if ms is None:
        raise EdgecvError("--save-anchor: the result has no measured latency")
    inputs = result.env.inputs or ()
    shape = list(inputs[0].shape) if inputs else None
    ident = model_identity(result.model, shape)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    lat = result.latency_ms
    stat = "median" if lat.p50 is not None else "mean"
    note = f"edgecv measured {stat} of {lat.runs} runs on {result.device}"
    cpu = result.env.cpu_model or result.env.board
    if cpu:
        note += f" ({cpu})"
    return {
        "device": device or result.device,
        "runtime": runtime_label(result),
        "model": ident["model"],
        "width": ident["width"],
        "resolution": ident["resolution"],
        "precision": result.precision,
        "threads": "" if result.runtime.threads is None else result.runtime.threads,
        "latency_ms": f"{ms:.4g}",
        "note": note,
        "source": source or f"edgecv profile --target {result.device} ({when})",
    }


def core_names(text: str | None) -> set[str]:
    """Arm core names in a free text: ``"kryo-385-gold (cortex-a75)"`` -> ``{"cortex-a75"}``."""
    t = re.sub(r"\s+", "-", str(text or "").lower())
    return set(re.findall(r"(?:cortex-[ax]\d+[a-z]*|neoverse-[nvx]\d+)", t))


def check_anchor_core(result, device: str | None, force: bool = False) -> None:
    """Refuse (one line) to save a measurement as ``device``'s anchor when the target's core is not that
    device's: an x86 host saved as an rpi4 row would skew its calibration without a word."""
    if not device or force:
        return
    try:
        from edgecv.devices.profile import load_profile

        prof = load_profile(device)
    except Exception:  # noqa: BLE001 - not a device profile id: nothing to check against
        return
    if prof.kind == "host":
        return
    want = set()
    for c in prof.clusters:
        want |= core_names(c.core)
    if not want:
        return
    env = result.env
    seen = env.core or env.cpu_model or "an unknown CPU"
    have = core_names(seen)
    if want & have:
        return
    cores = ", ".join(sorted({c.core for c in prof.clusters}))
    raise EdgecvError(f"--save-anchor: the target's CPU is {seen} ({env.machine or '?'}), not {device}'s "
                      f"{cores}: refusing to save this measurement as a {device} anchor (--force saves it anyway)")


def append_anchor(path: str | os.PathLike, row: dict[str, Any]) -> Path:
    """Append ``row`` to the CSV at ``path`` (created with a header if missing), atomically: the file is
    rewritten beside itself and renamed, so a crash never leaves half a row."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise EdgecvError(f"--save-anchor: not a file: {str(path)!r}")
    if not path.parent.is_dir():
        raise EdgecvError(f"--save-anchor: no such directory: {str(path.parent)!r}")
    try:
        with output_lock(path):  # read, check and rewrite as one step: concurrent --save-anchor runs lose no row
            old = path.read_text(encoding="utf-8") if path.exists() else ""
            if old.strip():
                header = next(csv.reader(io.StringIO(old)))
                if tuple(h.strip() for h in header) != ANCHOR_COLUMNS:
                    raise EdgecvError(f"--save-anchor: {str(path)!r} has columns {','.join(header)!r}, expected "
                                      f"{','.join(ANCHOR_COLUMNS)!r}")
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=ANCHOR_COLUMNS, lineterminator="\n")
            if not old.strip():
                w.writeheader()
            w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in ANCHOR_COLUMNS})
            sep = "" if not old or old.endswith("\n") else "\n"
            with atomic_path(path) as tmp:
                tmp.write_text(old + sep + buf.getvalue(), encoding="utf-8")
    except OSError as exc:
        raise EdgecvError(f"--save-anchor: cannot write {str(path)!r}: {exc.strerror}") from None
    return path


def comparison(result, predicted, device: str) -> DeviceComparison:
    """A measured result compared with ``device``'s prediction (a predicted ``ProfileResult``)."""
    pred = getattr(predicted, "prediction", None)
    return DeviceComparison.of(device, measured_ms(result), pred, predicted_ms=_predicted_ms(predicted))


def _predicted_ms(predicted) -> float | None:
    lat = getattr(predicted, "latency_ms", None)
    if lat is None:
        return None
    return lat.p50 if lat.p50 is not None else lat.mean


def format_comparison(result) -> str:
    """``measured 41.2 ms (median, 50 runs) on ssh://pi4 | predicted rpi4 38.0 ms | error -7.8%``."""
    c = result.comparison
    if c is None:
        return f"measured on {result.device}"
    meas, pred = c.measured_ms, c.predicted_ms
    text = f"measured {meas:.3g} ms on {result.device}" if meas is not None else f"measured on {result.device}"
    if pred is not None:
        text += f" | predicted {c.device} {pred:.3g} ms".replace("  ", " ")
    if c.error_pct is not None:
        text += f" | prediction error {c.error_pct:+.1f}%"
    if c.within_band is not None:
        text += " (inside the predicted band)" if c.within_band else " (outside the predicted band)"
    return re.sub(r"\s+", " ", text)
