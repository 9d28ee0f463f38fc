"""One table of bad inputs across every command.

Each case: exit code 2, exactly one line on stderr that names the problem and echoes the value received,
no traceback, and nothing new or changed in the output folder.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    (d / "empty.tflite").write_bytes(b"")
    (d / "random.tflite").write_bytes(np.random.default_rng(0).bytes(4096))
    (d / "random.onnx").write_bytes(np.random.default_rng(1).bytes(4096))
    (d / "text.keras").write_text("not a zip archive")
    (d / "model.txt").write_text("hello")
    (d / "adir.tflite").mkdir()
    (d / "noimages").mkdir()
    (d / "noimages" / "readme.txt").write_text("no pictures here")
    (d / "badimages").mkdir()
    (d / "badimages" / "a.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (d / "badimages" / "b.png").write_bytes(b"\x89PNG broken")
    (d / "emptydir").mkdir()
    np.save(d / "wrong_shape.npy", np.zeros((4, 10, 10, 3), np.float32))
    np.save(d / "wrong_dtype.npy", np.array(["a", "b"]))
    (d / "bad_profile.toml").write_text("id = 'x'\n[[clusters]\n")
    (d / "afile").write_text("I am a file")
    # a real TFLite flatbuffer with a broken body: the identifier survives, the tables do not
    (d / "truncated.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    # an ONNX name on a TFLite body
    (d / "really_tflite.onnx").write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    return d


def case(cmd, *fragments, id=None):
    return pytest.param(cmd, fragments, id=id or " ".join(cmd)[:60])


CASES = [
    # build
    case(["build", "mobilenet", "--alpha", "0"], "--alpha", "0"),
    case(["build", "mobilenet", "--alpha", "-1"], "--alpha", "-1"),
    case(["build", "mobilenet", "--alpha", "abc"], "--alpha", "abc"),
    case(["build", "mobilenet", "--resolution", "0"], "--resolution", "0"),
    case(["build", "mobilenet", "--resolution", "31"], "--resolution", "31"),
    case(["build", "mobilenet", "--resolution", "100000"], "--resolution", "100000"),
    case(["build", "vgg16"], "vgg16"),
    case(["build", "efficientnet", "--variant", "b8"], "--variant", "b8"),
    case(["build", "mobilenet", "--classes", "-3"], "--classes", "-3"),
    case(["build", "mobilenet", "-o", "{d}/afile"], "--output-dir", "afile"),
    # quantize
    case(["quantize", "{d}/missing.keras", "--precision", "float32"], "missing.keras"),
    case(["quantize", "{d}/text.keras", "--precision", "float32"], "text.keras"),
    case(["quantize", "{d}/model.txt", "--precision", "float32"], "model.txt"),
    case(["quantize", "resnet_50", "--precision", "float32"], "resnet_50"),
    case(["quantize", "mobilenet_v1_0.25_128", "--precision", "int4"], "--precision", "int4"),
    case(["quantize", "mobilenet_v1_0.25_128", "--precision", "int8"], "--calib"),
    case(["quantize", "mobilenet_v1_0.25_128", "--calib", "{d}/emptydir"], "emptydir"),
    case(["quantize", "mobilenet_v1_0.25_128", "--calib", "{d}/noimages"], "noimages"),
    case(["quantize", "mobilenet_v1_0.25_128", "--calib", "{d}/badimages"], "badimages"),
    case(["quantize", "mobilenet_v1_0.25_128", "--calib", "{d}/wrong_shape.npy"], "wrong_shape.npy"),
    case(["quantize", "mobilenet_v1_0.25_128", "--calib", "{d}/wrong_dtype.npy"], "wrong_dtype.npy"),
    case(["quantize", "mobilenet_v1_0.25_128", "--calib", "synthetic", "--samples", "0"], "--samples", "0"),
    case(["quantize", "mobilenet_v1_0.25_128", "--format", "onnx", "--precision", "float16"], "float16"),
    case(["quantize", "mobilenet_v1_0.25_128", "--format", "onnx", "--precision", "float32", "--opset", "9"],
         "--opset", "9"),
    case(["quantize", "mobilenet_v1_0.25_128", "--precision", "float32", "-o", "{d}/afile/x.tflite"], "afile"),
    case(["quantize", "mobilenet_v1_0.25_128", "--precision", "float16", "--reduce-range"], "--reduce-range",
         "float16"),
    case(["quantize", "mobilenet_v1_0.25_128", "--format", "onnx", "--precision", "int16x8"], "int16x8", "onnx"),
    case(["quantize", "mobilenet_v1_0.25_128", "--precision", "int16x8"], "--calib", "int16x8"),
    case(["quantize", "mobilenet_v1_0.25_128", "--precision", "int8", "--calib", "synthetic", "--io", "int16"],
         "--io int16", "int8"),
    case(["quantize", "mobilenet_v1_0.25_128", "--precision", "int16x8", "--calib", "synthetic", "--io", "uint8"],
         "--io uint8", "int16x8"),
    case(["quantize", "mobilenet_v1_0.25_128", "--precision", "int16x8", "--calib", "synthetic", "--debug-layers"],
         "--debug-layers", "int8"),
    case(["quantize", "mobilenet_v1_0.25_128", "--precision", "float32", "--min-top1-agreement", "2"],
         "--min-top1-agreement", "2"),
    # profile
    case(["profile", "{d}/nothere.tflite"], "nothere.tflite"),
    case(["profile", "{d}/adir.tflite"], "adir.tflite"),
    case(["profile", "{d}/empty.tflite"], "empty.tflite"),
    case(["profile", "{d}/random.tflite"], "random.tflite"),
    case(["profile", "{d}/random.onnx"], "random.onnx"),
    case(["profile", "{d}/truncated.tflite"], "truncated.tflite"),
    case(["profile", "{d}/really_tflite.onnx"], "really_tflite.onnx"),
    case(["profile", "{d}/model.txt"], "model.txt"),
    case(["profile", "{d}/random.tflite", "--runs", "0"], "--runs", "0"),
    case(["profile", "{d}/random.tflite", "--threads", "0"], "--threads", "0"),
    case(["profile", "{d}/random.tflite", "--warmup-runs", "-1"], "--warmup-runs", "-1"),
    case(["profile", "{d}/random.tflite", "--runtime", "tensorrt"], "--runtime", "tensorrt"),
    case(["profile", "{d}/random.tflite", "--min-time-s", "x"], "--min-time-s", "x"),
    # devices
    case(["devices", "show", "rpi9"], "rpi9"),
    case(["devices", "show", "raspberry"], "raspberry"),
    case(["profile", "{d}/random.tflite", "--device", "rpi44"], "--device", "rpi44"),
    # sweep
    case(["sweep", "--family", "mobilenet", "--alpha", "0.5,,x"], "--alpha", "0.5,,x"),
    case(["sweep", "--family", "mobilenet", "--alpha", "x"], "--alpha", "x"),
    case(["sweep", "--family", "mobilenet", "--alpha", "0.5", "--device", "rpi9"], "--device", "rpi9"),
    case(["sweep", "--family", "mobilenet", "--alpha", ",".join(f"{a / 10:.1f}" for a in range(1, 14)),
          "--resolution", "32,64,96,128,160,192,224,256", "--precision", "float32,float16,int8",
          "--format", "tflite,onnx"], "520 points", "--yes", id="sweep 520 points without --yes"),
    case(["sweep", "--family", "resnet", "--alpha", "0.5"], "resnet"),
    # recommend
    case(["recommend", "--device", "rpi9", "--budget-ms", "30"], "--device", "rpi9"),
    case(["recommend", "--device", "rpi4", "--budget-ms", "-3"], "--budget-ms", "-3"),
    case(["recommend", "--device", "rpi4", "--budget-ms", "30", "--min-top1", "7"], "--min-top1", "7"),
]


def _snapshot(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(d.rglob("*"))}


@pytest.mark.parametrize("cmd,fragments", CASES)
def test_bad_input(tmp_path, files, cmd, fragments):
    out = tmp_path / "out"
    out.mkdir()
    args = [a.replace("{d}", str(files)) for a in cmd]
    if cmd[0] in ("build", "quantize", "sweep") and "-o" not in cmd:
        args += ["-o", str(out)]
    before_in, before_out = _snapshot(files), _snapshot(out)
    res = subprocess.run([sys.executable, "-m", "edgecv", *args], capture_output=True, text=True, timeout=600,
                         cwd=tmp_path)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    for frag in fragments:
        assert frag in lines[0], lines[0]
    assert _snapshot(out) == before_out
    assert _snapshot(files) == before_in
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing written to the working folder


def test_the_table_is_large_enough():
    assert len(CASES) >= 40


@pytest.mark.parametrize("cmd", [
    ["quantize", "{d}/nothere.keras", "--precision", "float32"],
    ["quantize", "{d}/text.keras", "--precision", "float32"],
    ["quantize", "mobilenet_v1_0.25_128", "--calib", "{d}/wrong_shape.npy"],  # refused after the model is built
    ["build", "mobilenet", "--alpha", "0.25", "--weights", "{d}/nothere.h5"],
    ["sweep", "--family", "mobilenet", "--alpha", "0.25,x", "--device", "rpi4"],
], ids=["missing-model", "corrupt-model", "calib-shape", "build-weights", "sweep-grid"])
def test_refused_run_leaves_no_new_output_folder(tmp_path, files, cmd):
    """-o names folders that do not exist yet: a refused run must not leave them behind (empty or not)."""
    out = tmp_path / "new" / "out"
    args = [a.replace("{d}", str(files)) for a in cmd] + ["-o", str(out)]
    res = subprocess.run([sys.executable, "-m", "edgecv", *args], capture_output=True, text=True, timeout=600,
                         cwd=tmp_path)
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr
    assert list(tmp_path.iterdir()) == [], sorted(p.name for p in tmp_path.rglob("*"))
