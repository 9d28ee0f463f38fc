"""Fuzzing the model parsers: mutated .tflite and .onnx files (bit flips, truncation, splices, header damage).

edgecv parses and runs untrusted models in a child process with a time limit, so whatever the runtime
does with a corrupt file (raise, abort, segfault, hang), edgecv returns a result or raises a one-line
``EdgecvError`` within its limit: never another exception, never a hang.
"""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from edgecv.errors import EdgecvError

N_STATIC = 150  # per format: 300 in all
N_RUN = 20  # per format: also loaded and run by the measurement runner
LIMIT_S = 20.0


def _tiny_keras():
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(inp)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.Conv2D(16, 1, activation="relu")(x)
    y = keras.layers.Conv2D(16, 1)(x)
    x = keras.layers.Add()([x, y])
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(10, activation="softmax")(x))


@pytest.fixture(scope="module")
def valid_models(tmp_path_factory):
    import tensorflow as tf
    import tf2onnx

    d = tmp_path_factory.mktemp("valid")
    model = _tiny_keras()
    tfl = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    (d / "m.tflite").write_bytes(tfl)
    spec = (tf.TensorSpec((1, 32, 32, 3), tf.float32, name="input"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=13)
    (d / "m.onnx").write_bytes(proto.SerializeToString())
    return {"tflite": (d / "m.tflite").read_bytes(), "onnx": (d / "m.onnx").read_bytes()}


def mutate(data: bytes, other: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    buf = bytearray(data)
    kind = ["bitflip", "bytes", "truncate", "splice", "header", "zero", "duplicate", "int_fields"][
        int(rng.integers(8))]
    n = len(buf)
    if kind == "bitflip":
        for pos in rng.integers(0, n, size=int(rng.integers(1, 16))):
            buf[pos] ^= 1 << int(rng.integers(8))
    elif kind == "bytes":
        for pos in rng.integers(0, n, size=int(rng.integers(1, 64))):
            buf[pos] = int(rng.integers(256))
    elif kind == "truncate":
        buf = buf[: int(rng.integers(1, n))]
    elif kind == "splice":
        cut, cut2 = int(rng.integers(1, n)), int(rng.integers(0, len(other)))
        buf = buf[:cut] + bytearray(other[cut2:])
    elif kind == "header":  # the first 64 bytes hold offsets and the file identifier
        for pos in rng.integers(0, min(64, n), size=int(rng.integers(1, 8))):
            buf[pos] = int(rng.integers(256))
    elif kind == "zero":
        a = int(rng.integers(0, n))
        b = min(n, a + int(rng.integers(1, 4096)))
        buf[a:b] = bytes(b - a)
    elif kind == "duplicate":
        a = int(rng.integers(0, n))
        b = min(n, a + int(rng.integers(1, 2048)))
        buf = buf[:b] + buf[a:b] + buf[b:]
    else:  # overwrite aligned little-endian int32 fields with extreme values (sizes, offsets, indices)
        for pos in rng.integers(0, max(1, n // 4), size=int(rng.integers(1, 8))) * 4:
            v = int(rng.choice([0, 1, -1, 2**31 - 1, -(2**31), 2**16, 7]))
            buf[pos:pos + 4] = v.to_bytes(4, "little", signed=True)
    return kind, bytes(buf)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_mutated_models_never_hang_or_traceback(tmp_path, valid_models, fmt):
    from edgecv.profiling.api import profile, static_profile

    rng = np.random.default_rng(1234 if fmt == "tflite" else 4321)
    other = valid_models["onnx" if fmt == "tflite" else "tflite"]
    cases = []
    for i in range(N_STATIC):
        kind, data = mutate(valid_models[fmt], other, rng)
        path = tmp_path / f"case{i}.{fmt}"
        path.write_bytes(data)
        cases.append((i, kind, path))

    def check(case):
        i, kind, path = case
        run = i < N_RUN
        t0 = time.monotonic()
        try:
            if run:
                profile(path, runs=1, warmup_runs=0, min_time_s=0.0, threads=1, timeout_s=LIMIT_S)
            else:
                static_profile(path, timeout_s=LIMIT_S)
            outcome = "ok"
        except EdgecvError as exc:
            msg = str(exc)
            assert "\n" not in msg.strip() and "Traceback" not in msg, (kind, msg)
            outcome = "error"
        elapsed = time.monotonic() - t0
        # a hang is cut at the limit; the measurement adds at most one more child (static + run)
        assert elapsed < (2 if run else 1) * LIMIT_S + 10, (i, kind, elapsed)
        return f"{kind}:{outcome}"

    outcomes: dict[str, int] = {}
    with ThreadPoolExecutor(max_workers=2) as pool:  # each case is its own child process
        for key in pool.map(check, cases):
            outcomes[key] = outcomes.get(key, 0) + 1
    # the fuzzer exercises both sides: some mutants still parse, most are refused
    assert any(k.endswith(":error") for k in outcomes), outcomes
    print(fmt, sorted(outcomes.items()))


def test_crashing_runtime_is_a_clean_cli_error(tmp_path, valid_models):
    """A file that kills the runtime's process is reported in one line, exit code 2, via the CLI."""
    data = bytearray(valid_models["tflite"])
    data[4:8] = b"XXXX"  # break the TFL3 identifier: the runtime refuses or dies
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(bytes(data))
    res = subprocess.run([sys.executable, "-m", "edgecv", "profile", str(bad)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr and "bad.tflite" in lines[0], res.stderr
