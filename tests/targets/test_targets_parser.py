"""Fast tests of edgecv.targets without a target: benchmark_model output parsing (on real output text),
target URIs, ssh error messages, and the calibration-anchor CSV."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from edgecv.errors import EdgecvError
from edgecv.records import EnvInfo, InputInfo, LatencyStats, Prediction, ProfileResult, RuntimeInfo
from edgecv.targets import parse_target
from edgecv.targets.adb import AdbTarget, benchmark_command, cpu_mask
from edgecv.targets.anchor import (ANCHOR_COLUMNS, anchor_row, append_anchor, comparison, format_comparison,
                                  model_identity)
from edgecv.targets.benchmark_model import BenchmarkOutputError, parse_benchmark_model, strip_prefix
from edgecv.targets.ssh import SshTarget, ssh_error_message

DATA = Path(__file__).resolve().parents[1] / "data" / "benchmark_model"
REFERENCE_CSV = Path(__file__).resolve().parents[1] / "data" / "published_latency.csv"  # ../shared/reference's


def fixture_text(name: str) -> str:
    return "".join(ln for ln in (DATA / name).read_text(encoding="utf-8").splitlines(keepends=True)
                   if not ln.startswith("# "))


def test_fixtures_cite_their_source():
    for f in DATA.glob("*.txt"):
        head = f.read_text(encoding="utf-8").splitlines()[:3]
        assert any(ln.startswith("# Source: github.com/") for ln in head), f.name


# --- benchmark_model output: the numbers below are read off the fixture text by hand --------------------

def test_android_output_mi11():
    out = parse_benchmark_model(fixture_text("android_xiaomi_mi11_yolov5s_fp32_cpu.txt"))
    assert out.init_ms == pytest.approx(16.242)
    assert out.first_inference_ms == pytest.approx(360.262)
    assert out.warmup_avg_ms == pytest.approx(304.586)
    assert out.inference_avg_ms == pytest.approx(249.684)
    assert out.runs.count == 50 and out.runs.min_us == 247067 and out.runs.max_us == 254474
    assert out.runs.std_us == 1442
    assert out.warmup is None  # the quoted output starts at the timed-runs line
    assert out.memory_init_bytes == round(4.92969 * 2**20)
    assert out.memory_overall_bytes == round(138.809 * 2**20)
    lat = out.latency_ms()
    assert lat.mean == pytest.approx(249.684) and lat.min == pytest.approx(247.067)
    assert lat.p50 is None and lat.p90 is None and lat.runs == 50


def test_raspberry_pi_output_with_warmup_line_and_xnnpack():
    out = parse_benchmark_model(fixture_text("rpi_yolo_int8_xnnpack.txt"))
    assert out.warmup.count == 9 and out.warmup.avg_us == pytest.approx(57758.2)
    assert out.runs.count == 50 and out.runs.avg_us == pytest.approx(55043.2)
    # the timed-runs line and the summary line agree
    assert out.runs.avg_us / 1000 == pytest.approx(out.inference_avg_ms)
    assert out.warmup.avg_us / 1000 == pytest.approx(out.warmup_avg_ms)
    assert out.init_ms == pytest.approx(18.777) and out.first_inference_ms == pytest.approx(64.791)
    assert out.threads == 4
    assert out.delegates == ("xnnpack",)
    assert out.model_file_bytes == round(3.67827e6)
    assert out.memory_overall_bytes == round(18.7227 * 2**20)


def test_info_prefixed_output():
    text = fixture_text("linux_x86_mobilenet_v1_quant_info_prefix.txt")
    out = parse_benchmark_model(text)
    assert (out.warmup.count, out.runs.count) == (5, 50)
    assert out.inference_avg_ms == pytest.approx(116.066)
    assert out.runs.min_us == 111222
    assert out.memory_init_bytes == round(3.75 * 2**20)
    assert out.model_file_bytes == round(4.27635e6)


def test_logcat_prefixed_output():
    """The Android APK logs through logcat: every line gets a "MM-DD time pid tid I tflite  : " prefix."""
    prefix = "05-31 10:31:13.023 21767 21767 I tflite  : "
    text = "".join(prefix + ln for ln in fixture_text("rpi_yolo_int8_xnnpack.txt").splitlines(keepends=True))
    assert strip_prefix(prefix + "count=50 first=1") == "count=50 first=1"
    out = parse_benchmark_model(text)
    assert out.runs.count == 50 and out.inference_avg_ms == pytest.approx(55.0432)
    assert out.threads == 4


def test_scientific_notation_and_op_profiling_tables():
    out = parse_benchmark_model(fixture_text("riscv64_mobilenet_v1_op_profiling.txt"))
    assert out.inference_avg_ms == pytest.approx(2950.34)
    assert out.warmup_avg_ms == pytest.approx(3512.39)
    # the timed-runs line, not the op profiler's "Timings (microseconds): count=50 ... min=2727203" line
    assert out.runs.min_us == 2727568 and out.runs.avg_us == pytest.approx(2.95034e6)
    assert out.warmup.count == 1
    assert out.memory_overall_bytes == round(46.0859 * 2**20)
    assert out.model_file_bytes == round(16.9008e6)


def test_failed_run_raises_with_the_tools_error():
    with pytest.raises(BenchmarkOutputError, match="ANEURALNETWORKS_OP_FAILED"):
        parse_benchmark_model(fixture_text("android_xiaomi_mi11_nnapi_failed.txt"))
    with pytest.raises(BenchmarkOutputError, match="no 'Inference timings'"):
        parse_benchmark_model("STARTING!\nLoaded model m.tflite\n")


def test_benchmark_command_and_cpu_mask():
    assert cpu_mask("4-7") == "f0" and cpu_mask("0,2") == "5" and cpu_mask("1") == "2"
    with pytest.raises(EdgecvError, match="--cpus"):
        cpu_mask("a-b")
    cmd = benchmark_command("/data/local/tmp/edgecv.x", "model.tflite", threads=2, warmup_runs=3, runs=20,
                            min_time_s=0.5, cpus="4-7")
    assert cmd.startswith("taskset f0 /data/local/tmp/edgecv.x/benchmark_model ")
    for flag in ("--graph=/data/local/tmp/edgecv.x/model.tflite", "--num_threads=2", "--warmup_runs=3",
                 "--warmup_min_secs=0", "--num_runs=20", "--min_secs=0.5"):
        assert flag in cmd.split()


# --- target URIs ------------------------------------------------------------------------------------

def test_parse_targets():
    t = parse_target("ssh://pi@raspberrypi.local:2222")
    assert t == SshTarget(host="raspberrypi.local", user="pi", port=2222)
    assert t.uri == "ssh://raspberrypi.local:2222"  # no user name in results
    assert parse_target("ssh://board").uri == "ssh://board"
    assert parse_target("ssh://pi@[::1]:22").uri == "ssh://[::1]:22"
    assert parse_target("ssh://pi@host?python=/home/pi/venv/bin/python3").python == "/home/pi/venv/bin/python3"
    assert parse_target("adb") == AdbTarget(None)
    assert parse_target("adb:emulator-5554") == AdbTarget("emulator-5554")


@pytest.mark.parametrize("bad, match", [
    ("pi@raspberrypi", "Did you mean: ssh://pi@raspberrypi"),
    ("ssh://", "expected ssh://"),
    ("ssh://pi@host:notaport", "expected ssh://"),
    ("ssh://pi@host/some/path", "expected ssh://"),
    ("ssh://host?pyton=x", "Did you mean: python"),
    ("ssh://-oProxyCommand=x", "invalid host"),
    ("adb:", "invalid adb serial"),
    ("adb:-s", "invalid adb serial"),
    ("usb://phone", "expected ssh://"),
])
def test_bad_targets(bad, match):
    with pytest.raises(EdgecvError, match=match):
        parse_target(bad)


def test_password_in_uri_is_refused_and_not_echoed():
    with pytest.raises(EdgecvError) as err:
        parse_target("ssh://pi:hunter2@raspberrypi")
    assert "hunter2" not in str(err.value) and "passwords are not accepted" in str(err.value)


@pytest.mark.parametrize("stderr, match", [
    ("ssh: connect to host 127.0.0.1 port 1: Connection refused", "connection refused"),
    ("ssh: Could not resolve hostname nohost.invalid: Name or service not known", "unknown host"),
    ("ssh: connect to host 10.255.255.1 port 22: Connection timed out", "unreachable"),
    ("pi@board: Permission denied (publickey,password).", "authentication failed"),
    ("Host key verification failed.", "host key"),
])
def test_ssh_error_messages(stderr, match):
    msg = ssh_error_message(SshTarget("board", "pi"), stderr)
    assert match in msg and "\n" not in msg


# --- anchors -----------------------------------------------------------------------------------------

def _measured(model: str, p50: float | None = 41.5) -> ProfileResult:
    return ProfileResult(
        model=model, format="tflite", precision="int8", mode="measured", device="ssh://raspberrypi.local",
        macs=1, params=1, weights_bytes=1, file_bytes=1, peak_activation_bytes=1,
        latency_ms=LatencyStats(mean=42.0, std=1.0, min=40.0, p50=p50, p90=44.0, p99=45.0, runs=50),
        runtime=RuntimeInfo(name="litert", version="2.3.0", threads=4, delegate="xnnpack"),
        env=EnvInfo(cpu_model="Cortex-A72", inputs=(InputInfo(name="x", shape=(1, 160, 160, 3), dtype="int8"),)),
    )


def test_model_identity_from_registry_names():
    assert model_identity("out/mobilenet_v1_0.50_224_int8.tflite") == {
        "model": "mobilenet_v1", "width": 0.5, "resolution": 224}
    assert model_identity("efficientnet_lite0.tflite") == {"model": "efficientnet_lite", "width": "lite0",
                                                           "resolution": 224}
    assert model_identity("mydet.tflite", [1, 160, 160, 3]) == {"model": "mydet", "width": "",
                                                                "resolution": 160}


def test_save_anchor_appends_rows_readable_as_the_reference_csv(tmp_path):
    import shutil

    ref = REFERENCE_CSV
    out = tmp_path / "anchors.csv"
    shutil.copyfile(ref, out)
    before = ref.read_text(encoding="utf-8")
    append_anchor(out, anchor_row(_measured("mobilenet_v2_1.00_224_int8.tflite"), device="rpi4"))
    text = out.read_text(encoding="utf-8")
    assert text.startswith(before)  # existing rows untouched
    rows = list(csv.DictReader(text.splitlines()))
    last = rows[-1]
    assert (last["device"], last["model"], last["width"], last["resolution"], last["precision"],
            last["threads"], last["latency_ms"]) == ("rpi4", "mobilenet_v2", "1.0", "224", "int8", "4", "41.5")
    assert "xnnpack" in last["runtime"]
    # the device-profile fit reads it like the published anchors
    fit = pytest.importorskip("edgecv.devices.fit")
    ms = fit.read_measurements(out)
    assert ms[-1].model == "mobilenet_v2_1.00_224" and ms[-1].latency_ms == 41.5
    assert fit.runtime_family(ms[-1].runtime) == "xnnpack"


def test_save_anchor_new_file_and_bad_header(tmp_path):
    out = tmp_path / "new.csv"
    append_anchor(out, anchor_row(_measured("mydet.tflite", p50=None)))
    rows = list(csv.reader(out.read_text().splitlines()))
    assert tuple(rows[0]) == ANCHOR_COLUMNS and rows[1][2] == "mydet" and rows[1][4] == "160"
    assert rows[1][7] == "42"  # mean when no median was reported (benchmark_model)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(EdgecvError, match="--save-anchor"):
        append_anchor(bad, anchor_row(_measured("x.tflite")))
    assert bad.read_text() == "a,b\n1,2\n"
    assert not [p for p in os.listdir(tmp_path) if ".part" in p]  # no temporary file left behind



def test_concurrent_save_anchor_runs_lose_no_row(tmp_path):
    """Two processes appending to one anchor CSV at once (two boards measured in parallel): every row arrives."""
    import subprocess
    import sys

    out = tmp_path / "anchors.csv"
    code = ("import sys\nfrom edgecv.targets.anchor import append_anchor\n"
            "for k in range(25):\n    append_anchor(sys.argv[1], {'device': sys.argv[2], 'model': f'm{k}'})\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(out), dev]) for dev in ("rpi4", "rpi5")]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    rows = list(csv.DictReader(out.read_text(encoding="utf-8").splitlines()))
    assert sorted((r["device"], r["model"]) for r in rows) == sorted((d, f"m{k}") for d in ("rpi4", "rpi5")
                                                                      for k in range(25))

def _predicted(ms: float, low: float, high: float) -> ProfileResult:
    pred = Prediction(latency_ms=ms, band_low_ms=low, band_high_ms=high, band_fraction=0.2, fps=1000 / ms,
                      peak_memory_bytes=1, arena_bytes=1, weights_in_memory_bytes=1, runtime_baseline_bytes=0,
                      ram_bytes=2, usable_ram_bytes=2, fits_ram=True, budget_ms=None, meets_budget=None, threads=4,
                      energy_mj_per_inference=None, compute_dtype="int8", latency_by_class_ms={"conv": ms},
                      coefficients_method="nnls", coefficients_runtime="tflite-xnnpack")
    return ProfileResult(model="m.tflite", format="tflite", precision="int8", mode="predicted", device="rpi4",
                         macs=1, params=1, weights_bytes=1, file_bytes=1, peak_activation_bytes=1,
                         latency_ms=LatencyStats(mean=ms, std=0.0, min=ms, p50=ms, p90=ms, p99=ms, runs=0),
                         prediction=pred)


def test_comparison_error_and_band():
    predicted = _predicted(50.0, 40.0, 60.0)
    c = comparison(_measured("m.tflite", p50=40.0), predicted, "rpi4")
    assert c.device == "rpi4" and c.measured_ms == 40.0 and c.predicted_ms == 50.0
    assert c.error_pct == pytest.approx(25.0)  # (50 - 40) / 40
    assert c.ratio_measured_to_predicted == pytest.approx(0.8)
    assert c.within_band is True and c.prediction.fps == 20.0
    c = comparison(_measured("m.tflite", p50=70.0), predicted, "rpi4")
    assert c.within_band is False and c.error_pct == pytest.approx(100 * (50 - 70) / 70)
    res = replace(_measured("m.tflite", p50=70.0), comparison=c)
    assert format_comparison(res) == ("measured 70 ms on ssh://raspberrypi.local | predicted rpi4 50 ms | "
                                      "prediction error -28.6% (outside the predicted band)")


def test_comparison_json_keeps_its_old_keys_and_old_blocks_load():
    res = replace(_measured("m.tflite", p50=40.0),
                  comparison=comparison(_measured("m.tflite", p50=40.0), _predicted(50.0, 40.0, 60.0), "rpi4"))
    d = json.loads(json.dumps(res.to_dict()))
    # the keys the comparison had when it was a plain dict under "prediction"
    old_keys = {"device", "measured_ms", "predicted_ms", "error_pct", "ratio_measured_to_predicted", "band_low_ms",
                "band_high_ms", "fits_ram", "meets_budget", "fps", "warnings", "within_band"}
    assert old_keys <= set(d["prediction"]) and "comparison" not in d
    back = ProfileResult.from_dict(d)
    assert back == res and back.prediction is None
    # a record written before the change: the comparison without the whole prediction, and keys of a later version
    d["prediction"] = {"device": "rpi4", "measured_ms": 40.0, "predicted_ms": 50.0, "error_pct": 25.0,
                       "ratio_measured_to_predicted": 0.8, "band_low_ms": 40.0, "band_high_ms": 60.0,
                       "fits_ram": True, "meets_budget": None, "fps": 20.0, "warnings": [], "within_band": True,
                       "from_a_later_version": 1}
    old = ProfileResult.from_dict(d)
    assert old.comparison == replace(res.comparison, prediction=None)
    assert format_comparison(old) == format_comparison(res)


def test_runner_output_parsing_tolerates_login_noise_and_names_signals():
    import subprocess

    from edgecv.targets.ssh import _parse_runner_json, _runner_failure

    out = 'Welcome to Raspberry Pi OS\n{"not": "a result"}\n{"latency_ms": {"p50": 1.0}, "init_ms": 2}\n'
    assert _parse_runner_json(out) == {"latency_ms": {"p50": 1.0}, "init_ms": 2}
    assert _parse_runner_json("motd only\n") is None
    t = SshTarget("board", "pi")
    killed = subprocess.CompletedProcess([], 137, "", "edgecv-target: runner killed by signal 9\n")
    assert "killed mid-run by signal 9 (SIGKILL" in _runner_failure(t, killed)
    failed = subprocess.CompletedProcess([], 1, "", "INFO: x\nrunner: error: no TFLite runtime: install x\n")
    msg = _runner_failure(t, failed)
    assert msg.startswith("ssh://board: the runner failed: no TFLite runtime") and "ai-edge-litert" in msg
