"""Measure on the real target: a Linux board over SSH, or an Android phone over ADB.

``profile_target(path, "ssh://pi@raspberrypi.local")`` copies the model and the host profiler's
self-contained ``runner.py`` to a temporary folder on the board, runs it there with the board's Python
and LiteRT (or tflite-runtime), and returns the same ``ProfileResult`` as the host profiler, with
``mode="measured"`` and ``device="ssh://raspberrypi.local"``. ``profile_target(path, "adb:SERIAL",
benchmark_binary="benchmark_model")`` does the same on an Android phone with TensorFlow Lite's
``benchmark_model``. Every failure is an ``EdgecvError`` (one line, exit code 2) raised after the
temporary folder on the target has been removed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgecv.errors import EdgecvError
from edgecv.records import LatencyStats, ProfileResult
from edgecv.validate import int_at_least, non_negative_float

__all__ = ["profile_target", "parse_target"]

TARGET_HELP = "ssh://[user@]host[:port] or adb[:SERIAL]"


def parse_target(target: str):
    """``ssh://...`` -> ``SshTarget``, ``adb[:SERIAL]`` -> ``AdbTarget`` (EdgecvError otherwise)."""
    if not isinstance(target, str) or not target.strip():
        raise EdgecvError(f"--target: expected {TARGET_HELP}. Received: {target!r}")
    target = target.strip()
    if target.startswith("ssh://"):
        from edgecv.targets.ssh import parse_ssh_target

        return parse_ssh_target(target)
    if target == "adb" or target.startswith("adb:"):
        from edgecv.targets.adb import parse_adb_target

        return parse_adb_target(target)
    hint = ""
    if "@" in target and "://" not in target:
        hint = f" Did you mean: ssh://{target}?"
    raise EdgecvError(f"--target: expected {TARGET_HELP}. Received: {target!r}.{hint}")


def _model_format(path: str) -> str:
    ext = Path(path).suffix.lower()
    if ext == ".tflite":
        return "tflite"
    if ext == ".onnx":
        return "onnx"
    if ext == ".keras":
        return "keras"
    raise EdgecvError(f"MODEL: expected a .tflite, .onnx or .keras file. Received: {path!r}")


def _static(path: str) -> Any | None:
    """Static counts from the profiler (``edgecv.profiling.static``) if it is installed, else None."""
    try:
        from edgecv.profiling.static import analyze
    except ImportError:
        return None
    return analyze(path)


def _empty_result(path: str, fmt: str, device: str, sa) -> ProfileResult:
    if sa is None:
        return ProfileResult(model=path, format=fmt, precision="unknown", mode="measured", device=device,
                             macs=None, params=None, weights_bytes=None, file_bytes=os.path.getsize(path),
                             peak_activation_bytes=None)
    return ProfileResult(model=path, format=sa.format, precision=sa.precision, mode="measured", device=device,
                         macs=sa.macs, params=sa.params, weights_bytes=sa.weights_bytes, file_bytes=sa.file_bytes,
                         peak_activation_bytes=sa.peak_activation_bytes, ops=list(sa.ops))


def profile_target(path: str | os.PathLike, target: str, threads: int | None = None, warmup_runs: int = 5,
                   runs: int = 50, min_time_s: float = 1.0, compare_device: str | None = None,
                   save_anchor: str | os.PathLike | None = None, benchmark_binary: str | os.PathLike | None = None,
                   *, cpus: str | None = None, runtime: str | None = None, python: str | None = None,
                   ssh_options: Any = None, budget_ms: float | None = None, anchor_device: str | None = None,
                   timeout_s: float = 1800.0, connect_timeout_s: int = 15, device_dir: str | None = None,
                   ) -> ProfileResult:
    """Measure ``path`` on ``target`` and return a ``ProfileResult`` (``mode="measured"``).

    target: ``ssh://[user@]host[:port][?python=/path/to/python3]`` (a Linux board; the user's SSH config,
        keys and agent, batch mode) or ``adb`` / ``adb:SERIAL`` (an Android phone; needs ``benchmark_binary``).
    threads: inference threads (default: the runner's default over SSH, 1; benchmark_model's default on
        Android); cpus: pin to these cores, e.g. ``"2-3"`` (``taskset`` on Android).
    warmup_runs, runs, min_time_s: as the host profiler: untimed runs, then at least ``runs`` timed runs and
        at least ``min_time_s`` seconds.
    compare_device: a device profile id (``rpi4``): ``result.prediction`` gets the prediction for that device
        next to the measurement and the error (see ``edgecv.targets.anchor.format_comparison``).
    save_anchor: append the measurement to this CSV in published_latency.csv's columns (``anchor_device``,
        default ``compare_device`` or the target, fills the device column).
    python: the target's interpreter (default ``python3``; also ``?python=`` in the URI), e.g. a venv's.
    ssh_options: extra ssh/scp options (list or string), added to ``$EDGECV_SSH_OPTIONS``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise EdgecvError(f"MODEL: no such file: {path!r}")
    fmt = _model_format(path)
    tgt = parse_target(target)
    if threads is not None:
        int_at_least("threads", threads, 1, keyword=True)
    int_at_least("warmup_runs", warmup_runs, 0, keyword=True)
    int_at_least("runs", runs, 1, keyword=True)
    non_negative_float("min_time_s", min_time_s, keyword=True)
    if runtime is not None and runtime not in ("litert", "onnxruntime"):
        raise EdgecvError(f"runtime: expected litert or onnxruntime. Received: runtime={runtime!r}")
    if save_anchor is not None:
        parent = Path(save_anchor).parent
        if not parent.is_dir():
            raise EdgecvError(f"--save-anchor: no such directory: {str(parent)!r}")
    predict = None
    if compare_device is not None:
        try:
            from edgecv.devices.predict import predict_profile as predict
        except ImportError:
            raise EdgecvError("--compare-device is not available in this edgecv install "
                              "(edgecv.devices.predict is missing)") from None

    from edgecv.targets.ssh import SshTarget

    if isinstance(tgt, SshTarget):
        if python is not None:
            from dataclasses import replace

            tgt = replace(tgt, python=python)
        if benchmark_binary is not None:
            raise EdgecvError("--benchmark-binary is for --target adb; over SSH edgecv runs its own runner")
        res = _profile_ssh(path, fmt, tgt, threads, warmup_runs, runs, min_time_s, cpus, runtime, ssh_options,
                           timeout_s, connect_timeout_s)
    else:
        res = _profile_adb(path, fmt, tgt, benchmark_binary, threads, warmup_runs, runs, min_time_s, cpus,
                           timeout_s, device_dir)

    if predict is not None:
        from edgecv.targets.anchor import comparison

        static = _static_for_prediction(res)
        predicted = predict(static, compare_device, (res.runtime or {}).get("threads") or threads, budget_ms)
        res.prediction = {"device": compare_device, **comparison(res, predicted)}
    if save_anchor is not None:
        from edgecv.targets.anchor import anchor_row, append_anchor

        append_anchor(save_anchor, anchor_row(res, device=anchor_device or compare_device))
    return res


def _static_for_prediction(res: ProfileResult) -> ProfileResult:
    """The static part of a measured result, as ``edgecv.profiling.static_profile`` returns it."""
    if res.macs is None:
        raise EdgecvError("--compare-device needs the static analysis (edgecv.profiling.static is missing)")
    return ProfileResult(model=res.model, format=res.format, precision=res.precision, mode="static", device="none",
                         macs=res.macs, params=res.params, weights_bytes=res.weights_bytes, file_bytes=res.file_bytes,
                         peak_activation_bytes=res.peak_activation_bytes, ops=list(res.ops))


def _profile_ssh(path, fmt, tgt, threads, warmup_runs, runs, min_time_s, cpus, runtime, ssh_options,
                 timeout_s, connect_timeout_s) -> ProfileResult:
    if fmt == "keras":
        from edgecv.profiling.api import deployable
    else:
        deployable = None
    if deployable is not None:
        with deployable(path) as (run_path, _):
            return _profile_ssh_file(path, Path(run_path), "tflite", tgt, threads, warmup_runs, runs, min_time_s,
                                     cpus, runtime, ssh_options, timeout_s, connect_timeout_s, converted="keras")
    return _profile_ssh_file(path, Path(path), fmt, tgt, threads, warmup_runs, runs, min_time_s, cpus, runtime,
                             ssh_options, timeout_s, connect_timeout_s)


def _profile_ssh_file(path, run_path: Path, fmt, tgt, threads, warmup_runs, runs, min_time_s, cpus, runtime,
                      ssh_options, timeout_s, connect_timeout_s, converted: str | None = None) -> ProfileResult:
    from edgecv.targets.ssh import measure_over_ssh

    if runtime is not None and (runtime == "onnxruntime") != (fmt == "onnx"):
        raise EdgecvError(f"runtime: {runtime} cannot run a {fmt} model")
    m, info = measure_over_ssh(run_path, tgt, fmt=fmt, runtime=runtime, threads=threads, warmup_runs=warmup_runs,
                               runs=runs, min_time_s=min_time_s, cpus=cpus, ssh_options=ssh_options,
                               timeout_s=timeout_s, connect_timeout_s=connect_timeout_s)
    sa = _static(str(run_path))  # after the run: a connection problem is reported without waiting for this
    res = _empty_result(str(path), fmt, tgt.uri, sa)
    if converted:
        res.file_bytes = os.path.getsize(path)
    return apply_runner_json(res, m, warmup_runs=warmup_runs, min_time_s=min_time_s, converted=converted)


def apply_runner_json(res: ProfileResult, m: dict, warmup_runs: int | None = None, min_time_s: float | None = None,
                      converted: str | None = None) -> ProfileResult:
    """Fill a ProfileResult's measured fields from the runner's JSON object, as the host profiler does."""
    from edgecv.profiling.api import apply_runner_json as fill

    fill(res, m, warmup_runs=warmup_runs, min_time_s=min_time_s, converted=converted)
    res.env["target"] = res.device
    if m.get("inputs"):
        res.env["inputs"] = m["inputs"]
    return res


def _profile_adb(path, fmt, tgt, benchmark_binary, threads, warmup_runs, runs, min_time_s, cpus, timeout_s,
                 device_dir) -> ProfileResult:
    from edgecv.targets.adb import DEVICE_DIR, measure_over_adb

    if fmt != "tflite":
        raise EdgecvError(f"--target adb: benchmark_model runs .tflite files only. Received: {path!r}")
    out, props, serial, _text = measure_over_adb(
        Path(path), tgt, benchmark_binary, threads=threads, warmup_runs=warmup_runs, runs=runs,
        min_time_s=min_time_s, cpus=cpus, device_dir=device_dir or DEVICE_DIR, timeout_s=timeout_s)
    sa = _static(path)
    res = _empty_result(path, fmt, f"adb:{serial}", sa)
    lat = out.latency_ms()
    res.latency_ms = LatencyStats(**lat)
    res.init_ms = out.init_ms
    res.first_inference_ms = out.first_inference_ms
    # benchmark_model reports its max-RSS delta from the tool's start: after init, and after all runs
    res.peak_rss_bytes = out.peak_memory_bytes if out.peak_memory_bytes is not None else out.memory_overall_bytes
    if out.memory_overall_bytes is not None and out.memory_init_bytes is not None:
        res.rss_growth_bytes = out.memory_overall_bytes - out.memory_init_bytes
    res.runtime = {
        "name": "tflite-benchmark_model",
        "version": None,
        "threads": out.threads if out.threads is not None and out.threads > 0 else threads,
        "delegate": ",".join(out.delegates) if out.delegates else "default",
        "warmup_runs": out.warmup.count if out.warmup else warmup_runs,
        "min_time_s": float(min_time_s),
        "warmup_avg_ms": out.warmup_avg_ms,
        "max_ms": out.runs.max_us / 1000.0 if out.runs and out.runs.max_us is not None else None,
        "memory_note": "peak_rss_bytes: benchmark_model's memory footprint (max RSS delta from the tool's start)",
    }
    if cpus:
        res.runtime["cpus"] = cpus
    env = {"target": res.device, "serial": serial, "cpu_model": props.get("soc") or props.get("board"),
           "cores": int(props["cores"]) if props.get("cores", "").isdigit() else None,
           "governor": props.get("governor")}
    env.update({k: v for k, v in props.items() if k not in ("cores", "governor")})
    res.env = env
    return res
