"""Fuzzing edgecv's readers of untrusted files with a fixed seed and a time budget (``tests/helpers/fuzz.py``).

Mutated .tflite and .onnx models (bit flips, truncation, splices, header damage) are parsed and run in a child
process with a time limit; mutated .keras archives, legacy .h5 weight files, .npy/.npz arrays (calibration) and
labelled .npz files (``evaluate --data``) go through the checks and decoders edgecv runs before anything trusts
them. Whatever a corrupt file does (raise, abort,
segfault, hang), edgecv returns a result or raises a one-line ``EdgecvError`` within its limit: never another
exception, never a hang. The default run fuzzes each kind for a few seconds; the 300-model run is marked slow;
``tools/fuzz.py`` runs longer and records its result in ``docs/security.md``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from edgecv.errors import EdgecvError
from helpers import fuzz
from helpers.fuzz import mutate

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


SEED = 20261202


@pytest.fixture(scope="module")
def file_seeds(tmp_path_factory):
    d = tmp_path_factory.mktemp("seeds")
    return {"keras": fuzz.keras_seed(d), "h5": fuzz.h5_seed(d), **fuzz.seed_arrays(d)}


def _assert_clean(rep: fuzz.Report, min_cases: int) -> None:
    assert not rep.findings, rep.findings[:5]
    for kind in rep.kinds:
        counts = rep.by_kind[kind]
        assert sum(counts.values()) >= min_cases, (kind, counts)
        assert counts["refused"] > 0, (kind, counts)  # the mutants are damaged enough to be refused ...
    print(rep.by_kind, f"{rep.cases} cases in {rep.seconds} s")


def test_fuzz_archives_weights_and_arrays(tmp_path, file_seeds):
    """.keras archives, .h5 weights, .npy/.npz arrays and labelled .npz: up to 250 mutants each, within 25 s."""
    rep = fuzz.run(file_seeds, tmp_path, cases_per_kind=250, seed=SEED, budget_s=25)
    _assert_clean(rep, min_cases=50)
    # ... and some still read, so the fuzzer reaches past the first check
    assert sum(rep.by_kind[k]["ok"] for k in rep.kinds) > 0, rep.by_kind


def test_fuzz_models_quick(tmp_path, valid_models):
    """A few mutated .tflite/.onnx files through the static analysis (a child process each), within 20 s."""
    rep = fuzz.run({"tflite": valid_models["tflite"], "onnx": valid_models["onnx"]}, tmp_path, cases_per_kind=8,
                   seed=SEED, budget_s=20, limit_s=LIMIT_S)
    _assert_clean(rep, min_cases=3)


def test_fuzzer_is_reproducible(tmp_path, file_seeds):
    """A fixed seed gives the same mutants, so a finding can be replayed."""
    seeds = {k: file_seeds[k] for k in ("npy", "h5")}
    reports = []
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        reports.append(fuzz.run(seeds, tmp_path / sub, cases_per_kind=20, seed=SEED))
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert all((tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in names)
    assert reports[0].by_kind == reports[1].by_kind
