"""Calibration report and profile update: the library behind ``tools/calibrate_devices.py``."""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Any

from edgecv.devices.fit import (DeviceFit, Measurement, calibrate, predict_measurement, read_measurements,
                                spec_only_band)
from edgecv.devices.model import Params
from edgecv.devices.profile import DeviceProfile, load_profile_file

MIN_LOO_ANCHORS = 4


def band_for(fit: DeviceFit, fits: dict[str, DeviceFit]) -> float:
    """The uncertainty band stored with a profile: its LOO median APE with >= 4 anchors; with fewer,
    the larger of its own LOO error and the median over well-anchored devices; spec-only devices get
    the leave-device-out error of the priors."""
    if len(fit.anchors) >= MIN_LOO_ANCHORS and fit.loo_mdape is not None:
        return fit.loo_mdape
    well = [f.loo_mdape for f in fits.values() if len(f.anchors) >= MIN_LOO_ANCHORS and f.loo_mdape is not None]
    typical = statistics.median(well) if well else 0.25
    if fit.anchors:
        return max(fit.loo_mdape or 0.0, typical)
    return spec_only_band(fits)


def report(profiles: list[DeviceProfile], rows: list[Measurement],
           spec_rows: list[Measurement] | None = None) -> tuple[dict[str, Any], dict[str, DeviceFit]]:
    """Fit all profiles and build the JSON report (per-device LOO errors, prior-only errors, spec-only checks)."""
    fits = calibrate(profiles, rows)
    by_id = {p.id: p for p in profiles}
    devices = {}
    for did, f in fits.items():
        devices[did] = {
            "method": f.method, "runtime": f.runtime, "anchors": len(f.anchors),
            "loo_mdape": _r(f.loo_mdape), "loo_max_ape": _r(max(f.loo_ape) if f.loo_ape else None),
            "loo_checked": len(f.anchors) >= MIN_LOO_ANCHORS,
            "prior_only_mdape": _r(f.prior_mdape), "band": _r(band_for(f, fits)),
            "coefficients": params_dict(f.params),
            "loo": [{"model": m.model, "precision": m.precision, "threads": m.threads, "measured_ms": m.latency_ms,
                     "predicted_ms": _r(p, 3), "ape": _r(e)}
                    for m, p, e in zip(f.anchors, f.loo_pred_ms, f.loo_ape)],
            "prior_only": [{"model": m.model, "precision": m.precision, "threads": m.threads,
                            "measured_ms": m.latency_ms, "predicted_ms": _r(p, 3)}
                           for m, p in zip(f.anchors, f.prior_pred_ms)],
        }
    spec = []
    for m in spec_rows or []:
        f = fits.get(m.device)
        if f is None:
            continue
        pred = predict_measurement(by_id[m.device], f.params, m)
        spec.append({"device": m.device, "runtime": m.runtime, "model": m.model, "precision": m.precision,
                     "arith": m.arith or m.precision, "threads": m.threads, "measured_ms": m.latency_ms,
                     "predicted_ms": _r(pred, 3), "ratio": _r(pred / m.latency_ms),
                     "fitted_on_device": f.method == "nnls", "note": m.note})
    out = {"devices": devices, "spec_only_band": _r(spec_only_band(fits)), "spec_only_checks": spec}
    return out, fits


def params_dict(p: Params) -> dict[str, float]:
    return {"conv_fp32_peak_fraction": _r(p.conv_fp32), "dw_fp32_peak_fraction": _r(p.dw_fp32),
            "conv_int8_peak_fraction": _r(p.conv_int8), "dw_int8_peak_fraction": _r(p.dw_int8),
            "elementwise_bytes_per_cycle": _r(p.elementwise), "overhead_us_per_op": _r(p.overhead_s * 1e6),
            "thread_efficiency": _r(p.thread_efficiency)}


def _r(x, nd: int = 4):
    return None if x is None else round(float(x), nd)


# --- writing profiles ------------------------------------------------------------------------------

_HEADER = re.compile(r"^\s*\[\[?([A-Za-z0-9_.-]+)\]\]?\s*(#.*)?$")


def _sections(text: str) -> list[tuple[str | None, list[str]]]:
    out: list[tuple[str | None, list[str]]] = [(None, [])]
    for line in text.splitlines():
        m = _HEADER.match(line)
        if m:
            out.append((line.strip(), [line]))
        else:
            out[-1][1].append(line)
    return out


def _toml_str(s: str) -> str:
    import json

    return json.dumps(s, ensure_ascii=False)


def prediction_block(fit: DeviceFit, band: float, csv_name: str) -> list[str]:
    c = params_dict(fit.params)
    how = (f"NNLS on {len(fit.anchors)} anchors ({fit.runtime}) with priors pooled from similar devices"
           if fit.method == "nnls" else "priors: peak throughput of the clusters x efficiencies fitted on similar "
           "devices (no anchors of its own)")
    lines = ["[prediction]",
             "# Written by tools/calibrate_devices.py --write; the latency model is documented in",
             "# edgecv/devices/model.py and docs/prediction.md.",
             f"runtime = {_toml_str(fit.runtime)}", f"method = {_toml_str(fit.method)}"]
    lines += [f"{k} = {v}" for k, v in c.items()]
    lines += [f"loo_mdape = {round(band, 4)}  # the +/- band: leave-one-out median APE"
              + (" (spec-only: leave-device-out error of the priors)" if fit.method == "prior" else ""),
              f"anchors_fitted = {len(fit.anchors)}",
              f"source = {_toml_str(how + '; data: ' + csv_name)}", ""]
    return lines


def anchor_blocks(fit: DeviceFit) -> list[list[str]]:
    out = []
    for m in fit.anchors:
        b = ["[[anchors]]", f"model = {_toml_str(m.model)}", f"precision = {_toml_str(m.precision)}",
             f"threads = {m.threads}", f"runtime = {_toml_str(m.runtime)}", f"latency_ms = {float(m.latency_ms)}",
             f"source = {_toml_str(m.source or 'calibration CSV')}"]
        if m.note:
            b.append(f"note = {_toml_str(m.note)}")
        out.append(b + [""])
    return out


def updated_profile_text(text: str, fit: DeviceFit, band: float, csv_name: str) -> str:
    """``text`` with its [prediction] table and [[anchors]] replaced; everything else kept as written."""
    secs = _sections(text)
    out: list[str] = []
    done = False
    for header, lines in secs:
        if header in ("[[anchors]]",):
            continue
        if header == "[prediction]":
            out += prediction_block(fit, band, csv_name)
            for b in anchor_blocks(fit):
                out += b
            done = True
            continue
        out += lines
    if not done:
        out += [""] + prediction_block(fit, band, csv_name)
        for b in anchor_blocks(fit):
            out += b
    return "\n".join(out).rstrip("\n") + "\n"


def write_profiles(profiles: list[DeviceProfile], fits: dict[str, DeviceFit], csv_name: str,
                   only: set[str] | None = None) -> list[Path]:
    """Rewrite the [prediction] tables (atomically), then check each file loads back."""
    from edgecv.fileio import write_text_atomic

    written = []
    for prof in profiles:
        if only and prof.id not in only:
            continue
        fit = fits[prof.id]
        path = Path(prof.path)
        new = updated_profile_text(path.read_text(encoding="utf-8"), fit, band_for(fit, fits), csv_name)
        write_text_atomic(path, new)
        load_profile_file(path)  # raises ProfileError if the rewrite broke it
        written.append(path)
    return written


def load_rows(path: str | Path) -> list[Measurement]:
    return read_measurements(path)
