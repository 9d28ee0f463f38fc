"""The SSH target on emulated Raspberry Pis (``tools/pi_lab.py``): Debian bookworm arm64 and armhf userlands
under qemu-user with a Raspberry Pi 4 /proc/cpuinfo, reached over SSH on loopback.

Skipped (one line) unless the lab was built (``python tools/pi_lab.py build``; the cached tarballs live in
``$EDGECV_PI_LAB``, default ``~/.cache/edgecv/pi-lab``) and this runs as root. Each module brings its labs up
and down itself. Timings under emulation mean nothing (600-1000x slower than a Pi): these tests check what
runs, what the target reports about itself, and the numbers the target computes.

The model is a MobileNetV1 0.25 trained for a few seconds on scikit-learn's digits (32 px, 10 classes), so
its outputs carry information (a random-weight net's softmax is nearly constant); it is converted here to
float32 and int8 .tflite and float32 .onnx with edgecv's own converter (sidecars name the .keras source).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PI_LAB = REPO / "tools" / "pi_lab.py"
LAB = Path(os.environ.get("EDGECV_PI_LAB") or Path.home() / ".cache" / "edgecv" / "pi-lab")

pytestmark = [pytest.mark.pilab, pytest.mark.slow]


def _lab_missing(arch: str) -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "the Pi lab needs root (chroot, mount)"
    if not (LAB / f"{arch}.tar.zst").exists():
        return f"no {arch} Pi lab (build it: python tools/pi_lab.py build --arch {arch})"
    return None


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve())
    with open("/proc/self/mountinfo") as fh:
        return [ln.split()[4] for ln in fh if ln.split()[4] == prefix or ln.split()[4].startswith(prefix + "/")]


class Lab:
    def __init__(self, arch: str):
        self.arch = arch
        self.root = LAB / "run" / arch
        res = subprocess.run([sys.executable, str(PI_LAB), "up", "--arch", arch], capture_output=True, text=True,
                             timeout=600)
        assert res.returncode == 0, res.stderr
        self.state = json.loads((LAB / "run" / f"{arch}.json").read_text())
        self.uri = self.state["uri"]
        self.env = dict(os.environ, EDGECV_SSH_OPTIONS=shlex.join(self.state["ssh_options"]))

    def down(self) -> None:
        res = subprocess.run([sys.executable, str(PI_LAB), "down", "--arch", self.arch], capture_output=True,
                             text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        assert _mounts_under(self.root) == []  # nothing stays mounted

    def leftovers(self) -> list[str]:
        return sorted(p.name for p in (self.root / "tmp").glob("edgecv.*"))

    def profile(self, model, *args, timeout=900) -> dict:
        before = self.leftovers()
        res = subprocess.run([sys.executable, "-m", "edgecv", "profile", str(model), "--target", self.uri,
                              "--threads", "1", "--warmup-runs", "1", "--runs", "3", "--min-time-s", "0", *args,
                              "--json"], capture_output=True, text=True, env=self.env, timeout=timeout)
        assert res.returncode == 0, res.stderr
        assert before == [] and self.leftovers() == []  # the run removed its folder on the target
        return json.loads(res.stdout)


@pytest.fixture(scope="module")
def lab_lock():
    """The labs are folders and an sshd on this machine, shared by every pytest process: ``pytest -n 2`` spreads
    this module's tests over both workers, and each would bring the same lab up and down under the other and see
    the other's folders on the target. A worker holds this lock from its first lab's ``up`` to the module's end,
    so the other waits (``--dist loadgroup`` cannot group them: pytest 9.2 broke it, pytest-xdist issue #1386)."""
    LAB.joinpath("run").mkdir(parents=True, exist_ok=True)
    with open(LAB / "run" / ".tests.lock", "w") as fh:
        deadline = time.monotonic() + 1800
        while True:
            with contextlib.suppress(BlockingIOError):
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            if time.monotonic() > deadline:
                pytest.fail("another pytest process held the Pi lab for 30 minutes")
            time.sleep(1)
        yield  # closing the file releases the lock


def _lab(arch: str, request):
    why = _lab_missing(arch)
    if why:
        pytest.skip(why)
    request.getfixturevalue("lab_lock")
    lab = Lab(arch)
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def arm64(request):
    yield from _lab("arm64", request)


@pytest.fixture(scope="module")
def armhf(request):
    yield from _lab("armhf", request)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """MobileNetV1 0.25 at 32 px trained on digits; float32/int8 .tflite and float32 .onnx with sidecars."""
    if _lab_missing("arm64") and _lab_missing("armhf"):
        pytest.skip(_lab_missing("arm64"))
    pytest.importorskip("sklearn")
    pytest.importorskip("tensorflow")
    from helpers import digits as _digits

    from edgecv.conversion.api import quantize

    out = tmp_path_factory.mktemp("pilab_models")
    data = _digits.load_digits(32, seed=0)
    tr = _digits.train("mobilenet_v1_0.25_224", data, epochs=4, learning_rate=1e-2, seed=0)
    keras_path = out / "digits_mnv1.keras"
    tr.model.save(keras_path)
    calib = _digits.save_calibration(out / "calib.npy", tr.preprocessing, data.x_train)
    paths = {}
    for key, prec, fmt in (("float32", "float32", "tflite"), ("int8", "int8", "tflite"),
                           ("onnx", "float32", "onnx")):
        res = quantize(str(keras_path), prec, format=fmt, calib=str(calib) if prec == "int8" else None,
                       samples=100, output=str(out / key), seed=0)
        paths[key] = Path(res.path)
    paths["keras"] = keras_path
    return paths


def _check_fingerprint(d: dict, machine: str) -> None:
    env = d["env"]
    assert env["machine"] == machine
    assert env["board"].startswith("Raspberry Pi 4 Model B")
    assert env["core"] == "Cortex-A72" and env["cpu_part"] == "0xd08"
    assert env["features"] == ["neon"]  # Cortex-A72: Advanced SIMD, no dot product, no fp16 arithmetic
    assert env["os"].startswith("Debian GNU/Linux 12")


def test_arm64_tflite_int8_and_float32_with_verify(arm64, models):
    """ai-edge-litert on arm64 (QEMU_CPU=cortex-a72) against the same LiteRT on x86: the same numbers."""
    d = arm64.profile(models["int8"], "--verify", "8")
    assert d["mode"] == "measured" and d["precision"] == "int8" and d["latency_ms"]["runs"] == 3
    assert d["runtime"]["name"] == "litert" and d["runtime"]["delegate"] == "xnnpack"
    _check_fingerprint(d, "aarch64")
    v = d["target"]["verify"]
    assert v["samples"] == 8 and v["preprocessing"] == "sidecar"
    assert v["vs_host"]["top1_agreement"] == 1.0 and not v["diverges"] and v["warnings"] == []
    assert v["vs_host"]["bit_exact"] or v["vs_host"]["sqnr_db"] > 60
    # the sidecar's source (the .keras model) is the second reference, on the host
    assert Path(v["reference"]).name == models["keras"].name
    assert v["vs_reference"]["top1_agreement"] >= 0.5
    d = arm64.profile(models["float32"], "--verify", "4", "--ops")
    assert d["precision"] == "float32"
    m = d["target"]["verify"]["vs_host"]
    assert m["top1_agreement"] == 1.0 and (m["bit_exact"] or m["sqnr_db"] > 80)
    # LiteRT's Python API has no op profiler: said, not invented
    assert d["target"]["op_timings"]["available"] is False
    assert "no per-op source" in d["target"]["op_timings"]["reason"]


def test_arm64_onnx_sustained_and_ops(arm64, models):
    d = arm64.profile(models["onnx"], "--duration", "6s", "--interval", "2s", "--ops")
    assert d["format"] == "onnx" and d["runtime"]["name"] == "onnxruntime"
    _check_fingerprint(d, "aarch64")
    sus = d["target"]["sustained"]
    assert len(sus["intervals"]) >= 2 and sus["duration_s"] >= 6
    iv = sus["intervals"][0]
    assert iv["p50_ms"] > 0 and iv["p90_ms"] >= iv["p50_ms"]
    # the lab's /sys holds Pi-like static thermal and cpufreq files; vcgencmd does not exist there
    assert iv["temp_c"] == {"cpu-thermal": 47.7} and iv["cpu_mhz"] == 1500
    assert any("vcgencmd" in u for u in sus["unavailable"])
    ot = d["target"]["op_timings"]
    assert ot["available"] and "onnxruntime" in ot["source"]
    assert ot["mapped"] >= 1 and sum(ot["by_class_ms"].values()) > 0


def test_armhf_tflite_runtime_float32_and_int8(armhf, models):
    """tflite-runtime 2.14 (armhf, Debian's numpy 1.24) against ai-edge-litert on the host: float32 agrees to
    float precision; int8 is reported, with a warning exactly when it diverges."""
    d = armhf.profile(models["float32"], "--verify", "4")
    assert d["runtime"]["name"] == "tflite_runtime" and d["runtime"]["version"] == "2.14.0"
    assert d["env"]["numpy"].startswith("1.24")  # Debian bookworm's python3-numpy
    _check_fingerprint(d, "armv7l")
    m = d["target"]["verify"]["vs_host"]
    assert m["top1_agreement"] == 1.0 and (m["bit_exact"] or m["sqnr_db"] > 60)
    d = armhf.profile(models["int8"], "--verify", "8")
    assert d["precision"] == "int8"
    v = d["target"]["verify"]
    assert v["target_runtime"].startswith("tflite_runtime 2.14")
    assert bool(v["warnings"]) == v["diverges"]
    print("\narmhf int8 vs host:", v["vs_host"], v["warnings"])
