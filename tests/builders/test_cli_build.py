"""`edgecv build` / `edgecv models` / `edgecv --help` from the outside: exit codes, stderr, files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO


def run(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "edgecv", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)


def assert_one_line_error(res, *fragments):
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    for frag in fragments:
        assert frag in lines[0], lines[0]


BAD_BUILDS = [
    (["mobilenet", "--alpha", "0"], ["--alpha", "'0'"]),
    (["mobilenet", "--alpha", "-1"], ["--alpha", "'-1'"]),
    (["mobilenet", "--alpha", "abc"], ["--alpha", "'abc'"]),
    (["mobilenet", "--alpha", "nan"], ["--alpha", "'nan'"]),
    (["mobilenet", "--resolution", "0"], ["--resolution", "resolution=0"]),
    (["mobilenet", "--resolution", "31"], ["--resolution", "resolution=31"]),
    (["mobilenet", "--resolution", "100000"], ["--resolution", "resolution=100000"]),
    (["mobilenet", "--resolution", "2x"], ["--resolution", "'2x'"]),
    (["mobilenet_v2", "--resolution", "100"], ["--resolution", "resolution=100"]),
    (["resnet50"], ["unknown model family", "'resnet50'"]),
    (["mobilenett"], ["'mobilenett'", "Did you mean: mobilenet"]),
    (["efficientnet", "--variant", "b9"], ["--variant", "'b9'"]),
    (["efficientnet_lite", "--variant", "lite9"], ["--variant", "'lite9'", "Did you mean"]),
    (["efficientnet", "--alpha", "0.5"], ["--alpha"]),
    (["mobilenet", "--variant", "b0"], ["--variant"]),
    (["mobilenet", "--classes", "0"], ["--classes", "0"]),
    (["mobilenet", "--dropout", "1.5"], ["--dropout", "1.5"]),
    (["mobilenet", "--alpha", "0.001"], ["--alpha", "0.001"]),
    (["mobilenet_v2", "--depth-multiplier", "2"], ["--depth-multiplier"]),
    (["mobilenet", "--weights", "/nonexistent/w.h5"], ["--weights", "/nonexistent/w.h5"]),
]


@pytest.mark.parametrize("args,fragments", BAD_BUILDS, ids=lambda v: " ".join(v) if isinstance(v[0], str) else None)
def test_bad_build_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, fragments):
    out = tmp_path / "out"
    res = run("build", *args, "-o", str(out))
    assert_one_line_error(res, *fragments)
    assert not out.exists() or not any(out.iterdir())


def test_output_dir_that_is_a_file(tmp_path):
    f = tmp_path / "afile"
    f.write_text("keep me")
    res = run("build", "mobilenet", "--alpha", "0.25", "-o", str(f))
    assert_one_line_error(res, "--output-dir", str(f))
    assert f.read_text() == "keep me"
    res = run("build", "mobilenet", "--alpha", "0.25", "-o", str(f / "sub"))
    assert_one_line_error(res, "--output-dir", str(f / "sub"))


def test_output_dir_not_writable(tmp_path):
    if os.geteuid() == 0:
        target = "/proc/edgecv-not-writable"  # even root cannot create folders in /proc
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = str(ro / "out")
    res = run("build", "mobilenet", "--alpha", "0.25", "-o", target)
    assert_one_line_error(res, "--output-dir", target)


def test_build_writes_keras_file_and_json_summary(tmp_path):
    res = run("build", "mobilenet", "--alpha", "0.5", "--resolution", "128", "--json", "-o", str(tmp_path))
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    path = tmp_path / "mobilenet_v1_0.50_128.keras"
    assert summary["path"] == str(path) and path.is_file()
    assert summary["file_bytes"] == path.stat().st_size
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary files left behind
    import keras

    ref = keras.applications.MobileNet(alpha=0.5, input_shape=(128, 128, 3), weights=None)
    assert summary["params"] == ref.count_params()
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.count_params() == ref.count_params()
    # paper (Table 1 layers, counted by hand in test_builders): MACs scale with resolution squared
    assert summary["macs"] > 0 and summary["input_shape"] == [128, 128, 3]


def test_build_human_summary(tmp_path):
    res = run("build", "efficientnet_lite", "--variant", "lite0", "--resolution", "96", "-o", str(tmp_path))
    assert res.returncode == 0, res.stderr
    for word in ("efficientnet_lite0_r96", "parameters", "MACs", "MiB"):
        assert word in res.stdout


def test_help_does_not_import_tensorflow():
    code = ("import sys; from edgecv.cli import main\n"
            "for argv in (['--help'], ['build', '--help'], ['quantize', '--help'], ['profile', '--help']):\n"
            "    try: main(argv)\n"
            "    except SystemExit: pass\n"
            "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
            "assert not bad, bad\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "Commands:" in res.stdout and "build" in res.stdout


def test_console_script_help(tmp_path):
    import shutil

    exe = shutil.which("edgecv")
    if exe is None:
        pytest.skip("edgecv console script not on PATH")
    res = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "quantize" in res.stdout or "build" in res.stdout
