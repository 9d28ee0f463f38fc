"""End-to-end tests of ``edgecv.targets``: a real OpenSSH server on loopback, and a fake ``adb``.

The SSH fixture starts Debian's ``sshd`` in a temporary folder with a generated host key and user key
(only key authentication, a known_hosts file holding the generated host key: host-key checking stays on).
Over it, a MobileNet built with TensorFlow here is profiled through the same path a Raspberry Pi uses.
The ADB tests put ``tests/fake_adb/adb`` on PATH: it records its calls and answers with real
``benchmark_model`` output (tests/data/benchmark_model/, sources cited in each file).
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgecv.errors import EdgecvError
from edgecv.records import ProfileResult
from edgecv.targets import profile_target
from edgecv.targets.anchor import format_comparison

HERE = Path(__file__).resolve().parents[1]
FAKE_ADB_DIR = HERE / "fake_adb"
BENCH = HERE / "data" / "benchmark_model"
SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)


# ------------------------------------------------------------------------------------------------------
# fixtures: a model, an sshd
# ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory) -> Path:
    """MobileNetV1 0.5-224 (150 M MACs) as float32 TFLite, built and converted with TensorFlow here.
    Weights are random: latency does not depend on their values."""
    import tensorflow as tf

    from edgecv.builders.registry import create_model

    model = create_model("mobilenet_v1_0.50_224")
    data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    path = tmp_path_factory.mktemp("model") / "mobilenet_v1_0.50_224.tflite"
    path.write_bytes(data)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgecv-test", "-f", str(path)],
                   check=True, stdin=subprocess.DEVNULL)


class Sshd:
    """An OpenSSH server on 127.0.0.1 living in ``root``; ``options()`` gives the client options to reach it."""

    def __init__(self, root: Path):
        self.root = root
        self.user = getpass.getuser()
        self.remote_tmp = root / "target_tmp"  # TMPDIR of the sessions: the "target's" temp folders go here
        self.remote_tmp.mkdir()
        _keygen(root / "host_key")
        _keygen(root / "user_key")
        _keygen(root / "stranger_key")  # a key the server does not know
        (root / "authorized_keys").write_text((root / "user_key.pub").read_text())
        self.port = _free_port()
        host_pub = (root / "host_key.pub").read_text().split()
        (root / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        (root / "empty_known_hosts").write_text("")
        (root / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {root}/host_key\nPidFile {root}/sshd.pid\n"
            f"AuthorizedKeysFile {root}/authorized_keys\nStrictModes no\nUsePAM no\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            "PermitRootLogin prohibit-password\nAcceptEnv TMPDIR\nSubsystem sftp internal-sftp\n"
            "LogLevel VERBOSE\n")

    def start(self) -> None:
        if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege-separation dir (boot-time tmpfiles)
        self.log = open(self.root / "sshd.log", "wb")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.root / "sshd_config")],
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("sshd exited: " + (self.root / "sshd.log").read_text(errors="replace"))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("sshd did not start listening")

    def target_processes(self) -> list[int]:
        """Processes running in the target's temp folders (runners this server's sessions started)."""
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.readlink(f"/proc/{entry}/cwd").startswith(str(self.remote_tmp)):
                        pids.append(int(entry))
                except OSError:
                    continue
        return pids

    def stop(self) -> None:
        for pid in self.target_processes():  # a failed test must not leave a runner behind
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()

    @property
    def uri(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    def options(self, key: str = "user_key", known_hosts: str = "known_hosts") -> list[str]:
        """ssh options for this server: our key only, our known_hosts, strict host-key checking."""
        r = self.root
        return ["-F", "/dev/null", "-o", f"IdentityFile={r / key}", "-o", "IdentitiesOnly=yes",
                "-o", "IdentityAgent=none", "-o", f"UserKnownHostsFile={r / known_hosts}",
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
                "-o", f"SetEnv=TMPDIR={self.remote_tmp}"]

    def leftovers(self) -> list[str]:
        return sorted(os.listdir(self.remote_tmp))


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    if SSHD is None or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("OpenSSH is not installed (apt-get install openssh-server openssh-client)")
    server = Sshd(tmp_path_factory.mktemp("sshd"))
    server.start()
    yield server
    server.stop()


def _ssh(sshd, tmp_path=None, **kw):
    return dict(ssh_options=sshd.options(), python=sys.executable, connect_timeout_s=10, **kw)


def _host_litert_median_ms(path: Path, threads: int, seconds: float = 2.0) -> float:
    """An independent host reference: LiteRT's interpreter timed in this process."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=threads)
    interp.allocate_tensors()
    d = interp.get_input_details()[0]
    interp.set_tensor(d["index"], np.random.default_rng(0).uniform(-1, 1, d["shape"]).astype(np.float32))
    for _ in range(5):
        interp.invoke()
    samples = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(samples) < 30:
        t0 = time.perf_counter()
        interp.invoke()
        samples.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(samples))


# ------------------------------------------------------------------------------------------------------
# SSH
# ------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_ssh_profile_same_schema_and_latency_as_host(sshd, mobilenet):
    from edgecv.profiling import profile as host_profile

    kw = dict(threads=1, warmup_runs=5, runs=30, min_time_s=2.0)
    best_target = best_host = best_direct = float("inf")
    for attempt in range(3):  # bursts of load on a shared machine: take the best median of up to 3 rounds
        res = profile_target(mobilenet, sshd.uri, **kw, **_ssh(sshd))
        host = host_profile(mobilenet, **kw)
        best_target = min(best_target, res.latency_ms.p50)
        best_host = min(best_host, host.latency_ms.p50)
        best_direct = min(best_direct, _host_litert_median_ms(mobilenet, threads=1))
        ratios = [best_target / best_host, best_target / best_direct]
        if all(1 / 1.5 <= r <= 1.5 for r in ratios):
            break
    print(f"\nssh p50 {best_target:.2f} ms, host profiler p50 {best_host:.2f} ms, in-process LiteRT "
          f"median {best_direct:.2f} ms (attempts: {attempt + 1})")
    assert 1 / 1.5 <= best_target / best_host <= 1.5
    assert 1 / 1.5 <= best_target / best_direct <= 1.5

    assert isinstance(res, ProfileResult)
    d, h = res.to_dict(), host.to_dict()
    assert d.keys() == h.keys()
    assert d["latency_ms"].keys() == h["latency_ms"].keys()
    assert set(h["runtime"]) <= set(d["runtime"])
    assert set(h["env"]) <= set(d["env"])
    assert res.mode == "measured" and res.device == f"ssh://127.0.0.1:{sshd.port}"
    assert sshd.user not in res.device
    assert (res.macs, res.params, res.precision, res.format) == (host.macs, host.params, host.precision, host.format)
    assert res.macs > 100e6 and len(res.ops) == len(host.ops)
    assert res.runtime.name == "litert" and res.runtime.threads == 1
    assert res.latency_ms.runs >= 30 and res.latency_ms.min <= res.latency_ms.p50 <= res.latency_ms.p99
    assert res.init_ms > 0 and res.first_inference_ms > 0 and res.peak_rss_bytes > 10e6
    assert res.env.cores == os.cpu_count() and res.env.machine
    for key in ("cpu_model", "isa", "governor", "cpu_mhz", "os", "kernel", "python", "numpy", "runtime_version"):
        assert key in d["env"]
    json.dumps(res.to_dict())  # JSON-able
    assert sshd.leftovers() == []  # the folder on the target is gone


def test_ssh_cli_json_and_anchor(sshd, mobilenet, tmp_path):
    """``edgecv profile --target`` end to end: ssh options from EDGECV_SSH_OPTIONS, python from the URI."""
    import shlex

    anchors = tmp_path / "anchors.csv"
    env = dict(os.environ, EDGECV_SSH_OPTIONS=shlex.join(sshd.options()))
    uri = f"{sshd.uri}?python={sys.executable}"
    proc = subprocess.run([sys.executable, "-m", "edgecv", "profile", str(mobilenet), "--target", uri,
                           "--threads", "1", "--runs", "5", "--warmup-runs", "1", "--min-time-s", "0",
                           "--save-anchor", str(anchors), "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["mode"] == "measured" and d["device"] == f"ssh://127.0.0.1:{sshd.port}"
    assert d["latency_ms"]["runs"] == 5
    rows = anchors.read_text().splitlines()
    assert rows[0] == "device,runtime,model,width,resolution,precision,threads,latency_ms,note,source"
    fields = rows[1].split(",")
    assert fields[2:7] == ["mobilenet_v1", "0.5", "224", "float32", "1"]
    assert float(fields[7]) == pytest.approx(d["latency_ms"]["p50"], rel=1e-3)
    assert sshd.leftovers() == []

    # a failure through the CLI: one line, exit code 2, nothing left behind
    bad = f"ssh://{sshd.user}@127.0.0.1:{sshd.port}?python=/nonexistent/python3"
    proc = subprocess.run([sys.executable, "-m", "edgecv", "profile", str(mobilenet), "--target", bad, "--quiet"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("edgecv: error: ")
    assert "install Python 3" in proc.stderr
    assert sshd.leftovers() == []


def test_ssh_compare_device(sshd, mobilenet):
    pytest.importorskip("edgecv.devices.predict")
    res = profile_target(mobilenet, sshd.uri, cpus="0", runs=5, warmup_runs=1, min_time_s=0,
                         compare_device="rpi4", **_ssh(sshd))
    assert res.runtime.cpus == (0,) and res.runtime.threads == 1  # pinned; threads follow the CPU list
    assert res.prediction is None  # a measurement: the device's prediction is in the comparison
    p = res.comparison
    assert p.device == "rpi4" and p.measured_ms == res.latency_ms.p50
    assert p.predicted_ms > 0
    assert p.error_pct == pytest.approx(100 * (p.predicted_ms - p.measured_ms) / p.measured_ms)
    # the prediction is the device engineer's predict_profile on the same static analysis, independently
    from edgecv.devices.predict import predict_profile
    from edgecv.profiling import static_profile

    pred = predict_profile(static_profile(mobilenet), "rpi4", 1)
    assert p.predicted_ms == pytest.approx(pred.latency_ms.p50)
    assert p.prediction == pred.prediction
    assert p.prediction.band_low_ms <= p.predicted_ms <= p.prediction.band_high_ms
    assert p.within_band is (p.prediction.band_low_ms <= p.measured_ms <= p.prediction.band_high_ms)
    # the JSON keeps the comparison under "prediction" (its key before the record), and reads back
    d = res.to_dict()
    assert d["prediction"]["device"] == "rpi4" and d["prediction"]["error_pct"] == p.error_pct
    assert d["prediction"]["band_low_ms"] == p.prediction.band_low_ms and "comparison" not in d
    assert ProfileResult.from_dict(json.loads(json.dumps(d))) == res
    print("\n" + format_comparison(res))


def _fails(match: str, sshd, mobilenet, **kw) -> str:
    with pytest.raises(EdgecvError, match=match) as err:
        profile_target(mobilenet, kw.pop("uri", sshd.uri), runs=2, warmup_runs=0, min_time_s=0, **kw)
    msg = str(err.value)
    assert "\n" not in msg
    assert sshd.leftovers() == []
    return msg


def test_ssh_connection_refused(sshd, mobilenet):
    port = _free_port()
    _fails("connection refused", sshd, mobilenet, uri=f"ssh://{sshd.user}@127.0.0.1:{port}", **_ssh(sshd))


def test_ssh_unknown_host(sshd, mobilenet):
    _fails("unknown host|unreachable", sshd, mobilenet, uri="ssh://nonexistent-board.invalid",
           ssh_options=sshd.options(), connect_timeout_s=5)


def test_ssh_authentication_failure_never_prompts(sshd, mobilenet):
    msg = _fails("authentication failed", sshd, mobilenet, ssh_options=sshd.options(key="stranger_key"),
                 python=sys.executable)
    assert "ssh-copy-id" in msg


def test_ssh_unknown_host_key_is_not_accepted(sshd, mobilenet):
    _fails("host key", sshd, mobilenet, ssh_options=sshd.options(known_hosts="empty_known_hosts"),
           python=sys.executable)
    assert (sshd.root / "empty_known_hosts").read_text() == ""  # nothing was added behind the user's back


def test_ssh_missing_python(sshd, mobilenet):
    msg = _fails("not found on the target", sshd, mobilenet, ssh_options=sshd.options(),
                 python="/nonexistent/python3")
    assert "install Python 3" in msg


def _venv(path: Path, with_numpy: bool) -> Path:
    """A real interpreter without a TFLite runtime (and optionally with numpy, linked from this one)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    py = path / "bin" / "python"
    if with_numpy:
        site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        np_dir = Path(np.__file__).parent
        for d in (np_dir, np_dir.parent / "numpy.libs"):
            if d.exists():
                os.symlink(d, Path(site) / d.name)
    return py


def test_ssh_missing_runtime_says_what_to_install(sshd, mobilenet, tmp_path):
    py = _venv(tmp_path / "venv", with_numpy=True)
    msg = _fails("no TFLite runtime", sshd, mobilenet, ssh_options=sshd.options(), python=str(py))
    assert "pip install numpy ai-edge-litert" in msg and "pip install tflite-runtime" in msg
    assert "python3 -m venv" in msg  # the venv route: Raspberry Pi OS refuses `python3 -m pip install`
    py = _venv(tmp_path / "bare", with_numpy=False)
    _fails("numpy is missing", sshd, mobilenet, ssh_options=sshd.options(), python=str(py))


def test_ssh_runner_error_cleans_up(sshd, tmp_path):
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 64)  # TFLite magic, no valid graph
    msg = _fails("the runner failed", sshd, bad, **_ssh(sshd))
    assert "cannot load the model" in msg


def test_ssh_timeout_stops_the_runner_and_cleans_up(sshd, mobilenet):
    """No answer in time: the local ssh is killed, then edgecv stops the runner and removes the folder."""
    with pytest.raises(EdgecvError, match="no answer within 4 s"):
        profile_target(mobilenet, sshd.uri, threads=1, runs=100_000, warmup_runs=0, min_time_s=120, timeout_s=4,
                       **_ssh(sshd))
    deadline = time.monotonic() + 10
    while sshd.target_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sshd.target_processes() == []
    assert sshd.leftovers() == []


def test_ssh_runner_killed_mid_run(sshd, mobilenet):
    """SIGKILL the runner on the target while it measures: one-line error, folder gone."""
    box = {}

    def run():
        try:
            profile_target(mobilenet, sshd.uri, threads=1, runs=100_000, warmup_runs=0, min_time_s=120,
                           **_ssh(sshd))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            box["exc"] = exc

    th = threading.Thread(target=run, daemon=True)
    th.start()
    pid = None
    deadline = time.monotonic() + 60
    while pid is None and time.monotonic() < deadline and th.is_alive():
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
                cwd = os.readlink(f"/proc/{entry}/cwd")
            except OSError:
                continue
            args = cmd.split(b"\0")
            # the runner itself (python runner.py ...), not the sh wrapper that started it
            if len(args) > 1 and args[1] == b"runner.py" and cwd.startswith(str(sshd.remote_tmp)):
                pid = int(entry)
                break
        time.sleep(0.2)
    assert pid is not None, f"runner process not found ({box.get('exc')!r})"
    time.sleep(1.0)  # let it load the model and start timing
    os.kill(pid, signal.SIGKILL)
    th.join(120)
    assert not th.is_alive()
    exc = box.get("exc")
    assert isinstance(exc, EdgecvError), repr(exc)
    assert "killed mid-run by signal 9" in str(exc) and "\n" not in str(exc)
    assert sshd.leftovers() == []


# ------------------------------------------------------------------------------------------------------
# ADB (fake adb on PATH, real benchmark_model output)
# ------------------------------------------------------------------------------------------------------

@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    root = tmp_path / "phone"
    (root / "data" / "local" / "tmp").mkdir(parents=True)
    log = tmp_path / "adb_calls.jsonl"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    # run the fake with this interpreter (no dependence on which python3 is first on PATH)
    (bindir / "adb").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_ADB_DIR / "adb"}" "$@"\n')
    (bindir / "adb").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_ROOT", str(root))
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    monkeypatch.setenv("FAKE_ADB_DEVICES", "28151FDH2000C7:device")
    monkeypatch.setenv("FAKE_ADB_OUTPUT", str(BENCH / "android_xiaomi_mi11_yolov5s_fp32_cpu.txt"))
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF fake android arm64 build")

    class Phone:
        tmp = root / "data" / "local" / "tmp"
        bench = binary

        @staticmethod
        def calls():
            return [json.loads(ln) for ln in log.read_text().splitlines()] if log.exists() else []

    return Phone


def test_adb_profile_parses_real_output_and_cleans_up(fake_adb, mobilenet):
    res = profile_target(mobilenet, "adb", threads=4, warmup_runs=3, runs=50, min_time_s=0.5,
                         benchmark_binary=fake_adb.bench, cpus="4-7")
    # values of the real Xiaomi Mi11 output the fake phone answered with
    assert res.device == "adb:28151FDH2000C7" and res.mode == "measured"
    assert res.latency_ms.mean == pytest.approx(249.684) and res.latency_ms.runs == 50
    assert res.latency_ms.min == pytest.approx(247.067) and res.latency_ms.std == pytest.approx(1.442)
    assert res.init_ms == pytest.approx(16.242) and res.first_inference_ms == pytest.approx(360.262)
    assert res.peak_rss_bytes == round(138.809 * 2**20)
    assert res.rss_growth_bytes == round(138.809 * 2**20) - round(4.92969 * 2**20)
    assert res.runtime.warmup_avg_ms == pytest.approx(304.586) and res.runtime.cpus == (4, 5, 6, 7)
    assert res.macs > 100e6 and res.precision == "float32"  # static counts of the pushed model
    assert res.env.model == "Pixel 7" and res.env.cores == 8
    assert ProfileResult.from_dict(json.loads(json.dumps(res.to_dict()))) == res

    calls = fake_adb.calls()
    pushes = [c for c in calls if "push" in c]
    assert [Path(c[-2]).name for c in pushes] == [mobilenet.name, "benchmark_model"]
    run = next(c for c in calls if "shell" in c and "benchmark_model --graph" in c[-1])
    words = run[-1].split()
    assert words[:2] == ["taskset", "f0"]
    for flag in ("--num_threads=4", "--warmup_runs=3", "--num_runs=50", "--min_secs=0.5"):
        assert flag in words
    remote_dir = pushes[0][-1].rsplit("/", 1)[0]
    assert remote_dir.startswith("/data/local/tmp/edgecv.")
    assert calls[-1][-2:] == ["shell", f"rm -rf {remote_dir}"]
    assert os.listdir(fake_adb.tmp) == []


@pytest.mark.parametrize("rc, target, match", [
    ("1", "adb:28151FDH2000C7", "benchmark_model failed: .*ANEURALNETWORKS_OP_FAILED"),
    ("137", "adb", "killed by signal 9"),
], ids=["failed", "killed"])
def test_adb_benchmark_failure(fake_adb, mobilenet, monkeypatch, rc, target, match):
    monkeypatch.setenv("FAKE_ADB_OUTPUT", str(BENCH / "android_xiaomi_mi11_nnapi_failed.txt"))
    monkeypatch.setenv("FAKE_ADB_RC", rc)
    with pytest.raises(EdgecvError, match=match):
        profile_target(mobilenet, target, benchmark_binary=fake_adb.bench, runs=5)
    assert os.listdir(fake_adb.tmp) == []


@pytest.mark.parametrize("devices, target, match", [
    ("", "adb", "no Android device found"),
    ("28151FDH2000C7:unauthorized", "adb", "accept the USB debugging prompt"),
    ("A1:device,B2:device", "adb", "2 devices connected"),
    ("28151FDH2000C7:device", "adb:28151FDH2000C8", "no such device .*Did you mean: 28151FDH2000C7"),
])
def test_adb_device_errors(fake_adb, mobilenet, monkeypatch, devices, target, match):
    monkeypatch.setenv("FAKE_ADB_DEVICES", devices)
    with pytest.raises(EdgecvError, match=match):
        profile_target(mobilenet, target, benchmark_binary=fake_adb.bench)
    assert not any("push" in c for c in fake_adb.calls())  # failed before touching the phone


def test_adb_not_on_path(mobilenet, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"x")
    with pytest.raises(EdgecvError, match="`adb` is not on PATH"):
        profile_target(mobilenet, "adb", benchmark_binary=binary)


def test_adb_needs_binary_and_tflite(fake_adb, mobilenet, tmp_path):
    with pytest.raises(EdgecvError, match="--benchmark-binary"):
        profile_target(mobilenet, "adb")
    with pytest.raises(EdgecvError, match="--benchmark-binary: no such file"):
        profile_target(mobilenet, "adb", benchmark_binary=tmp_path / "nope")
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    with pytest.raises(EdgecvError, match=".tflite files only"):
        profile_target(onnx, "adb", benchmark_binary=fake_adb.bench)
    assert fake_adb.calls() == []


# ------------------------------------------------------------------------------------------------------
# Bugs found when tried as a user would: each through the CLI, text and --json
# ------------------------------------------------------------------------------------------------------

def _cli(args: list[str], env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgecv", *map(str, args)], capture_output=True, text=True,
                          env=env or dict(os.environ), timeout=timeout)


@pytest.mark.parametrize("output, p50", [
    ("android_xiaomi_mi11_yolov5s_fp32_cpu.txt", None),  # TF 2.4: no median, no percentiles
    ("android_newer_p5_median_p95.txt", 249.518),  # newer releases: p5= median= p95=
])
def test_adb_cli_text_and_json_with_missing_percentiles(fake_adb, mobilenet, monkeypatch, output, p50):
    monkeypatch.setenv("FAKE_ADB_OUTPUT", str(BENCH / output))
    args = ["profile", mobilenet, "--target", "adb:28151FDH2000C7", "--benchmark-binary", fake_adb.bench]
    text = _cli(args)
    assert text.returncode == 0, text.stderr  # was: internal error: TypeError ... NoneType.__format__
    assert "internal error" not in text.stderr
    d = json.loads(_cli(args + ["--json"]).stdout)
    lat = d["latency_ms"]
    assert lat["mean"] == pytest.approx(249.684) and lat["p90"] is None and lat["p99"] is None
    if p50 is None:
        assert lat["p50"] is None and "not reported" in text.stdout and "249.68" in text.stdout
    else:
        assert lat["p50"] == pytest.approx(p50)
        assert d["runtime"]["p5_ms"] == pytest.approx(247.544) and d["runtime"]["p95_ms"] == pytest.approx(252.611)
        assert "249.52 ms" in text.stdout
    assert "p90 -" in text.stdout


def test_adb_op_profile_maps_to_static_ops(fake_adb, mobilenet, monkeypatch):
    """benchmark_model --enable_op_profiling=true: the Run Order table, summed by the static op classes."""
    monkeypatch.setenv("FAKE_ADB_OUTPUT", str(BENCH / "riscv64_mobilenet_v1_op_profiling.txt"))
    res = profile_target(mobilenet, "adb", benchmark_binary=fake_adb.bench, op_timings=True, runs=5)
    run = next(c for c in fake_adb.calls() if "shell" in c and "benchmark_model --graph" in c[-1])
    assert "--enable_op_profiling=true" in run[-1].split()
    ot = res.target.op_timings
    assert ot.available and ot.measured == 31
    # the table's own numbers: 31 rows summing to the run's average (2950.34 ms, "Inference (avg)")
    assert sum(r.avg_ms for r in ot.ops) == pytest.approx(2949.903, abs=1e-6)
    assert sum(ot.by_class_ms.values()) == pytest.approx(res.latency_ms.mean, rel=1e-3)
    # MobileNetV1 (same architecture as the fixture): 1 standard conv, 13 depthwise, 13 pointwise convs
    mapped = [r for r in ot.ops if r.static_index is not None]
    assert len(mapped) >= 27
    classes = {r.type: set() for r in mapped}
    for r in mapped:
        classes[r.type].add(r.op_class)
    assert ProfileResult.from_dict(json.loads(json.dumps(res.to_dict()))) == res
    assert classes["DEPTHWISE_CONV_2D"] == {"depthwise"}
    assert {"conv", "pointwise"} <= classes["CONV_2D"]


def _lab_env(sshd) -> dict:
    import shlex

    return dict(os.environ, EDGECV_SSH_OPTIONS=shlex.join(sshd.options()))


@pytest.mark.slow
@pytest.mark.parametrize("signals, code", [
    ((signal.SIGINT, signal.SIGINT), 130),  # two Ctrl-C 0.15 s apart: the second waits for the cleanup
    ((signal.SIGTERM,), 143),  # a cancelled CI job
    ((signal.SIGHUP,), 129),  # the terminal closed
])
def test_ssh_signals_still_clean_the_target(sshd, mobilenet, signals, code):
    uri = f"{sshd.uri}?python={sys.executable}"
    proc = subprocess.Popen([sys.executable, "-m", "edgecv", "profile", str(mobilenet), "--target", uri,
                             "--threads", "1", "--runs", "100000", "--min-time-s", "120", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_lab_env(sshd),
                            start_new_session=True)  # its own group: killpg plays the terminal
    try:
        deadline = time.monotonic() + 120
        while not sshd.target_processes() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        assert sshd.target_processes() and sshd.leftovers(), "the runner did not start on the target"
        time.sleep(0.5)
        for i, sig in enumerate(signals):
            if i:
                time.sleep(0.15)
            os.killpg(proc.pid, sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == code, err
    assert out == "" and len(err.strip().splitlines()) == 1
    deadline = time.monotonic() + 10
    while sshd.target_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sshd.target_processes() == []  # the runner was stopped
    assert sshd.leftovers() == []  # and its folder (model, runner) removed


def test_ssh_save_anchor_refuses_a_core_that_is_not_the_device(sshd, mobilenet, tmp_path):
    """This x86 host is not an rpi4 (Cortex-A72): its measurement must not become an rpi4 calibration row."""
    anchors = tmp_path / "anchors.csv"
    args = ["profile", mobilenet, "--target", f"{sshd.uri}?python={sys.executable}", "--runs", "2",
            "--warmup-runs", "0", "--min-time-s", "0", "--threads", "1", "--compare-device", "rpi4",
            "--save-anchor", anchors]
    for extra in ([], ["--json"]):
        proc = _cli(args + extra, env=_lab_env(sshd))
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and "refusing to save" in proc.stderr and "cortex-a72" in proc.stderr
        assert not anchors.exists()
    proc = _cli(args + ["--force", "--json"], env=_lab_env(sshd))
    assert proc.returncode == 0, proc.stderr
    assert anchors.read_text().splitlines()[1].startswith("rpi4,")
    assert sshd.leftovers() == []


def test_ssh_changed_host_key_is_not_an_unknown_one(sshd, mobilenet, tmp_path):
    other = tmp_path / "other_key"
    _keygen(other)
    pub = other.with_suffix(".pub").read_text().split()
    changed = sshd.root / "changed_known_hosts"
    changed.write_text(f"[127.0.0.1]:{sshd.port} {pub[0]} {pub[1]}\n")
    import shlex

    uri = f"{sshd.uri}?python={sys.executable}"
    for kh, want, not_want in (("changed_known_hosts", "ssh-keygen -R '[127.0.0.1]:", "not trusted"),
                               ("empty_known_hosts", "not trusted", "CHANGED")):
        env = dict(os.environ, EDGECV_SSH_OPTIONS=shlex.join(sshd.options(known_hosts=kh)))
        for extra in ([], ["--json"]):
            proc = _cli(["profile", mobilenet, "--target", uri, "--runs", "1"] + extra, env=env, timeout=120)
            assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
            assert want in proc.stderr and not_want not in proc.stderr
    assert changed.read_text().split()[2] == pub[1]  # edgecv never rewrote the user's known_hosts


def test_install_hints_name_the_venv_route(sshd, mobilenet, tmp_path):
    """Raspberry Pi OS bookworm refuses `python3 -m pip install` (externally-managed-environment)."""
    env = _lab_env(sshd)
    for py, what in ((_venv(tmp_path / "venv", with_numpy=True), "no TFLite runtime"),
                     (_venv(tmp_path / "bare", with_numpy=False), "numpy is missing")):
        for extra in ([], ["--json"]):
            proc = _cli(["profile", mobilenet, "--target", f"{sshd.uri}?python={py}", "--runs", "1"] + extra,
                        env=env, timeout=120)
            assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and what in proc.stderr
            assert "python3 -m venv" in proc.stderr and "?python=" in proc.stderr
            assert "python3 -m pip install" not in proc.stderr
    assert sshd.leftovers() == []


# ------------------------------------------------------------------------------------------------------
# --verify, --duration, --ops over SSH (this host as the target; the Arm runs are in tests/targets/test_pi_lab.py)
# ------------------------------------------------------------------------------------------------------

def test_ssh_verify_same_runtime_is_exact_and_a_different_file_diverges(sshd, mobilenet, tmp_path):
    """The target here runs the host's own LiteRT: its outputs must equal the host's. Against a different
    model as the reference (the same graph with other weights), the comparison must show it."""
    import tensorflow as tf

    from edgecv.builders.registry import create_model

    res = profile_target(mobilenet, sshd.uri, runs=2, warmup_runs=0, min_time_s=0, threads=1, verify=4,
                         **_ssh(sshd))
    v = res.target.verify
    assert v.samples == 4 and v.vs_host.top1_agreement == 1.0
    assert v.vs_host.bit_exact or v.vs_host.sqnr_db > 100
    assert not v.diverges and v.warnings == ()
    assert res.to_dict()["target"]["verify"]["warnings"] == []
    # an independent reference: LiteRT in this process on the very inputs edgecv sent
    from helpers.weights import randomize_weights

    other = tmp_path / "other.tflite"
    model = create_model("mobilenet_v1_0.50_224")
    randomize_weights(model, seed=7)  # trained-looking BatchNorm statistics: outputs that are not one-hot
    other.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    res = profile_target(mobilenet, sshd.uri, runs=2, warmup_runs=0, min_time_s=0, threads=1, verify=4,
                         verify_reference=other, **_ssh(sshd))
    v = res.target.verify
    assert v.vs_reference.max_abs_error > 0 and not v.vs_reference.bit_exact
    assert v.host_vs_reference == v.vs_reference  # target == host, so both differ from `other` alike
    assert ProfileResult.from_dict(json.loads(json.dumps(res.to_dict()))) == res
    assert sshd.leftovers() == []


def test_ssh_verify_cli_text_and_json(sshd, mobilenet):
    args = ["profile", mobilenet, "--target", f"{sshd.uri}?python={sys.executable}", "--runs", "2",
            "--warmup-runs", "0", "--min-time-s", "0", "--threads", "1", "--verify", "2"]
    d = json.loads(_cli(args + ["--json"], env=_lab_env(sshd)).stdout)
    assert d["target"]["verify"]["samples"] == 2
    text = _cli(args, env=_lab_env(sshd))
    assert text.returncode == 0, text.stderr
    assert "target vs host" in text.stdout and "top-1 agreement 100%" in text.stdout
    bad = _cli(["profile", mobilenet, "--verify", "2"])
    assert bad.returncode == 2 and "--verify needs --target" in bad.stderr


def test_ssh_duration_series_and_missing_sensors(sshd, mobilenet):
    res = profile_target(mobilenet, sshd.uri, runs=1, warmup_runs=0, min_time_s=0, threads=1, duration_s=3,
                         interval_s=1, **_ssh(sshd))
    sus = res.target.sustained
    assert 3 <= len(sus.intervals) <= 4 and sus.duration_s >= 3
    assert sum(iv.runs for iv in sus.intervals) <= res.latency_ms.runs
    for iv in sus.intervals:
        assert 0 < iv.p50_ms <= iv.p90_ms
    assert sus.burst_p50_ms == sus.intervals[0].p50_ms
    if not Path("/sys/class/thermal/thermal_zone0/temp").exists():  # this container: no thermal zones
        assert sus.intervals[0].temp_c is None and any("temperature" in u for u in sus.unavailable)
    if shutil.which("vcgencmd") is None:
        assert any("vcgencmd" in u for u in sus.unavailable)
    assert ProfileResult.from_dict(json.loads(json.dumps(res.to_dict()))) == res
    text = _cli(["profile", mobilenet, "--target", f"{sshd.uri}?python={sys.executable}", "--runs", "1",
                 "--warmup-runs", "0", "--min-time-s", "0", "--threads", "1", "--duration", "2s",
                 "--interval", "1s"], env=_lab_env(sshd))
    assert text.returncode == 0, text.stderr
    assert "burst p50" in text.stdout and "steady p50" in text.stdout and "unavailable" in text.stdout
    bad = _cli(["profile", mobilenet, "--target", sshd.uri, "--duration", "ten minutes"])
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--duration" in bad.stderr


def test_ssh_ops_onnx_profiler_and_tflite_says_none(sshd, mobilenet, tmp_path):
    pytest.importorskip("tf2onnx")
    from edgecv.conversion.api import quantize

    onnx = Path(quantize("mobilenet_v1_0.25_128", "float32", format="onnx", output=str(tmp_path)).path)
    res = profile_target(onnx, sshd.uri, runs=2, warmup_runs=0, min_time_s=0, threads=1, op_timings=True,
                         compare_device="rpi4", **_ssh(sshd))
    ot = res.target.op_timings
    assert ot.available and ot.source.startswith("onnxruntime")
    assert ot.mapped >= ot.measured // 2  # fused kernels aside, nodes are matched to the static ops
    assert {"conv", "depthwise", "pointwise"} <= set(ot.by_class_ms)
    assert set(ot.predicted_by_class_ms) & set(ot.by_class_ms)
    assert ot.predicted_by_class_ms == res.comparison.prediction.latency_by_class_ms
    # the profiler's per-op total is the order of one run (it adds its own overhead)
    assert 0.2 * res.latency_ms.p50 < sum(ot.by_class_ms.values()) < 5 * res.latency_ms.p50
    res = profile_target(mobilenet, sshd.uri, runs=2, warmup_runs=0, min_time_s=0, threads=1, op_timings=True,
                         **_ssh(sshd))
    assert res.target.op_timings.available is False
    assert "no per-op source" in res.target.op_timings.reason
    assert res.to_dict()["target"]["op_timings"] == {"available": False, "reason": res.target.op_timings.reason,
                                                     "ops": [], "by_class_ms": {}}
