"""Host measurement, the runner script, the ``edgecv profile`` command, bad input, and no TensorFlow import."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edgecv.errors import EdgecvError
from edgecv.records import RuntimeInfo

RUNNER = os.path.join(os.path.dirname(__file__), "..", "..", "edgecv", "profiling", "runner.py")
NAME = "mobilenet_v1_0.25_128"
SCHEMA_KEYS = {"model", "format", "precision", "mode", "device", "latency_ms", "init_ms", "peak_rss_bytes", "macs",
               "params", "weights_bytes", "file_bytes", "peak_activation_bytes", "ops", "env"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A small model as .keras, float32 .tflite and .onnx, and the builder's analytic cost of it."""
    import tensorflow as tf
    import tf2onnx

    from edgecv.builders.cost import model_cost
    from edgecv.builders.registry import create_model

    out = tmp_path_factory.mktemp("prof")
    model = create_model(NAME)
    cost = model_cost(model)
    paths = {"keras": str(out / f"{NAME}.keras"), "tflite": str(out / f"{NAME}.tflite"),
             "onnx": str(out / f"{NAME}.onnx")}
    model.save(paths["keras"])
    with open(paths["tflite"], "wb") as fh:
        fh.write(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    spec = (tf.TensorSpec((1,) + tuple(cost.input_shape), tf.float32, name="input"),)
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=13, output_path=paths["onnx"])
    return paths, cost


def run(args, env=None, timeout=300):
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)


def cli(*args, env=None):
    return run([sys.executable, "-m", "edgecv", *args], env=env)


# ---- runner.py ---------------------------------------------------------------------------------

def test_runner_prints_one_json_object(models):
    paths, _ = models
    res = run([sys.executable, RUNNER, paths["tflite"], "--threads", "1", "--warmup-runs", "1", "--runs", "7"])
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 1  # the XNNPACK banner the runtime prints goes to stderr
    d = json.loads(lines[0])
    lat = d["latency_ms"]
    assert lat["runs"] == 7
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"]
    assert lat["min"] <= lat["mean"] and lat["std"] >= 0
    assert d["init_ms"] > 0 and d["first_inference_ms"] > 0
    assert d["runtime"] == {"name": "litert", "version": d["runtime"]["version"], "threads": 1, "delegate": "xnnpack"}
    assert d["peak_rss_bytes"] >= d["rss_baseline_bytes"] > 0 and d["rss_growth_bytes"] > 0
    assert d["inputs"] == [{"name": d["inputs"][0]["name"], "shape": [1, 128, 128, 3], "dtype": "float32"}]
    env = d["env"]
    for key in ("cpu_model", "cores", "isa", "os", "python", "numpy", "runtime_version"):
        assert env[key], key
    assert env["numpy"] == np.__version__


def test_runner_result_is_checked_before_it_is_read(models):
    """The runner's real output (with a sustained run) reads; a damaged or foreign one (a target is untrusted) is
    one line naming where it ran, not an internal error."""
    from edgecv.profiling.api import apply_runner_json, runner_result_problem
    from edgecv.records import ProfileResult

    paths, _ = models
    res = run([sys.executable, RUNNER, paths["tflite"], "--warmup-runs", "1", "--runs", "3", "--cpus", "0",
               "--duration-s", "0.5", "--interval-s", "0.2"])
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout.splitlines()[-1])
    assert m["sustained"] and m["cpus"] and runner_result_problem(m) is None
    base = ProfileResult.from_dict({"model": "m.tflite", "format": "tflite", "precision": "float32",
                                    "mode": "measured", "device": "ssh://pi@board", "macs": None, "params": None,
                                    "weights_bytes": None, "file_bytes": 1, "peak_activation_bytes": None})
    assert apply_runner_json(base, m).latency_ms.runs == m["latency_ms"]["runs"]
    broken = [("latency_ms", {}), ("latency_ms", {"mean": "fast"}), ("runtime", None), ("init_ms", "soon"),
              ("peak_rss_bytes", True), ("cpus", [0, "x"]), ("env", {"cores": "many"}), ("inputs", [{"shape": 3}]),
              ("sustained", {"intervals": 3})]
    for key, value in broken:
        with pytest.raises(EdgecvError) as e:
            apply_runner_json(base, {**m, key: value})
        assert str(e.value).startswith("ssh://pi@board: the runner's result cannot be read (") and key in str(e.value)
        assert "\n" not in str(e.value)
    with pytest.raises(EdgecvError, match="missing 'init_ms'"):
        apply_runner_json(base, {k: v for k, v in m.items() if k != "init_ms"})


def test_runner_min_time_and_pinning_with_onnxruntime(models):
    paths, _ = models
    res = run([sys.executable, RUNNER, paths["onnx"], "--runs", "1", "--warmup-runs", "0", "--min-time-s", "0.5",
               "--cpus", "0"])
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    assert d["runtime"]["name"] == "onnxruntime" and d["runtime"]["threads"] == 1
    assert d["cpus"] == [0]
    lat = d["latency_ms"]
    assert lat["runs"] > 1 and lat["runs"] * lat["mean"] >= 0.5 * 1e3 * 0.98


@pytest.mark.parametrize("args, fragment", [
    (["--runs", "0"], "--runs"), (["--threads", "0"], "--threads"), (["--cpus", "x"], "--cpus"),
    (["--runtime", "tvm"], "--runtime"),
])
def test_runner_bad_arguments(models, args, fragment):
    res = run([sys.executable, RUNNER, models[0]["tflite"], *args])
    assert res.returncode != 0 and res.stdout == ""
    assert len(res.stderr.strip().splitlines()) == 1 and fragment in res.stderr


def test_runner_fingerprint_reads_arm_features():
    sys.path.insert(0, os.path.dirname(RUNNER))
    try:
        import runner  # the self-contained script, as a module
    finally:
        sys.path.pop(0)
    isa = runner.cpu_probe.isa_features  # the one probe (edgecv/profiling/cpu_probe.py; tests/targets/test_targets_probe.py)
    pi5 = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp".split()
    assert isa(pi5, "aarch64") == {"neon": True, "asimddp": True, "asimdhp": True, "i8mm": False,
                                   "bf16": False, "sve": False, "sve2": False}
    pi3 = "fp asimd evtstrm crc32 cpuid".split()
    assert isa(pi3, "aarch64")["neon"] and not isa(pi3, "aarch64")["asimddp"]
    assert isa(["avx2", "avx512_vnni"], "x86_64")["avx512_vnni"]
    assert runner.parse_cpus("0,2-3") == {0, 2, 3}
    with open(RUNNER, encoding="utf-8") as fh:  # copied alone to a target: it must not need edgecv
        source = fh.read()
    assert "import edgecv" not in source and "from edgecv" not in source


# ---- edgecv profile ----------------------------------------------------------------------------

def test_cli_json_schema(models):
    paths, cost = models
    res = cli("profile", paths["tflite"], "--json", "--threads", "1", "--runs", "3", "--min-time-s", "0")
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    assert SCHEMA_KEYS <= set(d)
    assert (d["format"], d["precision"], d["mode"], d["device"]) == ("tflite", "float32", "measured", "host")
    assert set(d["latency_ms"]) == {"mean", "std", "min", "p50", "p90", "p99", "runs"}
    assert d["latency_ms"]["runs"] == 3 and d["runtime"]["threads"] == 1 and d["runtime"]["delegate"] == "xnnpack"
    assert d["macs"] == cost.macs  # the builder's analytic count
    assert d["file_bytes"] == os.path.getsize(paths["tflite"])
    assert sum(op["macs"] for op in d["ops"]) == d["macs"]
    assert set(d["ops"][0]) == {"index", "type", "op_class", "dtype", "output_shape", "macs", "params",
                                "weight_bytes", "activation_bytes", "input_bytes", "name", "delegated"}
    assert all(isinstance(op["delegated"], bool) for op in d["ops"])  # asked from LiteRT's XNNPACK delegate
    assert d["env"]["isa"] and d["env"]["cpu_model"]


def test_cli_csv_and_table(models):
    paths, cost = models
    res = cli("profile", paths["onnx"], "--csv", "--runs", "2", "--min-time-s", "0", "--threads", "1")
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert len(rows) == 1 and rows[0]["format"] == "onnx" and rows[0]["runtime"] == "onnxruntime"
    assert int(rows[0]["macs"]) == cost.macs and float(rows[0]["latency_p50_ms"]) > 0
    res = cli("profile", paths["onnx"], "--csv", "--ops", "--static")
    ops = list(csv.DictReader(io.StringIO(res.stdout)))
    assert sum(int(r["macs"]) for r in ops) == cost.macs
    res = cli("profile", paths["tflite"], "--static", "--ops")
    assert res.returncode == 0, res.stderr
    for text in ("MACs", "peak activations", "DEPTHWISE_CONV_2D", "by op class"):
        assert text in res.stdout


def test_keras_input_is_converted_to_tflite(models):
    from edgecv.profiling import static_profile

    paths, cost = models
    res = static_profile(paths["keras"])
    assert (res.format, res.precision, res.mode) == ("tflite", "float32", "static")
    assert res.macs == cost.macs and res.params == cost.params_deployed
    assert res.runtime == RuntimeInfo(converted_from="keras") and res.to_dict()["runtime"] == {"converted_from": "keras"}


def test_profile_api_measures_in_a_child_process(models):
    from edgecv.profiling import profile

    paths, cost = models
    res = profile(paths["tflite"], threads=1, warmup_runs=0, runs=2, min_time_s=0)
    assert res.mode == "measured" and res.latency_ms.runs == 2 and res.macs == cost.macs
    assert res.runtime.name == "litert" and res.peak_rss_bytes > 0
    with pytest.raises(EdgecvError, match="cannot run a tflite model"):
        profile(paths["tflite"], runtime="onnxruntime")
    with pytest.raises(EdgecvError, match="runs"):
        profile(paths["tflite"], runs=0)


def test_hang_is_killed_and_crash_is_reported(models):
    from edgecv.profiling import profile
    from edgecv.profiling._child import run_child

    with pytest.raises(EdgecvError, match=r"did not finish within 0.5 s"):
        profile(models[0]["tflite"], runs=100000, min_time_s=60, timeout_s=0.5)
    with pytest.raises(EdgecvError, match=r"crashed \(SIGSEGV\)"):
        run_child([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"], 30, "x")
    res = cli("profile", models[0]["tflite"], "--runs", "100000", "--min-time-s", "60", "--timeout-s", "0.5")
    assert res.returncode == 2 and "did not finish" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def _tflite_bytes(models) -> bytes:
    with open(models[0]["tflite"], "rb") as fh:
        return fh.read()


BAD = {
    "missing": lambda d, m: str(d / "nope.tflite"),
    "directory": lambda d, m: str(d),
    "empty": lambda d, m: _write(d / "empty.tflite", b""),
    "truncated_tflite": lambda d, m: _write(d / "trunc.tflite", _tflite_bytes(m)[:5000]),
    "random_tflite": lambda d, m: _write(d / "rand.tflite", np.random.default_rng(0).bytes(4096)),
    "random_onnx": lambda d, m: _write(d / "rand.onnx", np.random.default_rng(1).bytes(4096)),
    "tflite_named_onnx": lambda d, m: _write(d / "really_tflite.onnx", _tflite_bytes(m)),
    "truncated_onnx_header": lambda d, m: _write(d / "trunc.onnx", open(m[0]["onnx"], "rb").read()[:3000]),
    "text_file": lambda d, m: _write(d / "notes.txt", b"hello"),
}


def _write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_model_files(case, models, tmp_path):
    path = BAD[case](tmp_path, models)
    res = cli("profile", path, "--runs", "1", "--min-time-s", "0")
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert res.stderr.startswith("edgecv: error: ") and "Traceback" not in res.stderr
    assert os.path.basename(path) in res.stderr or case == "directory"
    assert res.stdout == ""


@pytest.mark.parametrize("args, option", [
    (["--runs", "0"], "--runs"), (["--threads", "0"], "--threads"), (["--warmup-runs", "-1"], "--warmup-runs"),
    (["--min-time-s", "-1"], "--min-time-s"), (["--min-time-s", "nan"], "--min-time-s"),
    (["--runtime", "onnxruntime"], "onnxruntime"), (["--cpus", "a-b"], "--cpus"),
    (["--budget-ms", "10"], "--budget-ms"), (["--save-anchor", "a.json"], "--save-anchor"),
    (["--json", "--csv"], "--csv"),
])
def test_bad_options(args, option, models):
    res = cli("profile", models[0]["tflite"], *args)
    assert res.returncode == 2 and res.stdout == ""
    assert len(res.stderr.strip().splitlines()) == 1 and option in res.stderr and "Traceback" not in res.stderr
    if args[0] in ("--runs", "--threads"):
        assert "Received: 0" in res.stderr


def test_device_prediction_or_one_line_error(models):
    res = cli("profile", models[0]["tflite"], "--device", "rpi4", "--json")
    import importlib.util

    if importlib.util.find_spec("edgecv.devices.predict") is None:
        assert res.returncode == 2 and "--device" in res.stderr and len(res.stderr.strip().splitlines()) == 1
        return
    if res.returncode == 0:
        d = json.loads(res.stdout)
        assert d["mode"] == "predicted" and d["macs"] == models[1].macs
    else:  # the predictor is there but refuses (one line, exit 2)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1


# ---- no TensorFlow ----------------------------------------------------------------------------

def test_profiling_never_imports_tensorflow(models, tmp_path):
    """A `tensorflow` package that refuses to import shadows the real one in edgecv and in every child."""
    block = tmp_path / "block"
    (block / "tensorflow").mkdir(parents=True)
    (block / "tensorflow" / "__init__.py").write_text('raise ImportError("tensorflow is blocked in this test")\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(block), os.environ.get("PYTHONPATH", "")]))
    probe = textwrap.dedent("""
        import sys
        try:
            import tensorflow
        except ImportError as exc:
            print("blocked:", exc)
        import edgecv.cli.profile, edgecv.profiling
        assert "tensorflow" not in sys.modules or sys.modules["tensorflow"] is None
    """)
    res = run([sys.executable, "-c", probe], env=env)
    assert res.returncode == 0 and "blocked: tensorflow is blocked" in res.stdout, res.stderr
    paths, cost = models
    for fmt in ("tflite", "onnx"):
        res = cli("profile", paths[fmt], "--json", "--runs", "2", "--min-time-s", "0", env=env)
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["macs"] == cost.macs
    res = run([sys.executable, RUNNER, paths["tflite"], "--runs", "1"], env=env)
    assert res.returncode == 0 and json.loads(res.stdout)["runtime"]["name"] == "litert", res.stderr
    # the blocker works: a .keras file, which needs TensorFlow, fails with one line
    res = cli("profile", paths["keras"], "--static", env=env)
    assert res.returncode == 2 and "needs TensorFlow" in res.stderr and len(res.stderr.strip().splitlines()) == 1
