"""``edgecv quantize`` from the command line: bad input, --json, gates, no partial artifacts.

Bad-input cases run the real console entry point in a subprocess and check: exit code 2, exactly one
line on stderr naming the option or file and the value, no traceback, and nothing at the output path.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest


def edgecv(*args: str, cwd: Path | None = None, timeout: float = 900, **env: str) -> subprocess.CompletedProcess:
    code = "import sys; from edgecv.cli import main; sys.argv[0] = 'edgecv'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env})


def one_line_error(p: subprocess.CompletedProcess, *needles: str, code: int = 2) -> None:
    err = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == code, p.stderr
    assert "Traceback" not in p.stderr
    errs = [ln for ln in err if ln.startswith("edgecv: error:")]
    assert len(errs) == 1, p.stderr
    for n in needles:
        assert n in errs[0], errs[0]


def _cases(tmp: Path) -> dict[str, tuple[list[str], tuple[str, ...]]]:
    corrupt = tmp / "corrupt.keras"
    corrupt.write_bytes(b"PK\x03\x04 this is not really a zip archive")
    notmodel = tmp / "notmodel.keras"
    with zipfile.ZipFile(notmodel, "w") as zf:
        zf.writestr("readme.txt", "hello")
    empty = tmp / "empty"
    empty.mkdir()
    noimg = tmp / "noimg"
    noimg.mkdir()
    (noimg / "a.txt").write_text("x")
    blocker = tmp / "a_file"
    blocker.write_text("x")
    out = str(tmp / "out")
    return {
        "missing_model": (["quantize", str(tmp / "nope.keras"), "--precision", "float32", "-o", out],
                          ("MODEL", "nope.keras")),
        "corrupt_model": (["quantize", str(corrupt), "--precision", "float32", "-o", out], ("corrupt.keras",)),
        "not_a_model": (["quantize", str(notmodel), "--precision", "float32", "-o", out],
                        ("not a Keras model", "notmodel.keras")),
        "unknown_name": (["quantize", "mobilenet_v9_0.50_224", "--precision", "float32", "-o", out],
                         ("unknown model", "Did you mean")),
        "samples_0": (["quantize", "mobilenet_v1_0.50_224", "--samples", "0", "--calib", "synthetic", "-o", out],
                      ("--samples", "0")),
        "empty_calib": (["quantize", "mobilenet_v1_0.50_224", "--calib", str(empty), "-o", out],
                        ("--calib", "empty")),
        "no_images": (["quantize", "mobilenet_v1_0.50_224", "--calib", str(noimg), "-o", out],
                      ("--calib", "no JPEG or PNG")),
        "no_calib": (["quantize", "mobilenet_v1_0.50_224", "-o", out], ("--calib", "int8 needs calibration")),
        "unwritable_out": (["quantize", "mobilenet_v1_0.50_224", "--precision", "float32", "-o",
                            str(blocker / "sub")], ("-o", "a_file")),
        "proc_out": (["quantize", "mobilenet_v1_0.50_224", "--precision", "float32", "-o", "/proc/edgecv/x"],
                     ("-o", "/proc/edgecv/x")),
        "onnx_fp16": (["quantize", "mobilenet_v1_0.50_224", "--precision", "float16", "--format", "onnx",
                       "-o", out], ("float16", "onnx")),
        "bad_top1": (["quantize", "mobilenet_v1_0.50_224", "--min-top1-agreement", "2", "-o", out],
                     ("--min-top1-agreement", "2")),
    }


CASE_NAMES = ["missing_model", "corrupt_model", "not_a_model", "unknown_name", "samples_0", "empty_calib",
              "no_images", "no_calib", "unwritable_out", "proc_out", "onnx_fp16", "bad_top1"]


def edgecv_inprocess(capsys, *args: str) -> subprocess.CompletedProcess:
    """The console entry point run in this process (same code path as the `edgecv` script)."""
    from edgecv.cli import main

    with pytest.raises(SystemExit) as ei:
        main(list(args))
    cap = capsys.readouterr()
    return subprocess.CompletedProcess(args, ei.value.code, cap.out, cap.err)


@pytest.mark.parametrize("case", CASE_NAMES)
def test_bad_input_is_one_line_exit_2_before_tensorflow(tmp_path, capsys, case):
    args, needles = _cases(tmp_path)[case]
    p = edgecv_inprocess(capsys, *args)
    one_line_error(p, *needles)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("case", ["corrupt_model", "no_calib"])
def test_refused_in_a_fresh_process_without_importing_tensorflow(tmp_path, case):
    args, needles = _cases(tmp_path)[case]
    code = ("import atexit, sys; from edgecv.cli import main; "
            "atexit.register(lambda: print('TF-LOADED' if 'tensorflow' in sys.modules else 'TF-NOT-LOADED', "
            "file=sys.stderr)); main(sys.argv[1:])")
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert "TF-NOT-LOADED" in p.stderr
    p.stderr = p.stderr.replace("TF-NOT-LOADED", "")
    one_line_error(p, *needles)


def test_corrupt_keras_payload_is_caught_by_the_isolated_loader(tmp_path):
    """A valid zip with a config.json that Keras cannot load: one line, exit 2, nothing written."""
    bad = tmp_path / "bad.keras"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("config.json", '{"class_name": "Functional", "config": {"layers": "garbage"}}')
        zf.writestr("metadata.json", '{"keras_version": "3.15.1"}')
    p = edgecv("quantize", str(bad), "--precision", "float32", "-o", str(tmp_path / "out"), timeout=300)
    one_line_error(p, "MODEL", "bad.keras", "cannot load")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.slow
def test_keras_file_json_and_gate(tmp_path):
    """A .keras file from `edgecv build`: --json prints only the result; a gate gives exit 3, file kept."""
    from conftest import recalibrate_bn

    from edgecv.builders.registry import create_model, get_config
    from edgecv.conversion.calibration import sample_images

    name = "mobilenet_v1_0.50_128"
    pre = get_config(name).spec.preprocessing
    m = create_model(name, classifier_activation=None)
    recalibrate_bn(m, pre.apply(sample_images(32, 128, seed=1)))
    kf = tmp_path / f"{name}.keras"
    m.save(kf)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    from PIL import Image

    for i, px in enumerate(sample_images(30, 160, seed=2).astype(np.uint8)):
        Image.fromarray(px).save(imgs / f"p{i}.{'png' if i % 2 else 'jpg'}")
    (imgs / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "out"
    p = edgecv("quantize", str(kf), "--precision", "int8", "--calib", str(imgs), "--samples", "20",
               "--verify-samples", "8", "-o", str(out), "--json", "--quiet")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)  # stdout is exactly one JSON object
    assert res["path"] == str(out / f"{name}_int8.tflite") and res["status"] == "ok"
    assert res["calibration"]["kind"] == "dir" and res["calibration"]["files_skipped"] == 1
    assert "unreadable" in p.stderr and "broken.jpg" in p.stderr  # warnings still reach stderr
    assert res["verification"]["sqnr_db"] > 5
    side = json.loads(Path(res["sidecar"]).read_text())
    assert side["verification"] == res["verification"] and side["source"] == str(kf)
    assert sorted(x.name for x in out.iterdir()) == [f"{name}_int8.tflite", f"{name}_int8.tflite.json"]

    p = edgecv("quantize", str(kf), "--precision", "float16", "-o", str(out), "--min-sqnr", "250", "--quiet")
    one_line_error(p, "SQNR", "--min-sqnr 250", code=3)
    assert "verification" in p.stdout  # the summary table still shows the figures
    side = json.loads((out / f"{name}_float16.tflite.json").read_text())
    assert (out / f"{name}_float16.tflite").exists() and side["status"] == "failed"

    # --debug-layers: the table of worst layers, with the output SQNR each gives back when kept in float
    p = edgecv("quantize", str(kf), "--precision", "int8", "--calib", str(imgs), "--samples", "20",
               "--verify-samples", "8", "--debug-layers", "--quiet", "-o", str(out / "dbg.tflite"), COLUMNS="200")
    assert p.returncode == 0, p.stderr
    assert "worst int8 layers (output SQNR as converted:" in p.stdout and "output SQNR if float" in p.stdout
    side = json.loads((out / "dbg.tflite.json").read_text())
    got = [e["output_sqnr_db_if_float"] for e in side["debug_layers"] if e["output_sqnr_db_if_float"] is not None]
    assert len(got) == 3 and all(f"{g:.1f}" in p.stdout for g in got)
    dg = side["diagnosis"]
    assert f"diagnosis ({dg['culprit']}): " in p.stdout and f"{dg['int16x8_sqnr_db']:.1f} dB" in p.stdout
