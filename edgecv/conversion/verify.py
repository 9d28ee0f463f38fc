"""Run a converted artifact in its own runtime and compare it with the Keras model.

- ``.tflite`` runs in LiteRT (``ai_edge_litert``), ``.onnx`` in ONNX Runtime. Neither path imports
  TensorFlow.
- The artifact is loaded and run in a child process (``python -m edgecv.conversion.verify``): a runtime
  that crashes on a bad file (a segfault in a kernel, an abort in a parser) ends the child, not edgecv.
- Metrics (onnxruntime ``qdq_loss_debug`` convention): SQNR in dB ``20*log10(|x| / |x - y|)`` over all
  output elements, top-1 agreement (argmax of the last axis), max abs error.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecv.errors import EdgecvError, exception_line, last_line

SQNR_CAP_DB = 300.0  # identical outputs: report this instead of infinity (JSON has no inf)


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    scale: float | None = None  # quantized tensors: real = scale * (q - zero_point)
    zero_point: int | None = None


@dataclass(frozen=True)
class Metrics:
    sqnr_db: float
    top1_agreement: float | None  # None when the output is not a class vector
    max_abs_error: float
    samples: int


@dataclass(frozen=True)
class RunResult:
    runtime: str  # "litert 2.3.0" | "onnxruntime 1.32.0"
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    output: np.ndarray | None  # first output for the given samples, dequantized to float32
    tensorflow_imported: bool  # whether the child had TensorFlow in sys.modules (it must not)


def sqnr_db(ref: np.ndarray, out: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB of ``out`` against ``ref`` (capped at 300 dB)."""
    ref = np.asarray(ref, np.float64).ravel()
    err = ref - np.asarray(out, np.float64).ravel()
    signal, noise = float(np.linalg.norm(ref)), float(np.linalg.norm(err))
    if noise == 0.0:
        return SQNR_CAP_DB
    if signal == 0.0:
        return -SQNR_CAP_DB
    return float(min(SQNR_CAP_DB, 20.0 * math.log10(signal / noise)))


def compare(ref: np.ndarray, out: np.ndarray) -> Metrics:
    ref = np.asarray(ref, np.float32)
    out = np.asarray(out, np.float32).reshape(ref.shape)
    top1 = None
    if ref.ndim == 2 and ref.shape[1] > 1:
        top1 = float(np.mean(np.argmax(ref, axis=1) == np.argmax(out, axis=1)))
    return Metrics(sqnr_db=round(sqnr_db(ref, out), 3), top1_agreement=top1,
                   max_abs_error=float(np.max(np.abs(ref - out))) if ref.size else 0.0, samples=len(ref))


def outputs_barely_vary(ref: np.ndarray, rel: float = 1e-4) -> bool:
    """Whether the reference outputs are (nearly) the same for every sample: the signature of an untrained
    model (``weights=None``: BatchNorm at its initial statistics gives a flat softmax, logits ~1e-11), on
    which an "outputs match" check proves nothing. True when the largest per-element spread across samples
    is below ``rel`` of the outputs' mean magnitude (or the outputs are all zero)."""
    ref = np.asarray(ref, np.float64).reshape(len(ref), -1)
    if len(ref) < 2:
        return False
    scale = float(np.mean(np.abs(ref)))
    return scale == 0.0 or float(np.max(np.ptp(ref, axis=0))) < rel * scale


def run_artifact(path: str | os.PathLike, x: np.ndarray | None = None, timeout_s: float = 600.0,
                 threads: int = 2, qdq_reference: bool = False) -> RunResult:
    """Load ``path`` in its runtime in a child process, report its I/O and run it on ``x`` (if given).

    ``qdq_reference`` (ONNX only): run with ONNX Runtime's graph optimizations off, so QuantizeLinear /
    DequantizeLinear pairs are evaluated as written (float arithmetic on dequantized int8 values) instead of
    being fused into this CPU's int8 kernels: the arithmetic an int8 kernel that accumulates in int32 without
    saturation (Arm sdot/smull, x86 VNNI) performs.
    """
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="edgecv-verify-") as tmp:
        tmpd = Path(tmp)
        xin = "-"
        if x is not None:
            xin = str(tmpd / "x.npy")
            np.save(xin, np.ascontiguousarray(x, np.float32))
        from edgecv.isolation import child_env, python_argv, run

        cmd = python_argv(module="edgecv.conversion.verify", args=[str(path), xin, str(tmpd), str(threads),
                                                                 "qdq-reference" if qdq_reference else "optimized"])
        try:
            proc = run(cmd, timeout_s, env=child_env({"TF_CPP_MIN_LOG_LEVEL": "2"}))
        except OSError as exc:
            raise EdgecvError(f"{path.name}: cannot start a child process: {exc.strerror or exc}") from None
        except subprocess.TimeoutExpired:
            raise EdgecvError(f"{path.name}: the runtime did not finish within {timeout_s:.0f} s") from None
        report = tmpd / "report.json"
        if proc.returncode != 0 or not report.exists():
            msg = ""
            if report.exists():
                msg = json.loads(report.read_text()).get("error", "")
            if not msg:
                msg = last_line(proc.stderr)  # the child died: its last line is the reason
            how = (f"crashed (signal {-proc.returncode})" if proc.returncode < 0
                   else f"failed (exit {proc.returncode})")
            raise EdgecvError(f"{path.name}: the runtime {how} loading or running it: {msg}".rstrip(": "))
        rep = json.loads(report.read_text())
        out = np.load(tmpd / "y.npy") if (tmpd / "y.npy").exists() else None
    return RunResult(
        runtime=rep["runtime"],
        inputs=tuple(TensorInfo(**{**t, "shape": tuple(t["shape"])}) for t in rep["inputs"]),
        outputs=tuple(TensorInfo(**{**t, "shape": tuple(t["shape"])}) for t in rep["outputs"]),
        output=out, tensorflow_imported=rep["tensorflow_imported"],
    )


# --- inspection helpers that import only LiteRT ----------------------------------------------------

@dataclass(frozen=True)
class TfliteOp:
    index: int
    type: str
    input_dtypes: tuple[str, ...]  # non-constant inputs only
    output_dtypes: tuple[str, ...]
    output_name: str


def tflite_ops(model_content: bytes) -> list[TfliteOp]:
    """The ops of a .tflite flatbuffer with the dtypes of their non-constant inputs and outputs."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model_content)
    td = it.get_tensor_details()
    by_index = {t["index"]: t for t in td}
    produced = set()
    ops = it._get_ops_details()  # noqa: SLF001 - the only op listing LiteRT exposes
    for op in ops:
        produced.update(int(i) for i in op["outputs"])
    graph_inputs = {d["index"] for d in it.get_input_details()}
    out = []
    for op in ops:
        ins = [int(i) for i in op["inputs"] if int(i) >= 0 and (int(i) in produced or int(i) in graph_inputs)]
        outs = [int(i) for i in op["outputs"]]
        out.append(TfliteOp(
            index=int(op["index"]), type=op["op_name"],
            input_dtypes=tuple(np.dtype(by_index[i]["dtype"]).name for i in ins),
            output_dtypes=tuple(np.dtype(by_index[i]["dtype"]).name for i in outs),
            output_name=by_index[outs[0]]["name"] if outs else "",
        ))
    return out


def float_ops(ops: list[TfliteOp]) -> list[TfliteOp]:
    """Ops of an int8 model that still compute in float (QUANTIZE/DEQUANTIZE at the boundaries excluded)."""
    return [op for op in ops if op.type not in ("QUANTIZE", "DEQUANTIZE", "DELEGATE")
            and any(d in ("float32", "float16") for d in op.input_dtypes + op.output_dtypes)]


def inspect_io(content: bytes, fmt: str) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """Input and output tensors of an artifact read in this process, without running it (--no-verify)."""
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_content=content)

        def conv(details) -> tuple[TensorInfo, ...]:
            infos = [_tensor_info(d) for d in details]
            return tuple(TensorInfo(**{**t, "shape": tuple(t["shape"])}) for t in infos)

        return conv(it.get_input_details()), conv(it.get_output_details())
    import onnx

    proto = onnx.load_from_string(content)
    inits = {t.name for t in proto.graph.initializer}

    def info(vi) -> TensorInfo:
        tt = vi.type.tensor_type
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)).name
        shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim)
        return TensorInfo(vi.name, dtype, shape)

    return (tuple(info(v) for v in proto.graph.input if v.name not in inits),
            tuple(info(v) for v in proto.graph.output))


# --- the child process ------------------------------------------------------------------------------

def _tensor_info(d: dict) -> dict:
    q = d.get("quantization") or (0.0, 0)
    scale, zp = float(q[0]), int(q[1])
    quantized = np.dtype(d["dtype"]).kind in "iu" and scale != 0.0
    return {"name": d["name"], "dtype": np.dtype(d["dtype"]).name, "shape": [int(s) for s in d["shape"]],
            "scale": scale if quantized else None, "zero_point": zp if quantized else None}


def _run_tflite(path: str, x: np.ndarray | None, threads: int) -> tuple[dict, np.ndarray | None]:
    from importlib.metadata import version

    from ai_edge_litert.interpreter import Interpreter

    with open(path, "rb") as fh:  # bytes: LiteRT's model_path refuses a path that is not UTF-8
        it = Interpreter(model_content=fh.read(), num_threads=threads)
    inp = it.get_input_details()
    if x is not None and len(inp) == 1 and int(inp[0]["shape"][0]) != 1:
        it.resize_tensor_input(inp[0]["index"], [1, *x.shape[1:]])
    it.allocate_tensors()
    inp, outd = it.get_input_details(), it.get_output_details()
    rep = {"runtime": f"litert {version('ai-edge-litert')}", "inputs": [_tensor_info(d) for d in inp],
           "outputs": [_tensor_info(d) for d in outd]}
    if x is None:
        return rep, None
    if len(inp) != 1:
        raise ValueError(f"expected one input, the model has {len(inp)}")
    i0, o0 = inp[0], outd[0]
    ys = []
    for sample in x:
        v = sample[None]
        if np.dtype(i0["dtype"]).kind in "iu":
            scale, zp = i0["quantization"]
            info = np.iinfo(i0["dtype"])
            v = np.clip(np.round(v / scale + zp), info.min, info.max).astype(i0["dtype"])
        else:
            v = v.astype(i0["dtype"])
        it.set_tensor(i0["index"], v)
        it.invoke()
        y = it.get_tensor(o0["index"]).astype(np.float32)
        if np.dtype(o0["dtype"]).kind in "iu":
            scale, zp = o0["quantization"]
            y = (y - zp) * scale
        ys.append(y[0])
    return rep, np.stack(ys)


_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int8)": "int8",
              "tensor(uint8)": "uint8", "tensor(int64)": "int64", "tensor(int32)": "int32"}


def _run_onnx(path: str, x: np.ndarray | None, threads: int,
              qdq_reference: bool = False) -> tuple[dict, np.ndarray | None]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    if qdq_reference:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])

    def info(a) -> dict:
        return {"name": a.name, "dtype": _ORT_TYPES.get(a.type, a.type),
                "shape": [s if isinstance(s, int) else -1 for s in a.shape], "scale": None, "zero_point": None}

    how = " (QDQ reference: graph optimizations off)" if qdq_reference else ""
    rep = {"runtime": f"onnxruntime {ort.__version__}{how}", "inputs": [info(a) for a in sess.get_inputs()],
           "outputs": [info(a) for a in sess.get_outputs()]}
    if x is None:
        return rep, None
    name = sess.get_inputs()[0].name
    ys = [sess.run(None, {name: x[i:i + 8]})[0] for i in range(0, len(x), 8)]
    return rep, np.concatenate(ys).astype(np.float32)


def _child(argv: list[str]) -> int:
    path, xin, outdir, threads = argv[0], argv[1], Path(argv[2]), int(argv[3])
    qdq_reference = len(argv) > 4 and argv[4] == "qdq-reference"
    report = outdir / "report.json"
    try:
        x = None if xin == "-" else np.load(xin, allow_pickle=False)
        if path.endswith(".tflite"):
            rep, y = _run_tflite(path, x, threads)
        elif path.endswith(".onnx"):
            rep, y = _run_onnx(path, x, threads, qdq_reference)
        else:
            raise ValueError(f"unknown artifact type {Path(path).suffix!r}")
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        report.write_text(json.dumps({"error": exception_line(exc, 500)}))
        return 1
    rep["tensorflow_imported"] = "tensorflow" in sys.modules
    if y is not None:
        np.save(outdir / "y.npy", y)
    report.write_text(json.dumps(rep))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
