"""The child process that loads and runs one artifact for ``edgecv evaluate`` (never the parent).

    (edgecv.isolation.python_argv, module edgecv.evaluation._child) inspect PATH OUTDIR
    (edgecv.isolation.python_argv, module edgecv.evaluation._child) run PATH X.npy OUTDIR BATCH THREADS

``.tflite`` runs in LiteRT, ``.onnx`` in ONNX Runtime (neither imports TensorFlow), ``.keras`` in Keras
(``safe_mode=True``). ``inspect`` writes ``report.json`` (input shape, classes, runtime; for ``.keras`` also
the preprocessing edgecv infers for it); ``run`` writes ``y.npy``, the float32 outputs for every row of X,. An error is written to ``report.json`` as one line and exits 1.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from edgecv.errors import exception_line


class _Tflite:
    def __init__(self, path: str, threads: int) -> None:
        from importlib.metadata import version

        self.path, self.threads = path, threads
        self._load()
        self.batch = int(self.inp["shape"][0])
        self.fixed = False  # True once a resize to another batch size failed (a graph with batch 1 built in)
        self.runtime = f"litert {version('ai-edge-litert')}"

    def _load(self) -> None:
        from ai_edge_litert.interpreter import Interpreter

        with open(self.path, "rb") as fh:  # bytes: LiteRT's model_path refuses a path that is not UTF-8
            self.it = Interpreter(model_content=fh.read(), num_threads=self.threads)
        inp, out = self.it.get_input_details(), self.it.get_output_details()
        if len(inp) != 1:
            raise ValueError(f"expected one input, the model has {len(inp)}")
        self.inp, self.out = inp[0], out[0]
        self.it.allocate_tensors()

    def io(self) -> tuple[list[int], str, list[int]]:
        return ([int(s) for s in self.inp["shape"]], np.dtype(self.inp["dtype"]).name,
                [int(s) for s in self.out["shape"]])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.batch != len(x):
            if self.fixed:
                return np.concatenate([self(x[i:i + self.batch]) for i in range(0, len(x), self.batch)])
            try:
                self.it.resize_tensor_input(self.inp["index"], [len(x), *x.shape[1:]])
                self.it.allocate_tensors()
                self.inp, self.out = self.it.get_input_details()[0], self.it.get_output_details()[0]
                self.batch = len(x)
            except (RuntimeError, ValueError):
                self._load()
                self.batch, self.fixed = int(self.inp["shape"][0]), True
                return self(x)
        i0, o0 = self.inp, self.out
        v = x
        if np.dtype(i0["dtype"]).kind in "iu":
            scale, zp = i0["quantization"]
            info = np.iinfo(i0["dtype"])
            v = np.clip(np.round(v / scale + zp), info.min, info.max)
        self.it.set_tensor(i0["index"], v.astype(i0["dtype"]))
        self.it.invoke()
        y = self.it.get_tensor(o0["index"]).astype(np.float32)
        if np.dtype(o0["dtype"]).kind in "iu":
            scale, zp = o0["quantization"]
            y = (y - zp) * scale
        return y.reshape(len(x), -1)


class _Onnx:
    def __init__(self, path: str, threads: int) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.sess = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        ins = self.sess.get_inputs()
        if len(ins) != 1:
            raise ValueError(f"expected one input, the model has {len(ins)}")
        self.name = ins[0].name
        self.fixed_batch = ins[0].shape[0] if isinstance(ins[0].shape[0], int) else None
        self.runtime = f"onnxruntime {ort.__version__}"

    def io(self) -> tuple[list[int], str, list[int]]:
        i, o = self.sess.get_inputs()[0], self.sess.get_outputs()[0]
        shape = lambda s: [d if isinstance(d, int) else -1 for d in s]  # noqa: E731
        return shape(i.shape), "float32", shape(o.shape)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.fixed_batch is not None and self.fixed_batch != len(x):
            return np.concatenate([self(x[i:i + self.fixed_batch]) for i in range(0, len(x), self.fixed_batch)])
        y = self.sess.run(None, {self.name: np.ascontiguousarray(x, np.float32)})[0]
        return np.asarray(y, np.float32).reshape(len(x), -1)


class _Keras:
    def __init__(self, path: str, threads: int) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        from edgecv.native import import_tensorflow

        tf = import_tensorflow()
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        import keras

        self.model = keras.saving.load_model(path, safe_mode=True, compile=False)
        if not isinstance(self.model, keras.Model):
            raise ValueError(f"the file holds a Keras {type(self.model).__name__}, not a model")
        if len(self.model.inputs) != 1:
            raise ValueError(f"expected one input, the model has {len(self.model.inputs)}")
        self.runtime = f"keras {keras.__version__}"

    def io(self) -> tuple[list[int], str, list[int]]:
        shape = lambda s: [-1 if d is None else int(d) for d in s]  # noqa: E731
        out = self.model.outputs[0].shape
        return shape(self.model.inputs[0].shape), "float32", shape(out)

    def preprocessing(self) -> dict:
        from edgecv.conversion.loading import preprocessing_dict, preprocessing_for

        pre, _ = preprocessing_for(self.model, str(self.model.name))
        return preprocessing_dict(pre, tuple(self.model.input_shape[1:]))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = self.model(x, training=False)
        return np.asarray(y, np.float32).reshape(len(x), -1)


def _open(path: str, threads: int):
    suffix = Path(path).suffix.lower()
    if suffix == ".tflite":
        return _Tflite(path, threads)
    if suffix == ".onnx":
        return _Onnx(path, threads)
    if suffix == ".keras":
        return _Keras(path, threads)
    raise ValueError(f"unknown artifact type {suffix!r}")


def main(argv: list[str]) -> int:
    mode, path = argv[0], argv[1]
    outdir = Path(argv[2] if mode == "inspect" else argv[3])
    report = outdir / "report.json"
    try:
        threads = int(argv[5]) if mode == "run" else 1
        runner = _open(path, threads)
        if mode == "inspect":
            in_shape, in_dtype, out_shape = runner.io()
            rep = {"runtime": runner.runtime, "input_shape": in_shape, "input_dtype": in_dtype,
                   "output_shape": out_shape}
            if isinstance(runner, _Keras):
                rep["preprocessing"] = runner.preprocessing()
        else:
            x = np.load(argv[2], allow_pickle=False)
            batch = max(1, int(argv[4]))
            ys = []
            for i in range(0, len(x), batch):
                ys.append(runner(x[i:i + batch]))
            np.save(outdir / "y.npy", np.concatenate(ys) if ys else np.zeros((0, 0), np.float32))
            rep = {"runtime": runner.runtime}
        rep["tensorflow_imported"] = "tensorflow" in sys.modules
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        report.write_text(json.dumps({"error": exception_line(exc, 500)}))
        return 1
    report.write_text(json.dumps(rep))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
