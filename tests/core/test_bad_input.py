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
    case(["quantize", "mobilenet_v1_0.25_128", "--calib", "synthetic", "--seed", "-1"], "--seed", "-1", id="quantize --seed -1"),
    case(["quantize", "mobilenet_v1_0.25_128", "--calib", "synthetic", "--seed", "4294967296"], "--seed",
         "4294967296", id="quantize --seed 2**32"),
    case(["quantize", "mobilenet_v1_0.25_128", "--calib", "synthetic", "--samples", "100000000"],
         "--samples 100000000", "EDGECV_MAX_SAMPLE_BYTES",
         id="quantize --samples 100000000"),
    case(["quantize", "mobilenet_v1_0.25_128", "--precision", "float32", "--verify-samples", "100000000"],
         "--verify-samples 100000000", "EDGECV_MAX_SAMPLE_BYTES",
         id="quantize --verify-samples 100000000"),
    # quantize: choosing a precision (--max-drop) and the input preprocessing
    case(["quantize", "mobilenet_v1_0.25_128", "--max-drop", "-1", "--eval-data", "{d}/emptydir"], "--max-drop",
         "-1"),
    case(["quantize", "mobilenet_v1_0.25_128", "--max-drop", "abc"], "--max-drop", "abc"),
    case(["quantize", "mobilenet_v1_0.25_128", "--max-drop", "1"], "--max-drop", "--eval-data"),
    case(["quantize", "mobilenet_v1_0.25_128", "--max-drop", "1", "--eval-data", "{d}/emptydir", "--calib",
          "{d}/emptydir", "--device", "rpi9"], "--device", "rpi9", id="quantize --max-drop --device rpi9"),
    case(["quantize", "mobilenet_v1_0.25_128", "--precision", "float32", "--preprocess", "bogus"], "--preprocess",
         "bogus", id="quantize --preprocess bogus"),
    case(["quantize", "mobilenet_v1_0.25_128", "--precision", "float32", "--preprocess", "mean=1,2,3;std=0,1,1"],
         "--preprocess", "std=0,1,1", id="quantize --preprocess std 0"),
    # evaluate
    case(["evaluate", "{d}/random.tflite", "--data", "{d}/nothere"], "--data", "nothere"),
    case(["evaluate", "{d}/random.tflite"], "--data"),
    case(["evaluate", "{d}/random.tflite", "--data", "{d}/emptydir", "--batch", "0"], "--batch", "0"),
    case(["evaluate", "{d}/model.txt", "--data", "{d}/emptydir"], "model.txt"),
    case(["evaluate", "{d}/random.tflite", "--data", "{d}/wrong_dtype.npy"], "--data", "wrong_dtype.npy"),
    case(["evaluate", "{d}/random.tflite", "--data", "{d}/emptydir", "--reference", "{d}/model.txt"], "--reference",
         "model.txt"),
    # profile: verification and sustained runs on a target
    case(["profile", "{d}/random.tflite", "--verify", "0"], "--verify", "0"),
    case(["profile", "{d}/random.tflite", "--duration", "10s"], "--duration", "10s", "--target"),
    case(["profile", "{d}/random.tflite", "--target", "ssh://pi@192.0.2.1", "--duration", "abc"], "--duration",
         "abc", id="profile --target --duration abc"),
    case(["profile", "{d}/random.tflite", "--target", "ssh://pi@192.0.2.1", "--duration", "10s", "--interval", "0s"],
         "--interval", "0s", id="profile --target --interval 0s"),
    case(["profile", "{d}/random.tflite", "--interval", "x"], "--interval", "x"),
    case(["profile", "{d}/random.tflite", "--verify-reference", "{d}/model.txt"], "--verify-reference", "model.txt"),
    case(["profile", "{d}/random.tflite", "--benchmark-binary", "{d}/nothere"], "--benchmark-binary", "nothere"),
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
    case(["profile", "{d}/random.tflite", "--threads", "100000"], "threads", "100000"),  # crashed LiteRT
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
    case(["sweep", "--model", "{d}/nosuchmodel.keras"], "--model", "nosuchmodel.keras"),
    case(["sweep", "--family", "mobilenet", "--alpha", "0.25", "--classes", "0"], "--classes", "0"),
    case(["sweep", "--family", "mobilenet", "--alpha", "0.25", "--weights", "{d}/nothere.h5"], "--weights",
         "nothere.h5"),
    pytest.param(["sweep", "--family", "mobilenet", "--alpha", "0.25", "--eval-data", "{d}/nothere"],
                 ("--eval-data", "nothere"), id="sweep --eval-data nothere"),
    case(["sweep", "--family", "mobilenet", "--alpha", "0.25", "--samples", "100000000"], "--samples 100000000",
         "EDGECV_MAX_SAMPLE_BYTES", id="sweep --samples 100000000"),
    case(["sweep", "--family", "mobilenet", "--alpha", "0.25", "-j", "100000"], "-j/--jobs", "100000",
         id="sweep -j 100000"),
    case(["demo", "-j", "100000"], "-j/--jobs", "100000", id="demo -j 100000"),
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


def _pre():
    from edgecv.builders.arch import Preprocessing

    return Preprocessing(range=(-1.0, 1.0), mean=(127.5,) * 3, std=(127.5,) * 3, in_model=False)


def test_sample_requests_are_bounded_by_the_data_then_by_memory(tmp_path, monkeypatch):
    """A folder bounds what is read: --samples 10**8 over 3 images reads 3 (no refusal). Generated samples
    (synthetic, the built-in photos) are bounded by memory: 4 bytes x H x W x C x 2 copies each, refused above
    EDGECV_MAX_SAMPLE_BYTES in one line that names the request, the bytes and the variable."""
    from PIL import Image

    from edgecv.conversion.calibration import load_calibration
    from edgecv.errors import EdgecvError

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    data = load_calibration(str(folder), input_shape=(32, 32, 3), preprocessing=_pre(), samples=10**8, holdout=2)
    assert len(data.calib) + len(data.holdout) <= 3 + 2

    per_sample = 32 * 32 * 3 * 4 * 2  # float32, two copies
    monkeypatch.setenv("EDGECV_MAX_SAMPLE_BYTES", str(10 * per_sample))
    load_calibration("synthetic", input_shape=(32, 32, 3), preprocessing=_pre(), samples=8, holdout=2)  # = limit
    with pytest.raises(EdgecvError) as exc:
        load_calibration("synthetic", input_shape=(32, 32, 3), preprocessing=_pre(), samples=9, holdout=2)
    msg = str(exc.value)
    assert "\n" not in msg and "--samples 9 + --verify-samples 2" in msg and "EDGECV_MAX_SAMPLE_BYTES" in msg, msg
    assert f"{11 * per_sample / 1000:,.1f} KB" in msg, msg  # 11 samples x 24,576 bytes
    monkeypatch.setenv("EDGECV_MAX_SAMPLE_BYTES", str(2 * per_sample))
    with pytest.raises(EdgecvError, match="3 of 3 images"):  # the folder's 3 images exceed a 2-sample limit
        load_calibration(str(folder), input_shape=(32, 32, 3), preprocessing=_pre(), samples=10**8, holdout=2)
    monkeypatch.setenv("EDGECV_MAX_SAMPLE_BYTES", "-5")
    with pytest.raises(EdgecvError, match="EDGECV_MAX_SAMPLE_BYTES: expected an integer >= 1. Received: -5"):
        load_calibration("synthetic", input_shape=(32, 32, 3), preprocessing=_pre(), samples=1, holdout=0)
