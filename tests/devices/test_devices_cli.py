"""``edgecv devices`` and ``edgecv profile MODEL --device``: output, JSON, bad input (exit 2, one line)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(*args, env=None, cwd=None, timeout=300):
    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "edgecv", *args], capture_output=True, text=True, env=e,
                          cwd=cwd or REPO, timeout=timeout)


def test_devices_lists_every_profile():
    r = run("devices")
    assert r.returncode == 0, r.stderr
    for d in ("rpi4", "rpi5", "pixel7", "jetson-nano-cpu", "coral-devboard-cpu", "host"):
        assert d in r.stdout
    rows = json.loads(run("devices", "--json").stdout)
    ids = {x["id"] for x in rows}
    assert {"rpi2", "rpi3bplus", "rpi4", "rpi5", "rpi-zero2w", "pixel2", "pixel3", "pixel3a", "pixel4", "pixel7",
            "jetson-nano-cpu", "coral-devboard-cpu", "host"} <= ids
    rpi4 = next(x for x in rows if x["id"] == "rpi4")
    assert rpi4["cores"] == 4 and rpi4["method"] == "nnls" and rpi4["anchors"] == 4
    assert next(x for x in rows if x["id"] == "rpi5")["method"] == "prior"


def test_devices_show_one():
    r = run("devices", "show", "rpi4")
    assert r.returncode == 0, r.stderr
    assert "cortex-a72" in r.stdout and "LPDDR4" in r.stdout and "mobilenet_v2_1.00_224" in r.stdout
    d = json.loads(run("devices", "show", "rpi5", "--json").stdout)
    assert d["id"] == "rpi5" and d["clusters"][0]["core"] == "cortex-a76"
    assert d["derived"]["dotprod"] is True and d["prediction"]["method"] == "prior"
    assert json.loads(run("devices", "--json", "show", "pixel3").stdout)["id"] == "pixel3"


def test_unknown_device_exit_2_with_suggestion():
    r = run("devices", "show", "rpi44")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert "unknown device 'rpi44'" in r.stderr and "rpi4" in r.stderr and "Traceback" not in r.stderr


def test_malformed_profile_exit_2_names_file_and_field(tmp_path):
    d = tmp_path / "profiles"
    shutil.copytree(REPO / "device_profiles", d)
    f = d / "rpi4.toml"
    f.write_text(f.read_text().replace("count = 4", "count = -4", 1))
    r = run("devices", env={"EDGECV_DEVICE_PROFILES": str(d)})
    assert r.returncode == 2
    assert "rpi4.toml" in r.stderr and "clusters[0].count" in r.stderr and "-4" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


@pytest.mark.slow
def test_profile_predicts_for_a_device(tmp_path):
    """The whole path: a built model through `edgecv profile model --device rpi4 --threads 8 --budget-ms`
    (the profiler's static analysis of the converted TFLite graph, then this predictor)."""
    pytest.importorskip("tensorflow")
    from edgecv.builders.registry import create_model

    path = str(tmp_path / "mobilenet_v1_0.25_128.keras")
    create_model("mobilenet_v1_0.25_128").save(path)
    r = run("profile", path, "--device", "rpi4", "--threads", "8", "--budget-ms", "50", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["mode"] == "predicted" and res["device"] == "rpi4"
    p = res["prediction"]
    assert p["threads"] == 4 and any("--threads 8" in w for w in p["warnings"])
    assert p["band_low_ms"] < p["latency_ms"] < p["band_high_ms"] and p["meets_budget"] is True
    assert p["fits_ram"] is True and p["peak_memory_bytes"] > res["weights_bytes"]
    # Pixel 3 hosted table: MobileNetV1 0.25-128 fp32 1.2 ms on 4 threads; a Pi 4 is several times slower
    assert 1.2 < p["latency_ms"] < 20
