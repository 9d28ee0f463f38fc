"""The profiler's Python API: ``profile`` (static counts + a measurement on this host) and ``static_profile``.

Parsing and running a model happen in child processes with time limits (``static.analyze`` and
``runner.py``), so a runtime that crashes or hangs on a file becomes a one-line ``EdgecvError``.
TensorFlow is never imported here; a ``.keras`` input is converted to float32 TFLite in a child process.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from edgecv.errors import EdgecvError
from edgecv.profiling._child import check_model_path, run_child
from edgecv.profiling.static import analyze
from edgecv.records import EnvInfo, LatencyStats, ProfileResult, RuntimeInfo
from edgecv.validate import MAX_THREADS, int_at_least, non_negative_float

RUNTIMES = ("litert", "onnxruntime")
RUNNER = Path(__file__).with_name("runner.py")
DEFAULT_TIMEOUT_S = 600.0  # whole measurement of one model (a hang is killed after this)
KERAS_TIMEOUT_S = 900.0


def default_threads() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@contextlib.contextmanager
def deployable(path: str | os.PathLike) -> Iterator[tuple[str, str | None]]:
    """Yield ``(path_to_run, converted_from)``: a .tflite/.onnx as is, a .keras converted to a temporary float32
    .tflite (in a child process, TensorFlow imported only there; removed afterwards)."""
    path = check_model_path(path)
    if not path.lower().endswith(".keras"):
        yield path, None
        return
    from edgecv.conversion.loading import check_keras_file

    check_keras_file(Path(path), option="PATH")  # the archive is safe to open before Keras reads it
    with tempfile.TemporaryDirectory(prefix="edgecv-profile-") as tmp:
        out = os.path.join(tmp, Path(path).stem + ".tflite")
        run_child([sys.executable, "-m", "edgecv.profiling._keras2tflite", path, out], KERAS_TIMEOUT_S,
                  what=f"converting {path} to TFLite")
        yield out, "keras"


def static_profile(path: str | os.PathLike, timeout_s: float = 300.0) -> ProfileResult:
    """Counts from the graph only (no timing): MACs, params, bytes, peak activation memory, per-op stats.

    ``mode`` is ``"static"``; ``latency_ms`` is None. The device predictor takes this as its input.
    """
    with deployable(path) as (run_path, converted_from):
        sa = analyze(run_path, timeout_s=timeout_s)
    res = ProfileResult.from_static(sa, str(path), mode="static", device="none")
    if converted_from:
        res = replace(res, runtime=RuntimeInfo(converted_from=converted_from), file_bytes=os.path.getsize(path))
    return res


def _check_runtime(runtime: str | None, fmt: str) -> str:
    wanted = "litert" if fmt == "tflite" else "onnxruntime"
    if runtime is None:
        return wanted
    if runtime not in RUNTIMES:
        from edgecv.errors import suggest

        raise EdgecvError(f"runtime: expected one of {', '.join(RUNTIMES)}. Received: runtime={runtime!r}."
                          + suggest(runtime, RUNTIMES))
    if runtime != wanted:
        raise EdgecvError(f"runtime: {runtime} cannot run a {fmt} model (use {wanted})")
    return runtime


def measure_host(path: str, runtime: str, threads: int, warmup_runs: int, runs: int, min_time_s: float,
            cpus: str | None = None, seed: int = 0, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict:
    """Run ``runner.py`` on ``path`` in a child process and return its JSON object."""
    cmd = [sys.executable, str(RUNNER), path, "--runtime", runtime, "--threads", str(threads),
           "--warmup-runs", str(warmup_runs), "--runs", str(runs), "--min-time-s", repr(float(min_time_s)),
           "--seed", str(seed)]
    if cpus:
        cmd += ["--cpus", cpus]
    out = run_child(cmd, timeout_s, what=f"running {path}")
    lines = [ln for ln in out.splitlines() if ln.strip().startswith("{")]
    if not lines:
        raise EdgecvError(f"running {path}: the runner printed no result")
    return json.loads(lines[-1])


def profile(path: str | os.PathLike, runtime: str | None = None, threads: int | None = None, warmup_runs: int = 5,
            runs: int = 50, min_time_s: float = 1.0, measure: bool = True, cpus: str | None = None,
            seed: int = 0, timeout_s: float = DEFAULT_TIMEOUT_S) -> ProfileResult:
    """Profile a .tflite, .onnx or .keras model on this host.

    Static counts come from the graph; with ``measure`` the model is loaded and run in a child process:
    one first inference, ``warmup_runs`` warm-up runs, then at least ``runs`` timed runs and until
    ``min_time_s`` seconds have passed. ``threads`` defaults to the cores available. LiteRT runs with its
    default XNNPACK delegate, ONNX Runtime with ``threads`` intra-op threads. Returns a ``ProfileResult``
    with ``mode="measured"`` and ``device="host"`` (``mode="static"`` when ``measure`` is False).
    """
    threads = default_threads() if threads is None else int_at_least("threads", threads, 1, maximum=MAX_THREADS, keyword=True)
    int_at_least("warmup_runs", warmup_runs, 0, keyword=True)
    int_at_least("runs", runs, 1, keyword=True)
    non_negative_float("min_time_s", min_time_s, keyword=True)
    if runtime is not None and runtime not in RUNTIMES:
        _check_runtime(runtime, "tflite")
    with deployable(path) as (run_path, converted_from):
        sa = analyze(run_path)
        rt = _check_runtime(runtime, sa.format)
        if not measure:
            return replace(ProfileResult.from_static(sa, str(path), mode="static", device="none"),
                           runtime=RuntimeInfo(converted_from=converted_from))
        m = measure_host(run_path, rt, threads, warmup_runs, runs, min_time_s, cpus=cpus, seed=seed,
                         timeout_s=timeout_s)
    res = ProfileResult.from_static(sa, str(path), mode="measured", device="host")
    if converted_from:
        res = replace(res, file_bytes=os.path.getsize(path))
    return apply_runner_json(res, m, warmup_runs=warmup_runs, min_time_s=min_time_s, converted=converted_from)


def runner_result_problem(m: object) -> str | None:
    """Why ``m`` is not a result of ``runner.py`` this edgecv can read (the first problem), or None. A target's
    output is untrusted: checked before any field is read, so a broken or hostile runner gets one line."""
    from edgecv.records import InputInfo, SustainedRun
    from edgecv.validate import conforms, record_problem

    if not isinstance(m, dict):
        return f"expected an object, got {type(m).__name__}"
    for key, cls in (("latency_ms", LatencyStats), ("runtime", RuntimeInfo)):
        problem = record_problem(m.get(key), cls)
        if problem:
            return f"{key}: {problem}"
    for key, hint in (("init_ms", float | None), ("first_inference_ms", float | None),
                      ("peak_rss_bytes", int | None), ("rss_growth_bytes", int | None)):
        if key not in m:
            return f"missing {key!r}"
        if not conforms(m[key], hint):
            return f"{key!r} is {m[key]!r:.60}, expected {hint}"
    # cpus: the runner's core list, or the "0-1" --cpus string older runners printed (cpu_indices reads both)
    for key, hint in (("warmup_runs", int), ("cpus", list[int] | str), ("inputs", list)):
        if m.get(key) is not None and not conforms(m[key], hint):
            return f"{key!r} is {m[key]!r:.60}, expected {hint.__name__ if isinstance(hint, type) else hint}"
    records = [("env", m.get("env"), EnvInfo), ("sustained", m.get("sustained"), SustainedRun)]
    records += [(f"inputs[{i}]", x, InputInfo) for i, x in enumerate(m.get("inputs") or ())]
    for key, value, cls in records:
        problem = None if value is None else record_problem(value, cls)
        if problem:
            return f"{key}: {problem}"
    return None


def apply_runner_json(res: ProfileResult, m: dict, warmup_runs: int | None = None, min_time_s: float | None = None,
                      converted: str | None = None) -> ProfileResult:
    """A copy of ``res`` with the measured fields from ``runner.py``'s JSON object (host or target; the one
    parser of that object). A result it cannot read is one line naming where it ran (``res.device``)."""
    problem = runner_result_problem(m)
    if problem:
        raise EdgecvError(f"{res.device}: the runner's result cannot be read ({problem}); is the target running "
                          f"another edgecv version's runner?")
    runtime = replace(RuntimeInfo.from_dict(m["runtime"]), warmup_runs=m.get("warmup_runs", warmup_runs),
                      min_time_s=None if min_time_s is None else float(min_time_s), converted_from=converted or None,
                      cpus=m.get("cpus") or None)
    return res.with_measurement(LatencyStats.from_dict(m["latency_ms"]), init_ms=m["init_ms"],
                                first_inference_ms=m["first_inference_ms"], peak_rss_bytes=m["peak_rss_bytes"],
                                rss_growth_bytes=m["rss_growth_bytes"], runtime=runtime,
                                env=EnvInfo.from_dict(m.get("env")))
