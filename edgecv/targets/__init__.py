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
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgecv.errors import EdgecvError
from edgecv.records import EnvInfo, InputInfo, ProfileResult, RuntimeInfo, SustainedRun, cpu_indices
from edgecv.validate import MAX_THREADS, int_at_least, non_negative_float

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
    return ProfileResult.from_static(sa, path, mode="measured", device=device)


def profile_target(path: str | os.PathLike, target: str, threads: int | None = None, warmup_runs: int = 5,
                   runs: int = 50, min_time_s: float = 1.0, compare_device: str | None = None,
                   save_anchor: str | os.PathLike | None = None, benchmark_binary: str | os.PathLike | None = None,
                   *, cpus: str | None = None, runtime: str | None = None, python: str | None = None,
                   ssh_options: Any = None, budget_ms: float | None = None, anchor_device: str | None = None,
                   timeout_s: float = 1800.0, connect_timeout_s: int = 15, device_dir: str | None = None,
                   verify: int | None = None, verify_reference: str | os.PathLike | None = None,
                   duration_s: float | None = None, interval_s: float | None = None, op_timings: bool = False,
                   force: bool = False) -> ProfileResult:
    """Measure ``path`` on ``target`` and return a ``ProfileResult`` (``mode="measured"``).

    target: ``ssh://[user@]host[:port][?python=/path/to/python3]`` (a Linux board; the user's SSH config,
        keys and agent, batch mode) or ``adb`` / ``adb:SERIAL`` (an Android phone; needs ``benchmark_binary``).
    threads: inference threads (default: the runner's default over SSH, 1; benchmark_model's default on
        Android); cpus: pin to these cores, e.g. ``"2-3"`` (``taskset`` on Android).
    warmup_runs, runs, min_time_s: as the host profiler: untimed runs, then at least ``runs`` timed runs and
        at least ``min_time_s`` seconds.
    compare_device: a device profile id (``rpi4``): ``result.comparison`` (a ``DeviceComparison``) holds the
        prediction for that device next to the measurement and the error (see
        ``edgecv.targets.anchor.format_comparison``).
    save_anchor: append the measurement to this CSV in published_latency.csv's columns (``anchor_device``,
        default ``compare_device`` or the target, fills the device column).
    python: the target's interpreter (default ``python3``; also ``?python=`` in the URI), e.g. a venv's.
    ssh_options: extra ssh/scp options (list or string), added to ``$EDGECV_SSH_OPTIONS``.
    verify: run this many held-out sample images through the model on the target (SSH) and compare the outputs
        with the host's (``result.target.verify``, see ``edgecv.targets.numerics``); verify_reference: also
        compare with this model on the host (default: the sidecar's source model when it exists).
    duration_s, interval_s: a sustained run (SSH): p50/p90, temperature, frequency and throttling per interval,
        burst vs steady state (``result.target.sustained``).
    op_timings: measured per-op times where the target has a source for them (benchmark_model's op profiling
        over ADB, ONNX Runtime's profiler over SSH), mapped to the static ops and classes
        (``result.target.op_timings``); otherwise the record says why there are none.
    force: save an anchor even when the target's core does not match the anchor device's profile.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise EdgecvError(f"MODEL: no such file: {path!r}")
    fmt = _model_format(path)
    tgt = parse_target(target)
    if threads is not None:
        int_at_least("threads", threads, 1, maximum=MAX_THREADS, keyword=True)
    int_at_least("warmup_runs", warmup_runs, 0, keyword=True)
    int_at_least("runs", runs, 1, keyword=True)
    non_negative_float("min_time_s", min_time_s, keyword=True)
    if runtime is not None and runtime not in ("litert", "onnxruntime"):
        raise EdgecvError(f"runtime: expected litert or onnxruntime. Received: runtime={runtime!r}")
    if save_anchor is not None:
        parent = Path(save_anchor).parent
        if not parent.is_dir():
            raise EdgecvError(f"--save-anchor: no such directory: {str(parent)!r}")
    if verify is not None:
        int_at_least("verify", verify, 1, maximum=1000, keyword=True)
    if duration_s is not None:
        if isinstance(duration_s, bool) or not isinstance(duration_s, (int, float)) or not 0 < duration_s < 7 * 86400:
            raise EdgecvError(f"duration: expected a length > 0 (at most 7 days). Received: {duration_s!r}")
        interval_s = float(interval_s) if interval_s else max(1.0, min(60.0, duration_s / 10.0))
        if not interval_s > 0:
            raise EdgecvError(f"interval: expected a number > 0. Received: {interval_s!r}")
        timeout_s = max(timeout_s, 1.5 * duration_s + 600.0)
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
            tgt = replace(tgt, python=python)
        if benchmark_binary is not None:
            raise EdgecvError("--benchmark-binary is for --target adb; over SSH edgecv runs its own runner")
        extra = _Extras(verify=verify, verify_reference=verify_reference, duration_s=duration_s,
                        interval_s=interval_s, op_timings=op_timings)
        res = _profile_ssh(path, fmt, tgt, threads, warmup_runs, runs, min_time_s, cpus, runtime, ssh_options,
                           timeout_s, connect_timeout_s, extra)
    else:
        for opt, val in (("--verify", verify), ("--duration", duration_s)):
            if val is not None:
                raise EdgecvError(f"{opt} needs an SSH target (over ADB benchmark_model runs the model). "
                                  f"Received: --target {target}")
        res = _profile_adb(path, fmt, tgt, benchmark_binary, threads, warmup_runs, runs, min_time_s, cpus,
                           timeout_s, device_dir, op_timings)

    if predict is not None:
        from edgecv.targets.anchor import comparison

        static = _static_for_prediction(res)
        predicted = predict(static, compare_device, res.runtime.threads or threads, budget_ms)
        res = replace(res, comparison=comparison(res, predicted, compare_device))
        ot = res.target.op_timings
        if ot is not None and ot.available:
            pred = predicted.prediction
            by_class = pred.latency_by_class_ms if pred is not None else None
            if by_class:
                ot = replace(ot, predicted_device=compare_device, predicted_by_class_ms=dict(by_class))
                res = replace(res, target=replace(res.target, op_timings=ot))
    if save_anchor is not None:
        from edgecv.targets.anchor import anchor_row, append_anchor, check_anchor_core

        check_anchor_core(res, anchor_device or compare_device, force)
        append_anchor(save_anchor, anchor_row(res, device=anchor_device or compare_device))
    return res


class _Extras:
    """What else to do in the one SSH run besides the latency measurement."""

    def __init__(self, verify=None, verify_reference=None, duration_s=None, interval_s=None, op_timings=False):
        self.verify, self.verify_reference = verify, verify_reference
        self.duration_s, self.interval_s, self.op_timings = duration_s, interval_s, op_timings

    def runner_args(self, verify_file: str | None) -> list[str]:
        args: list[str] = []
        if self.duration_s:
            args += ["--duration-s", repr(float(self.duration_s)), "--interval-s", repr(float(self.interval_s))]
        if verify_file:
            args += ["--verify-inputs", verify_file]
        if self.op_timings:
            args += ["--op-runs", "10"]
        return args


def _static_for_prediction(res: ProfileResult) -> ProfileResult:
    """The static part of a measured result, as ``edgecv.profiling.static_profile`` returns it."""
    if res.macs is None:
        raise EdgecvError("--compare-device needs the static analysis (edgecv.profiling.static is missing)")
    return ProfileResult.from_static(res, res.model, mode="static", device="none")


def _profile_ssh(path, fmt, tgt, threads, warmup_runs, runs, min_time_s, cpus, runtime, ssh_options,
                 timeout_s, connect_timeout_s, extra: _Extras | None = None) -> ProfileResult:
    extra = extra or _Extras()
    if fmt == "keras":
        from edgecv.profiling.api import deployable
    else:
        deployable = None
    if deployable is not None:
        with deployable(path) as (run_path, _):
            return _profile_ssh_file(path, Path(run_path), "tflite", tgt, threads, warmup_runs, runs, min_time_s,
                                     cpus, runtime, ssh_options, timeout_s, connect_timeout_s, converted="keras",
                                     extra=extra)
    return _profile_ssh_file(path, Path(path), fmt, tgt, threads, warmup_runs, runs, min_time_s, cpus, runtime,
                             ssh_options, timeout_s, connect_timeout_s, extra=extra)


def _profile_ssh_file(path, run_path: Path, fmt, tgt, threads, warmup_runs, runs, min_time_s, cpus, runtime,
                      ssh_options, timeout_s, connect_timeout_s, converted: str | None = None,
                      extra: _Extras | None = None) -> ProfileResult:
    import tempfile

    from edgecv.targets.ssh import measure_over_ssh

    extra = extra or _Extras()
    if runtime is not None and (runtime == "onnxruntime") != (fmt == "onnx"):
        raise EdgecvError(f"runtime: {runtime} cannot run a {fmt} model")
    with tempfile.TemporaryDirectory(prefix="edgecv-verify.") as tmp:
        plan = None
        files: list[Path] = []
        if extra.verify:
            from edgecv.targets.numerics import prepare

            plan = prepare(run_path, extra.verify, Path(tmp), reference=extra.verify_reference,
                           artifact=Path(path))
            files.append(plan.inputs_file)
        m, info = measure_over_ssh(run_path, tgt, fmt=fmt, runtime=runtime, threads=threads,
                                   warmup_runs=warmup_runs, runs=runs, min_time_s=min_time_s, cpus=cpus,
                                   ssh_options=ssh_options, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s,
                                   extra_files=files,
                                   extra_args=extra.runner_args(plan.inputs_file.name if plan else None))
        sa = _static(str(run_path))  # after the run: a connection problem is reported without waiting for this
        res = _empty_result(str(path), fmt, tgt.uri, sa)
        if converted:
            res = replace(res, file_bytes=os.path.getsize(path))
        res = with_target_measurement(res, m, warmup_runs=warmup_runs, min_time_s=min_time_s, converted=converted)
        target = res.target
        if plan is not None:
            from edgecv.targets.numerics import compare

            target = replace(target, verify=compare(plan, m.get("verify"), res))
    if m.get("sustained"):
        target = replace(target, sustained=SustainedRun.from_dict(m["sustained"]))
    if extra.op_timings:
        from edgecv.targets.optimes import map_op_timings

        target = replace(target, op_timings=map_op_timings(res, m.get("op_timings") or
                                                           {"unavailable": "no per-op times"}))
    return replace(res, target=target)


def with_target_measurement(res: ProfileResult, m: dict, warmup_runs: int | None = None,
                            min_time_s: float | None = None, converted: str | None = None) -> ProfileResult:
    """A copy of ``res`` measured on a target over SSH: the runner's JSON object read as the host profiler reads
    it (``edgecv.profiling.api.apply_runner_json``), plus the target's URI and the inputs it ran in ``env``."""
    from edgecv.profiling.api import apply_runner_json

    res = apply_runner_json(res, m, warmup_runs=warmup_runs, min_time_s=min_time_s, converted=converted)
    inputs = tuple(InputInfo.from_dict(i) for i in m.get("inputs") or ()) or None
    return replace(res, env=replace(res.env, target=res.device, inputs=inputs or res.env.inputs))


def _profile_adb(path, fmt, tgt, benchmark_binary, threads, warmup_runs, runs, min_time_s, cpus, timeout_s,
                 device_dir, op_timings: bool = False) -> ProfileResult:
    from edgecv.targets.adb import DEVICE_DIR, measure_over_adb

    if fmt != "tflite":
        raise EdgecvError(f"--target adb: benchmark_model runs .tflite files only. Received: {path!r}")
    out, props, serial, _text = measure_over_adb(
        Path(path), tgt, benchmark_binary, threads=threads, warmup_runs=warmup_runs, runs=runs,
        min_time_s=min_time_s, cpus=cpus, device_dir=device_dir or DEVICE_DIR, timeout_s=timeout_s,
        op_profiling=op_timings)
    sa = _static(path)
    res = _empty_result(path, fmt, f"adb:{serial}", sa)
    # benchmark_model reports its max-RSS delta from the tool's start: after init, and after all runs
    peak_rss = out.peak_memory_bytes if out.peak_memory_bytes is not None else out.memory_overall_bytes
    growth = None
    if out.memory_overall_bytes is not None and out.memory_init_bytes is not None:
        growth = out.memory_overall_bytes - out.memory_init_bytes
    runtime = RuntimeInfo(
        name="tflite-benchmark_model",
        version=None,
        threads=out.threads if out.threads is not None and out.threads > 0 else threads,
        delegate=",".join(out.delegates) if out.delegates else "default",
        warmup_runs=out.warmup.count if out.warmup else warmup_runs,
        min_time_s=float(min_time_s),
        cpus=cpu_indices(cpus),
        warmup_avg_ms=out.warmup_avg_ms,
        max_ms=out.runs.max_us / 1000.0 if out.runs and out.runs.max_us is not None else None,
        p5_ms=out.runs.p5_us / 1000.0 if out.runs and out.runs.p5_us is not None else None,
        p95_ms=out.runs.p95_us / 1000.0 if out.runs and out.runs.p95_us is not None else None,
        memory_note="peak_rss_bytes: benchmark_model's memory footprint (max RSS delta from the tool's start)",
    )
    # the phone's properties (edgecv.targets.adb.PROPS: model, manufacturer, android, sdk, soc, board, abi)
    env = EnvInfo.from_dict({k: v for k, v in props.items() if k not in ("cores", "governor", "cpuinfo")})
    env = replace(env, target=res.device, serial=serial, cpu_model=props.get("soc") or props.get("board"),
                  cores=int(props["cores"]) if props.get("cores", "").isdigit() else None,
                  governor=props.get("governor"))
    if props.get("cpuinfo"):  # the phone's /proc/cpuinfo through the one CPU probe
        from edgecv.profiling import cpu_probe

        machine = {"arm64-v8a": "aarch64", "armeabi-v7a": "armv7l", "x86_64": "x86_64"}.get(props.get("abi", ""),
                                                                                          "aarch64")
        fp = cpu_probe.fingerprint(props["cpuinfo"], machine, model_files=())
        env = replace(env, core=fp["core"], cpu_part=fp["cpu_part"], isa=dict(fp["isa"]),
                      features=tuple(fp["features"]), machine=machine, board=env.model)
    res = res.with_measurement(out.latency_ms(), init_ms=out.init_ms,
                               first_inference_ms=out.first_inference_ms, peak_rss_bytes=peak_rss,
                               rss_growth_bytes=growth, runtime=runtime, env=env)
    if op_timings:
        from edgecv.targets.optimes import from_benchmark_model, map_op_timings

        res = replace(res, target=replace(res.target, op_timings=map_op_timings(res, from_benchmark_model(out))))
    return res
