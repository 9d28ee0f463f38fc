"""edgecv demo: the README's first command, end to end, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "EDGECV_DEBUG": ""}
# published MobileNetV1 0.5-224 (MobileNets, Table 6): 149 M MACs, 1.3 M parameters
PAPER_MACS = 149e6


def run(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgecv", *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout)


def test_bad_output_dir_is_one_line(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = run("demo", "-o", str(f), timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "-o" in r.stderr and "not a directory" in r.stderr


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    r = run("demo", "-o", str(out), "--samples", "32")
    assert r.returncode == 0, r.stderr[-3000:]
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("report: ")
    report = Path(last.split(": ", 1)[1])
    assert report.is_file() and report.stat().st_size > 1_000_000
    rows = json.loads((out / "results.json").read_text())["rows"]
    got = {(x["precision"], x["format"], x["device"]) for x in rows}
    assert got == {("int8", "tflite", "host"), ("int8", "tflite", "rpi4"), ("int8", "tflite", "pixel4"),
                   ("float16", "tflite", "host"), ("float16", "tflite", "rpi4"), ("float16", "tflite", "pixel4"),
                   ("float32", "onnx", "host")}
    for x in rows:
        assert x["status"] == "ok"
        assert abs(x["macs"] - PAPER_MACS) / PAPER_MACS < 0.02, x["macs"]  # the paper's count, from the graph
        bpp = x["weights_bytes"] / x["params"]
        lo, hi = {"int8": (1.0, 1.1), "float16": (1.95, 2.05), "float32": (3.95, 4.05)}[x["precision"]]
        assert lo <= bpp <= hi, (x["precision"], bpp)
        assert 1.2e6 < x["params"] < 1.4e6  # 1.3 M in the paper (BatchNorm folded)
        if x["device"] == "host":
            assert x["mode"] == "measured" and x["latency_ms.mean"] > 0 and x["latency_ms.runs"] >= 1
            assert x["runtime.name"] in ("litert", "onnxruntime", "tflite")
        else:
            assert x["mode"] == "predicted"
    f16 = next(x for x in rows if x["precision"] == "float16")
    onnx = next(x for x in rows if x["format"] == "onnx")
    assert f16["sqnr_db"] > 40 and onnx["sqnr_db"] > 60  # verified against Keras on held-out photos
    # the report is there and a second run is all cached
    r2 = run("demo", "-o", str(out), "--samples", "32", "--json")
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert json.loads(r2.stdout)["report"] == str(report)
    assert "3 cached" not in r2.stderr  # --json: no progress on stderr
    r3 = run("demo", "-o", str(out), "--samples", "32")
    assert "3 points (3 cached, 0 computed)" in r3.stderr
