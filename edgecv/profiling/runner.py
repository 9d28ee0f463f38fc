#!/usr/bin/env python3
"""Measure one model's latency and memory in this process and print one JSON object on stdout.

Self-contained on purpose (standard library + numpy + a runtime, no edgecv import): edgecv runs it
in a child process on the host, and copies it with its one companion, ``cpu_probe.py`` (standard library
only), to a target (Raspberry Pi) over SSH.

    python runner.py MODEL [--runtime litert|onnxruntime] [--threads N] [--warmup-runs N] [--runs N]
                           [--min-time-s S] [--cpus LIST] [--seed N]

Output keys: ``init_ms``, ``first_inference_ms``, ``latency_ms`` {mean, std, min, p50, p90, p99, runs},
``peak_rss_bytes``, ``rss_growth_bytes``, ``rss_baseline_bytes``, ``runtime`` {name, version, threads,
delegate}, ``inputs`` and ``env`` (CPU model, cores, ISA features, OS, Python/numpy/runtime versions,
governor, frequency, temperature, throttling). On failure: one line on stderr and exit code 1
(bad arguments or an unreadable model: 2).

TFLite runtimes, in order: ai_edge_litert (LiteRT, XNNPACK applied by default), tflite_runtime,
tensorflow.lite (last resort: the slow import is only paid when nothing else is installed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time



def _load_cpu_probe():
    """``cpu_probe.py``, the file next to this one (standard library only; copied with this file to a target)."""
    try:  # imported as edgecv.profiling.runner
        from . import cpu_probe as mod
        return mod
    except ImportError:  # run as a script (here or on a target): load the companion file by its path
        import importlib.util

        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cpu_probe.py")
        spec = importlib.util.spec_from_file_location("_edgecv_cpu_probe", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cpu_probe.py is missing next to {__file__}") from None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod


cpu_probe = _load_cpu_probe()

RUNNER_VERSION = 1
MAX_RUNS = 100_000  # cap for --min-time-s on a very fast model


class RunnerError(Exception):
    exit_code = 1


class ModelError(RunnerError):
    exit_code = 2


# ----------------------------------------------------------------------------------------------
# environment fingerprint
# ----------------------------------------------------------------------------------------------

_read = cpu_probe.read_text


def _thermal() -> dict:
    """Temperatures (deg C), frequency and throttling now (``cpu_probe.sensors``), without the empty keys."""
    return {k: v for k, v in cpu_probe.sensors().items() if v not in (None, [])}


def _os_name() -> str:
    text = _read("/etc/os-release") or ""
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return f"{platform.system()} {platform.release()}"


def environment(runtime_name: str | None = None, runtime_version: str | None = None) -> dict:
    """A fingerprint of the machine this runs on (board, core, ISA features: ``cpu_probe.fingerprint``)."""
    import numpy as np

    fp = cpu_probe.fingerprint()
    env = {k: fp[k] for k in ("machine", "cpu_model", "board", "core", "cpu_part", "hardware", "isa", "features")}
    env.update({
        "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "os": _os_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    })
    sensors = cpu_probe.sensors()
    env["governor"] = sensors["governor"]
    env["cpu_mhz"] = sensors["cpu_mhz"]
    env["cpu_max_mhz"] = sensors["cpu_max_mhz"]
    if env["cpu_mhz"] is None and env["machine"].lower() in cpu_probe.X86_MACHINES:
        mhz = cpu_probe.cpuinfo_mhz(cpu_probe.parse_cpuinfo(_read("/proc/cpuinfo") or ""))
        env["cpu_mhz"] = round(mhz) if mhz is not None else None
    for k in ("temp_c", "throttled", "throttled_now"):
        if sensors.get(k) is not None:
            env[k] = sensors[k]
    if sensors["unavailable"]:
        env["sensors_unavailable"] = sensors["unavailable"]
    if runtime_name:
        env["runtime"] = runtime_name
        env["runtime_version"] = runtime_version
    return env


# ----------------------------------------------------------------------------------------------
# memory
# ----------------------------------------------------------------------------------------------

def _status_bytes(field: str) -> int | None:
    text = _read("/proc/self/status")
    if text:
        for line in text.splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return None


def rss_bytes() -> int | None:
    return _status_bytes("VmRSS")


def peak_rss_bytes() -> int | None:
    peak = _status_bytes("VmHWM")
    if peak is None:
        try:
            import resource

            ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            peak = ru if sys.platform == "darwin" else ru * 1024
        except (ImportError, OSError):
            return None
    return peak


# ----------------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------------

def random_input(rng, shape, dtype):
    """Seeded random values of ``dtype`` (a numpy dtype) and ``shape``: floats in [-1, 1], full int8/uint8 range."""
    import numpy as np

    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if info.bits <= 16:
            return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
        return rng.integers(0, 10, size=shape).astype(dtype)  # ids / indices: keep them small
    raise ModelError(f"unsupported input dtype {dtype}")


# ----------------------------------------------------------------------------------------------
# runtimes
# ----------------------------------------------------------------------------------------------

class TFLiteSession:
    def __init__(self, path: str, threads: int, seed: int):
        import numpy as np

        self.name, self.version, Interpreter, self.delegate = self._load_runtime()
        try:
            with open(path, "rb") as fh:  # bytes: LiteRT's model_path refuses a path that is not UTF-8
                self.interp = Interpreter(model_content=fh.read(), num_threads=threads)
            details = self.interp.get_input_details()
            for d in details:
                sig = d.get("shape_signature", d["shape"])
                if any(int(s) < 0 for s in sig):
                    self.interp.resize_tensor_input(d["index"], [max(int(s), 1) for s in sig])
            self.interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"cannot load the model with {self.name}: {_one_line(exc)}") from None
        rng = np.random.default_rng(seed)
        self.inputs = []
        for d in self.interp.get_input_details():
            x = random_input(rng, tuple(int(s) for s in d["shape"]), d["dtype"])
            self.interp.set_tensor(d["index"], x)
            self.inputs.append({"name": d["name"], "shape": list(x.shape), "dtype": str(x.dtype)})
        self.threads = threads
        self.delegate = self._delegate()

    @staticmethod
    def _load_runtime():
        try:
            import ai_edge_litert
            from ai_edge_litert.interpreter import Interpreter

            return "litert", getattr(ai_edge_litert, "__version__", "?"), Interpreter, "xnnpack"
        except ImportError:
            pass
        try:
            import tflite_runtime
            from tflite_runtime.interpreter import Interpreter

            return "tflite_runtime", getattr(tflite_runtime, "__version__", "?"), Interpreter, "xnnpack"
        except ImportError:
            pass
        try:
            import tensorflow as tf
        except ImportError:
            raise RunnerError("no TFLite runtime: install ai-edge-litert (or tflite-runtime)") from None
        return "tf.lite", tf.__version__, tf.lite.Interpreter, "xnnpack"

    def _delegate(self) -> str:
        """"xnnpack" if the default XNNPACK delegate took over nodes of the execution plan, else "none"."""
        try:
            ops = self.interp._get_ops_details()
        except Exception:  # private API: absent in some runtimes
            return "xnnpack (default)"
        delegated = [op for op in ops if "DELEGATE" in str(op.get("op_name", "")).upper()]
        return "xnnpack" if delegated else "none"

    def run(self):
        self.interp.invoke()

    def outputs(self, x):
        """Float32 outputs (N, ...) for model-ready float32 inputs ``x`` (N, ...), one sample per invoke;
        integer inputs/outputs are (de)quantized with the tensors' own scale and zero point."""
        import numpy as np

        d = self.interp.get_input_details()[0]
        o = self.interp.get_output_details()[0]
        out = []
        for i in range(len(x)):
            v = x[i:i + 1]
            if np.dtype(d["dtype"]).kind in "iu":
                scale, zp = d["quantization"]
                info = np.iinfo(d["dtype"])
                v = np.clip(np.round(v / scale + zp), info.min, info.max)
            self.interp.set_tensor(d["index"], v.astype(d["dtype"]).reshape(d["shape"]))
            self.interp.invoke()
            y = self.interp.get_tensor(o["index"]).astype(np.float32)
            if np.dtype(o["dtype"]).kind in "iu":
                scale, zp = o["quantization"]
                y = (y - zp) * scale
            out.append(y.reshape(-1))
        return np.stack(out)

    def op_timings(self, runs: int):
        raise RunnerError("per-op times: this TFLite runtime's Python API has no op profiler")


class OnnxSession:
    def __init__(self, path: str, threads: int, seed: int):
        import numpy as np

        try:
            import onnxruntime as ort
        except ImportError:
            raise RunnerError("onnxruntime is not installed") from None
        self.name, self.version = "onnxruntime", ort.__version__
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        try:
            self.sess = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception classes
            raise ModelError(f"cannot load the model with onnxruntime: {_one_line(exc)}") from None
        types = {
            "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
            "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int16)": np.int16,
            "tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_,
        }
        rng = np.random.default_rng(seed)
        self.feed = {}
        self.inputs = []
        for inp in self.sess.get_inputs():
            if inp.type not in types:
                raise ModelError(f"unsupported input type {inp.type} for input {inp.name!r}")
            shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in inp.shape)
            self.feed[inp.name] = random_input(rng, shape, types[inp.type])
            self.inputs.append({"name": inp.name, "shape": list(shape), "dtype": str(np.dtype(types[inp.type]))})
        self.output_names = [o.name for o in self.sess.get_outputs()]
        self.path = path
        self.threads = threads
        self.delegate = self.sess.get_providers()[0]

    def run(self):
        self.sess.run(self.output_names, self.feed)

    def outputs(self, x):
        import numpy as np

        name = self.sess.get_inputs()[0].name
        dtype = self.feed[name].dtype
        return np.stack([np.asarray(self.sess.run(self.output_names[:1], {name: x[i:i + 1].astype(dtype)})[0],
                                    np.float32).reshape(-1) for i in range(len(x))])

    def op_timings(self, runs: int):
        """Per-node kernel times from ONNX Runtime's own profiler over ``runs`` runs (a second session with
        profiling on, so the timed runs above were not slowed by it)."""
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(os.getcwd(), "ort_profile")
        sess = ort.InferenceSession(self.path, sess_options=so, providers=["CPUExecutionProvider"])
        for _ in range(runs + 1):
            sess.run(self.output_names, self.feed)
        prof = sess.end_profiling()
        try:
            with open(prof, encoding="utf-8") as fh:
                events = json.load(fh)
        finally:
            try:
                os.remove(prof)
            except OSError:
                pass
        per: dict = {}
        for ev in events:
            if ev.get("cat") != "Node" or not str(ev.get("name", "")).endswith("_kernel_time"):
                continue
            name = ev["name"][: -len("_kernel_time")]
            args = ev.get("args") or {}
            row = per.setdefault(name, {"name": name, "type": args.get("op_name", ""), "us": [], "order": len(per)})
            row["us"].append(float(ev.get("dur", 0)))
        out = []
        for row in sorted(per.values(), key=lambda r: r["order"]):
            us = row["us"][1:] or row["us"]  # the first run warms caches
            out.append({"name": row["name"], "type": row["type"], "avg_ms": sum(us) / len(us) / 1000.0,
                        "calls": len(row["us"])})
        return {"source": f"onnxruntime {self.version} profiler (enable_profiling)", "runs": runs, "ops": out}


def detect_runtime(path: str) -> str:
    with open(path, "rb") as fh:
        head = fh.read(8)
    if len(head) >= 8 and head[4:8] == b"TFL3":
        return "litert"
    ext = os.path.splitext(path)[1].lower()
    return "onnxruntime" if ext == ".onnx" else "litert"


# ----------------------------------------------------------------------------------------------
# measurement
# ----------------------------------------------------------------------------------------------

def latency_stats(samples_ms) -> dict:
    import numpy as np

    a = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0, "min": float(a.min()),
            "p50": float(p50), "p90": float(p90), "p99": float(p99), "runs": int(a.size)}


def sustained(sess, duration_s: float, interval_s: float) -> tuple[list, dict]:
    """Run for ``duration_s``; per ``interval_s``: runs, p50/p90 (ms) and the sensors read at its end."""
    import numpy as np

    clock = time.perf_counter
    samples: list = []
    intervals: list = []
    raw: list = []  # each interval's samples
    start = clock()
    bucket: list = []
    edge = start + interval_s
    while True:
        t0 = clock()
        sess.run()
        t1 = clock()
        bucket.append((t1 - t0) * 1e3)
        if t1 >= edge or t1 - start >= duration_s:
            p50, p90 = np.percentile(np.asarray(bucket), [50, 90])
            sen = cpu_probe.sensors()
            intervals.append({"t_s": round(t1 - start, 3), "runs": len(bucket), "p50_ms": float(p50),
                              "p90_ms": float(p90), "temp_c": sen["temp_c"], "cpu_mhz": sen["cpu_mhz"],
                              "throttled": sen["throttled"]})
            samples += bucket
            raw.append(bucket)
            bucket = []
            edge += interval_s
            if t1 - start >= duration_s:
                break
    n = len(intervals)
    steady_samples = [v for b in (raw[n // 2:] if n > 1 else raw) for v in b]  # the second half
    summary = {
        "duration_s": round(clock() - start, 3), "interval_s": interval_s, "intervals": intervals,
        "burst_p50_ms": intervals[0]["p50_ms"], "steady_p50_ms": float(np.median(steady_samples)),
        "unavailable": cpu_probe.sensors()["unavailable"],
    }
    summary["slowdown_pct"] = 100.0 * (summary["steady_p50_ms"] / summary["burst_p50_ms"] - 1.0)
    return samples, summary


def verify_outputs(sess, inputs_path: str) -> dict:
    """Outputs for the samples in ``inputs_path`` (a float32 .npy made by edgecv), as base64 float32."""
    import base64

    import numpy as np

    x = np.load(inputs_path, allow_pickle=False)
    if x.dtype != np.float32 or x.ndim < 2 or len(x) > 10_000:
        raise RunnerError(f"--verify-inputs: expected float32 samples (N, ...), N <= 10000. Received: "
                          f"{x.dtype} {x.shape}")
    y = np.ascontiguousarray(sess.outputs(x), dtype="<f4")
    return {"n": int(len(x)), "shape": list(y.shape), "dtype": "float32",
            "outputs_b64": base64.b64encode(y.tobytes()).decode("ascii")}


def measure(path: str, runtime: str | None = None, threads: int = 1, warmup_runs: int = 5, runs: int = 50,
            min_time_s: float = 0.0, seed: int = 0, duration_s: float | None = None, interval_s: float = 60.0,
            verify_inputs: str | None = None, op_runs: int = 0) -> dict:
    """Load ``path``, run it once (first inference), ``warmup_runs`` more times, then at least ``runs`` timed
    runs and until ``min_time_s`` seconds of timed runs have passed. Returns the JSON-able result."""
    runtime = runtime or detect_runtime(path)
    env_before = _thermal()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    sess = OnnxSession(path, threads, seed) if runtime == "onnxruntime" else TFLiteSession(path, threads, seed)
    init_ms = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    sess.run()
    first_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(warmup_runs):
        sess.run()
    samples = []
    clock = time.perf_counter
    start = clock()
    sus = None
    if duration_s:
        samples, sus = sustained(sess, duration_s, interval_s)
    while len(samples) < runs or (clock() - start < min_time_s and len(samples) < MAX_RUNS):
        t0 = clock()
        sess.run()
        samples.append((clock() - t0) * 1e3)
    rss1 = rss_bytes()
    extra = {}
    if sus is not None:
        extra["sustained"] = sus
    if verify_inputs:
        extra["verify"] = verify_outputs(sess, verify_inputs)
    if op_runs:
        try:
            extra["op_timings"] = sess.op_timings(op_runs)
        except RunnerError as exc:
            extra["op_timings"] = {"unavailable": _one_line(exc)}
    env = environment(sess.name, sess.version)
    if "temp_c" in env_before:
        env["temp_c_before"] = env_before["temp_c"]
    return {
        "runner_version": RUNNER_VERSION,
        "model": path,
        "init_ms": init_ms,
        "first_inference_ms": first_ms,
        "latency_ms": latency_stats(samples),
        "peak_rss_bytes": peak_rss_bytes(),
        "rss_growth_bytes": (rss1 - rss0) if rss0 is not None and rss1 is not None else None,
        "rss_baseline_bytes": rss0,
        "runtime": {"name": sess.name, "version": sess.version, "threads": sess.threads, "delegate": sess.delegate},
        "inputs": sess.inputs,
        "warmup_runs": warmup_runs,
        "seed": seed,
        "env": env,
        **extra,
    }


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------

def _one_line(msg) -> str:
    # edgecv.errors.one_line, copied: this file runs on a target with only cpu_probe.py beside it (no edgecv).
    return " ".join(str(msg).split())


def parse_cpus(text: str) -> set[int]:
    """"0,2-3" -> {0, 2, 3}."""
    cpus: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(part)
        cpus.update(range(int(lo), int(hi) + 1) if sep else {int(lo)})
    if not cpus:
        raise ValueError(text)
    return cpus


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise RunnerError(f"usage: {message}")


def _positive(kind):
    def conv(text):
        v = kind(text)
        if not v > 0:
            raise argparse.ArgumentTypeError(f"expected a value > 0, got {text!r}")
        return v
    return conv


def _non_negative(kind):
    def conv(text):
        v = kind(text)
        if v < 0 or v != v:
            raise argparse.ArgumentTypeError(f"expected a value >= 0, got {text!r}")
        return v
    return conv


def main(argv=None) -> int:
    p = _Parser(prog="runner.py", description="Measure a .tflite/.onnx model; one JSON object on stdout.")
    p.add_argument("model")
    p.add_argument("--runtime", choices=("litert", "onnxruntime"))
    p.add_argument("--threads", type=_positive(int), default=1)
    p.add_argument("--warmup-runs", type=_non_negative(int), default=5)
    p.add_argument("--runs", type=_positive(int), default=50)
    p.add_argument("--min-time-s", type=_non_negative(float), default=0.0)
    p.add_argument("--cpus", help="pin to these CPUs, e.g. 0-3 or 2,3")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--duration-s", type=_positive(float), help="sustained run: this long, after the warm-up")
    p.add_argument("--interval-s", type=_positive(float), default=60.0, help="sustained run: statistics per interval")
    p.add_argument("--verify-inputs", help="a float32 .npy of model-ready samples: print the outputs too")
    p.add_argument("--op-runs", type=_non_negative(int), default=0, help="per-op times over this many runs")
    # Runtimes print to fd 1 from C (e.g. "INFO: Created TensorFlow Lite XNNPACK delegate"): send all of
    # that to stderr and keep the real stdout for the single JSON object.
    sys.stdout.flush()
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        try:
            args = p.parse_args(argv)
            if not os.path.isfile(args.model):
                raise ModelError(f"no such model file: {args.model!r}")
            if os.path.getsize(args.model) == 0:
                raise ModelError(f"empty model file: {args.model!r}")
            if args.cpus:
                try:
                    cpus = parse_cpus(args.cpus)
                except ValueError:
                    raise RunnerError(f"--cpus: expected a list like 0-3 or 2,3, got {args.cpus!r}") from None
                try:
                    os.sched_setaffinity(0, cpus)
                except (OSError, AttributeError) as exc:
                    raise RunnerError(f"--cpus {args.cpus}: cannot pin: {exc}") from None
            result = measure(args.model, args.runtime, args.threads, args.warmup_runs, args.runs,
                             args.min_time_s, args.seed, duration_s=args.duration_s, interval_s=args.interval_s,
                             verify_inputs=args.verify_inputs, op_runs=args.op_runs)
            if args.cpus:
                result["cpus"] = sorted(os.sched_getaffinity(0))
        except RunnerError as exc:
            sys.stderr.write(f"runner: error: {_one_line(exc)}\n")
            return exc.exit_code
        except MemoryError:
            sys.stderr.write("runner: error: out of memory\n")
            return 1
        except Exception as exc:
            sys.stderr.write(f"runner: error: {type(exc).__name__}: {_one_line(exc)}\n")
            return 1
    finally:
        sys.stdout.flush()
        os.dup2(real_stdout, 1)
        os.close(real_stdout)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
