"""``edgecv sweep`` of trained models: ``--model FILE.keras`` and registry models with ``--weights``/``--classes``.

The trained model is the digits MobileNet of tests/evaluation/test_evaluate.py (its session fixture, reused); the measured
top-1 in results.json is checked against a LiteRT loop written here on the held-out PNG folder.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("skimage")
pytest.importorskip("tensorflow")

from helpers.litert import run_tflite  # noqa: E402
from test_evaluate import _read_folder, digits_setup  # noqa: E402,F401 - the session fixture, reused

from edgecv.errors import EdgecvError  # noqa: E402
from edgecv.sweep.grid import build_spec, files_spec, point_key  # noqa: E402


def _run(args):
    return subprocess.run([sys.executable, "-m", "edgecv", *args], capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_sweep_trained_keras_file_measured_top1(digits_setup, tmp_path):
    """A trained .keras swept at int8 and float32 with --eval-data: each artifact's measured top-1 equals a
    LiteRT loop here; the key follows the file's content."""
    s = digits_setup
    out = tmp_path / "sw"
    args = ["sweep", "--model", str(s["keras"]), "--precision", "int8,float32", "--calib", str(s["calib"]),
            "--eval-data", str(s["val"]), "--device", "rpi4", "-o", str(out), "-q"]
    r = _run(args)
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "results.json").read_text())
    rows = {row["precision"]: row for row in res["rows"]}
    assert set(rows) == {"int8", "float32"}
    pixels, y = _read_folder(s["val"])
    x = (pixels - 127.5) / 127.5  # MobileNet: [-1, 1]
    for prec, row in rows.items():
        assert row["status"] == "ok" and row["family"] == "keras" and row["resolution"] == 32
        assert row["published_top1"] is None
        want = 100.0 * float(np.mean(run_tflite(row["artifact"], x).argmax(1) == y))
        assert row["measured_top1"] == pytest.approx(want, abs=1e-3), prec
        assert row["measured_samples"] == len(y)
    assert rows["float32"]["measured_top1"] > 60.0, "the digits model did not learn the task"
    print("measured top-1 on %d images: %s" % (len(y), {p: row["measured_top1"] for p, row in rows.items()}))
    # a re-run is all cached; a changed file (same name) is a new key
    r = _run(args[:-1] + ["--json"])
    assert r.returncode == 0 and json.loads(r.stdout)["cached"] == 2, r.stderr
    spec = files_spec(str(s["keras"]), precision="int8")
    copy = tmp_path / "other" / s["keras"].name
    copy.parent.mkdir()
    copy.write_bytes(s["keras"].read_bytes() + b"\0")  # zip archives tolerate trailing bytes
    spec2 = files_spec(str(copy), precision="int8")
    assert spec.points[0] == spec2.points[0]
    assert point_key(spec.points[0], spec, {}) != point_key(spec2.points[0], spec2, {})


def test_weights_digest_in_key_and_one_architecture(tmp_path):
    w1, w2 = tmp_path / "a.weights.h5", tmp_path / "b.weights.h5"
    w1.write_bytes(b"1")
    w2.write_bytes(b"2")
    s1 = build_spec("mobilenet", alpha="0.25", resolution="32", precision="int8", classes=10, weights=str(w1))
    s2 = build_spec("mobilenet", alpha="0.25", resolution="32", precision="int8", classes=10, weights=str(w2))
    s0 = build_spec("mobilenet", alpha="0.25", resolution="32", precision="int8", classes=10)
    assert s1.models == ("mobilenet_v1_0.25_32_c10",)
    keys = {point_key(s.points[0], s, {}) for s in (s0, s1, s2)}
    assert len(keys) == 3
    with pytest.raises(EdgecvError, match="one architecture"):
        build_spec("mobilenet", alpha="0.25,0.5", precision="int8", weights=str(w1))


@pytest.mark.parametrize("extra, needle", [
    (["--model", "missing.keras"], "--model: no such file. Received: 'missing.keras'"),
    (["--model", "README.md"], "--model: expected a .keras file"),
    (["--model", "x.keras", "--alpha", "0.5"], "--model: a sweep of .keras files takes no --alpha"),
    (["--model", "x.keras", "--weights", "w.h5"], "takes no --weights"),
    (["--weights", "missing.weights.h5"], "--weights: no such file. Received: 'missing.weights.h5'"),
    (["--alpha", "0.25,0.5", "--weights", "w.weights.h5"], "--weights: one weights file fits one architecture"),
    (["--classes", "0"], "--classes"),
])
def test_bad_input_one_line(tmp_path, extra, needle):
    (tmp_path / "w.weights.h5").write_bytes(b"x")
    (tmp_path / "README.md").write_text("x")
    r = subprocess.run([sys.executable, "-m", "edgecv", "sweep", *extra, "-o", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], lines
    assert "Traceback" not in r.stderr and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_sweep_registry_model_with_trained_weights(digits_setup, tmp_path):
    """The digits model's weights file loaded into the registry model (--classes 10 --weights): the float32
    artifact's measured top-1 equals a LiteRT loop here and the Keras model's top-1 (computed in this process);
    the same file with --classes 5 does not fit: each point fails with one line naming --weights."""
    s = digits_setup
    weights = tmp_path / "digits.weights.h5"
    s["model"].save_weights(weights)
    out = tmp_path / "sw"
    base = ["sweep", "--family", "mobilenet", "--alpha", "0.25", "--resolution", "32", "--precision", "float32",
            "--weights", str(weights), "--eval-data", str(s["val"]), "-o", str(out), "-q", "--no-report"]
    r = _run(base + ["--classes", "10"])
    assert r.returncode == 0, r.stderr
    (row,) = json.loads((out / "results.json").read_text())["rows"]
    assert row["model"] == "mobilenet_v1_0.25_32_c10" and row["published_top1"] is None
    pixels, y = _read_folder(s["val"])
    x = (pixels - 127.5) / 127.5
    want = 100.0 * float(np.mean(run_tflite(row["artifact"], x).argmax(1) == y))
    keras_top1 = 100.0 * float(np.mean(np.asarray(s["model"].predict(x, verbose=0)).argmax(1) == y))
    assert row["measured_top1"] == pytest.approx(want, abs=1e-3)
    assert abs(row["measured_top1"] - keras_top1) <= 100.0 / len(y) + 1e-6  # float32: at most one image differs
    r = _run(base + ["--classes", "5", "-o", str(tmp_path / "sw5")])
    assert r.returncode == 1
    (row,) = json.loads((tmp_path / "sw5" / "results.json").read_text())["rows"]
    assert row["status"] == "error" and "--weights" in row["error"] and "\n" not in row["error"]
