"""edgecv sweep: grid validation, per-point cache, kill and resume, results files.

The real sweeps use MobileNetV1 0.25 at 32 and 64 px (the smallest valid inputs) so that a sweep of four
points is a minute of TensorFlow start-up rather than of conversion. The full 4x4x3 grid is timed by
``tools``-style measurement in the report, not here.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgecv.errors import EdgecvError
from edgecv.sweep.grid import build_spec, check_size, parse_floats, point_key

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "EDGECV_DEBUG": ""}
SMALL = ["--family", "mobilenet", "--alpha", "0.25", "--resolution", "32,64", "--precision", "float32,int8",
         "--device", "rpi4,pixel4", "--samples", "4", "--verify-samples", "2"]


def edgecv(*args: str, timeout: float = 900, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgecv", *args], capture_output=True, text=True,
                          env=env or ENV, timeout=timeout, **kw)


# --- bad input: one line, exit 2, nothing written ----------------------------------------------

@pytest.mark.parametrize("args, needle", [
    (["--alpha", "0.5,,x"], "--alpha"),
    (["--alpha", "0.5,x"], "'x' is not a number"),
    (["--alpha", ""], "--alpha: empty list"),
    (["--alpha", "0.5", "--resolution", "128,"], "--resolution"),
    (["--alpha", "0.5", "--resolution", "100"], "--resolution"),
    (["--alpha", "0.5", "--device", "rpi9"], "unknown device 'rpi9'"),
    (["--alpha", "0.5", "--device", "rpi4,,pixel4"], "--device"),
    (["--alpha", "0.5", "--precision", "int4"], "--precision: unknown value 'int4'"),
    (["--alpha", "0.5", "--precision", "float16", "--format", "onnx"], "float16 is not available"),
    (["--alpha", "0.5", "--calib", "/nonexistent/photos"], "--calib"),
    (["--alpha", "0.5", "-j", "0"], "-j"),
    (["--family", "resnet", "--alpha", "0.5"], "resnet"),
    (["--alpha", ",".join(f"{a / 100:.2f}" for a in range(4, 203)), "--resolution", "128"], "--yes"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, needle):
    out = tmp_path / "out"
    r = edgecv("sweep", *args, "-o", str(out), timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("edgecv: error:") and needle in lines[0], lines[0]
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_grid_over_500_points_needs_yes():
    alphas = ",".join(f"{a / 100:.2f}" for a in range(4, 203))  # 199 alphas x 3 precisions = 597 points
    spec = build_spec("mobilenet", alpha=alphas, resolution="128")
    assert len(spec.points) == 199 * 3
    with pytest.raises(EdgecvError, match="597 points"):
        check_size(spec, yes=False)
    check_size(spec, yes=True)
    small = build_spec("mobilenet", alpha="0.25,0.5,0.75,1.0", resolution="128,160,192,224")
    assert len(small.points) == 48  # 4 x 4 x 3
    check_size(small, yes=False)


def test_list_parsing():
    assert parse_floats("--alpha", "0.5, 0.25,0.5") == [0.5, 0.25]  # spaces allowed, duplicates dropped
    for bad in ("0.5,,x", ",0.5", "0.5,", "nan", "-1", "0"):
        with pytest.raises(EdgecvError, match="--alpha"):
            parse_floats("--alpha", bad)


def test_point_key_changes_with_what_changes_the_result():
    base = build_spec("mobilenet", alpha="0.5", resolution="128", precision="int8", samples=10)
    p = base.points[0]
    v = {"edgecv": "0.1.0", "tensorflow-cpu": "2.21.0"}
    k = point_key(p, base, v)
    assert k == point_key(p, build_spec("mobilenet", alpha="0.5", resolution="128", precision="int8", samples=10), v)
    # devices are predictions made from the stored static profile: not part of the point
    assert k == point_key(p, build_spec("mobilenet", alpha="0.5", resolution="128", precision="int8", samples=10,
                                        device="rpi4"), v)
    assert k != point_key(p, base, {**v, "tensorflow-cpu": "2.22.0"})
    assert k != point_key(p, build_spec("mobilenet", alpha="0.5", resolution="128", precision="int8", samples=20), v)
    assert k != point_key(build_spec("mobilenet", alpha="0.5", resolution="160", precision="int8").points[0], base, v)
    # a float point is not calibrated: --samples/--calib do not change it; host settings only with --measure-host
    f32 = build_spec("mobilenet", alpha="0.5", resolution="128", precision="float32", samples=10)
    kf = point_key(f32.points[0], f32, v)
    assert kf == point_key(f32.points[0], build_spec("mobilenet", alpha="0.5", resolution="128",
                                                     precision="float32", samples=20, host_runs=7), v)
    assert kf != point_key(f32.points[0], build_spec("mobilenet", alpha="0.5", resolution="128",
                                                     precision="float32", measure_host=True), v)


# --- a real sweep: killed midway, resumed, cached --------------------------------------------

def _point_files(out: Path) -> dict[str, float]:
    return {f.name: f.stat().st_mtime_ns for f in (out / "points").glob("*.json")} if (out / "points").is_dir() else {}


@pytest.fixture(scope="module")
def resumed_sweep(tmp_path_factory):
    """Start a 4-point sweep, SIGKILL it after its first finished point, re-run it to completion."""
    out = tmp_path_factory.mktemp("sweep") / "out"
    cmd = [sys.executable, "-m", "edgecv", "sweep", *SMALL, "-o", str(out), "-j", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV,
                            start_new_session=True)
    deadline = time.monotonic() + 900
    try:
        while time.monotonic() < deadline and proc.poll() is None and not _point_files(out):
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)  # the sweep itself, as `kill -9 PID` would
            proc.wait()
        try:  # then its worker processes (our own session), which would otherwise finish their task
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    killed_with = _point_files(out)
    assert 1 <= len(killed_with) < 4, f"the sweep should have been killed midway: {sorted(killed_with)}"
    assert not (out / "results.json").exists()
    t0 = time.monotonic()
    r = edgecv("sweep", *SMALL, "-o", str(out), "-j", "2", "--json")
    resume_s = time.monotonic() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    return {"out": out, "killed_with": killed_with, "resume": json.loads(r.stdout), "resume_s": resume_s}


def test_killed_sweep_resumes_and_completes(resumed_sweep):
    out, res = resumed_sweep["out"], resumed_sweep["resume"]
    files = _point_files(out)
    assert len(files) == 4
    assert res["points"] == 4 and res["failed"] == 0
    # the points finished before the kill were loaded, not recomputed
    assert res["cached"] >= len(resumed_sweep["killed_with"])
    for name, mtime in resumed_sweep["killed_with"].items():
        assert files[name] == mtime
    assert not list(out.rglob(".*.part*")), "no partial files left behind"


def test_results_files(resumed_sweep):
    out = resumed_sweep["out"]
    data = json.loads((out / "results.json").read_text())
    rows = data["rows"]
    assert len(rows) == 4 * 2  # points x devices
    with open(out / "results.csv", newline="") as fh:
        csv_rows = list(csv.DictReader(fh))
    assert len(csv_rows) == len(rows)
    assert {(r["model"], r["precision"], r["device"]) for r in csv_rows} == {
        (f"mobilenet_v1_0.25_{res}", p, d) for res in (32, 64) for p in ("float32", "int8") for d in ("rpi4", "pixel4")}
    for r in rows:
        assert r["status"] == "ok" and r["mode"] == "predicted"
        assert Path(r["artifact"]).is_file()
        assert r["latency_ms.mean"] > 0 and r["prediction.band_low_ms"] <= r["latency_ms.mean"] <= r["prediction.band_high_ms"]
        # independent reference: MACs counted on the Keras model by the cost pass (analytic, per layer)
        # vs MACs counted on the deployed TFLite graph by the profiler
        point = next(json.loads(f.read_text()) for f in (out / "points").glob(f"{r['point']}-*.json"))
        assert abs(r["macs"] - point["build"]["macs"]) <= 0.01 * point["build"]["macs"]
        # float32 weights are 4 bytes per parameter, int8 ~1 (+ int32 biases)
        bpp = r["weights_bytes"] / r["params"]
        assert (3.9 < bpp < 4.1) if r["precision"] == "float32" else (1.0 <= bpp < 1.6)
        # the float32 artifact reproduces the Keras model; verification ran on held-out photos
        if r["precision"] == "float32":
            assert r["sqnr_db"] > 60
    # rpi4 (Cortex-A72 @1.5 GHz) is predicted slower than pixel4 (Snapdragon 855) for every point
    by = {(r["point"], r["device"]): r["latency_ms.mean"] for r in rows}
    for pt in {r["point"] for r in rows}:
        assert by[(pt, "rpi4")] > by[(pt, "pixel4")]
    assert (out / "report.html").stat().st_size > 1_000_000  # plotly.js inlined


@pytest.mark.slow
def test_sweep_report_renders_in_chromium(resumed_sweep, tmp_path):
    from test_report import open_in_chromium

    res = open_in_chromium(resumed_sweep["out"] / "report.html", ["plot-latency-macs", "plot-size-latency"], tmp_path)
    assert res["errors"] == [] and res["requests"] == []
    assert res["plots"][0]["points"] == 8  # 4 points x 2 devices


def test_recommend_from_sweep(resumed_sweep):
    out = resumed_sweep["out"]
    r = edgecv("recommend", "--device", "rpi4", "--budget-ms", "1000", "--from-sweep", str(out), "--json")
    assert r.returncode == 0, r.stderr
    fits = json.loads(r.stdout)["fits"]
    rows = {(x["model"], x["precision"]): x for x in json.loads((out / "results.json").read_text())["rows"]
            if x["device"] == "rpi4"}
    assert {(c["model"], c["precision"]) for c in fits} == set(rows)
    for c in fits:
        assert c["latency_ms"] == pytest.approx(rows[(c["model"], c["precision"])]["latency_ms.mean"], rel=1e-3)
        assert c["published_top1"] is None  # 0.25 at 32/64 px is no published variant


def test_rerun_is_all_cached_and_force_recomputes(resumed_sweep, tmp_path):
    out = resumed_sweep["out"]
    before = _point_files(out)
    r = edgecv("sweep", *SMALL, "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)
    assert res["cached"] == 4 and res["computed"] == 0
    assert _point_files(out) == before  # nothing rewritten
    # adding a device converts nothing: predictions come from the stored static profiles
    r = edgecv("sweep", *SMALL[:-6], "--device", "rpi4,pixel4,rpi5", "--samples", "4", "--verify-samples", "2",
               "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)
    assert res["computed"] == 0 and res["rows"] == 4 * 3
    # --force on a one-point grid rewrites that point
    one = ["--alpha", "0.25", "--resolution", "32", "--precision", "float32", "--verify-samples", "2"]
    name = next(n for n in before if n.startswith("mobilenet_v1_0.25_32_float32"))
    r = edgecv("sweep", *one, "-o", str(out), "--force", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["computed"] == 1
    assert _point_files(out)[name] != before[name]


def test_python_api_and_error_points(tmp_path):
    """A point whose conversion fails deterministically is recorded as an error (and cached), not a crash."""
    from edgecv.sweep.api import SweepFailed, run_sweep

    bad = tmp_path / "calib"
    bad.mkdir()
    (bad / "x.npy").write_bytes(b"not an array")
    spec = build_spec("mobilenet", alpha="0.25", resolution="32", precision="int8", calib=str(bad / "x.npy"),
                      samples=2, verify_samples=1)
    with pytest.raises(SweepFailed) as ei:
        run_sweep(spec, tmp_path / "out", report=False)
    res = ei.value.result
    assert res.failed == 1 and "x.npy" in res.errors[0]
    assert res.rows[0]["status"] == "error" and res.rows[0]["error"]
    assert len(_point_files(tmp_path / "out")) == 1


@pytest.mark.slow
def test_ray_executor_on_a_local_ray_instance(tmp_path):
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install ray): the Ray executor is optional")
    del ray
    import secrets

    # Ray >= 2.52 authenticates clients with a shared token: the test's own instance gets a fresh one
    env = {**ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    head = subprocess.Popen(
        [sys.executable, "-c", "import ray, sys, time\n"
         "ray.init(num_cpus=2, include_dashboard=False, logging_level='ERROR')\n"
         "print(ray.get_runtime_context().gcs_address, flush=True)\n"
         "sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        address = head.stdout.readline().strip()
        assert address, "the local Ray instance did not start"
        out = tmp_path / "out"
        r = edgecv("sweep", "--alpha", "0.25", "--resolution", "32", "--precision", "float32,float16",
                   "--device", "rpi4", "--verify-samples", "2", "--executor", "ray", "--address", address,
                   "-o", str(out), "--json", env=env)
        assert r.returncode == 0, r.stderr[-3000:]
        res = json.loads(r.stdout)
        assert res["computed"] == 2 and res["failed"] == 0
        rows = json.loads((out / "results.json").read_text())["rows"]
        assert {r["precision"] for r in rows} == {"float32", "float16"}
        f16 = next(r for r in rows if r["precision"] == "float16")
        f32 = next(r for r in rows if r["precision"] == "float32")
        assert 0.45 < f16["file_bytes"] / f32["file_bytes"] < 0.6  # fp16 weights: half the bytes
    finally:
        head.stdin.close()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
