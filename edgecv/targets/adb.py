"""Measure a .tflite model on an Android phone with TensorFlow Lite's ``benchmark_model`` over ``adb``.

The user supplies the Android build of ``benchmark_model`` (``bazel build -c opt --config=android_arm64
tensorflow/lite/tools/benchmark:benchmark_model``, or the prebuilt nightly). edgecv pushes it and the model
into a fresh folder under ``/data/local/tmp``, runs it with the requested threads (pinned with ``taskset``
when CPUs are given), parses its output, and removes the folder in a ``finally`` block.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgecv.errors import EdgecvError, last_line, suggest
from edgecv.targets.benchmark_model import BenchmarkModelOutput, BenchmarkOutputError, parse_benchmark_model

DEVICE_DIR = "/data/local/tmp"
_SERIAL_RE = re.compile(r"^[A-Za-z0-9_.:\-\[\]]+$")
# Properties of the phone recorded with the measurement.
PROPS = {"model": "ro.product.model", "manufacturer": "ro.product.manufacturer",
         "android": "ro.build.version.release", "sdk": "ro.build.version.sdk", "soc": "ro.soc.model",
         "board": "ro.product.board", "abi": "ro.product.cpu.abi"}


@dataclass(frozen=True)
class AdbTarget:
    serial: str | None = None

    @property
    def uri(self) -> str:
        return f"adb:{self.serial}" if self.serial else "adb"


def parse_adb_target(text: str) -> AdbTarget:
    """``adb`` or ``adb:SERIAL`` -> AdbTarget."""
    if text == "adb":
        return AdbTarget()
    if not text.startswith("adb:"):
        raise EdgecvError(f"--target: expected adb or adb:SERIAL, got {text!r}")
    serial = text[4:]
    if not serial or serial.startswith("-") or not _SERIAL_RE.match(serial):
        raise EdgecvError(f"--target: invalid adb serial {serial!r}")
    return AdbTarget(serial)


def cpu_mask(cpus: str) -> str:
    """``"4-7"`` -> ``"f0"``: the hexadecimal mask ``taskset`` takes."""
    mask = 0
    try:
        for part in str(cpus).split(","):
            part = part.strip()
            if not part:
                continue
            lo, sep, hi = part.partition("-")
            for c in range(int(lo), int(hi) + 1) if sep else [int(lo)]:
                if c < 0:
                    raise ValueError
                mask |= 1 << c
    except ValueError:
        raise EdgecvError(f"--cpus: expected a list like 4-7 or 0,2, got {cpus!r}") from None
    if not mask:
        raise EdgecvError(f"--cpus: expected a list like 4-7 or 0,2, got {cpus!r}")
    return format(mask, "x")


class Adb:
    def __init__(self, target: AdbTarget, timeout_s: float = 1800.0):
        exe = shutil.which("adb")
        if exe is None:
            raise EdgecvError("--target adb: `adb` is not on PATH; install Android SDK platform-tools "
                              "(Debian/Ubuntu: sudo apt-get install adb) and enable USB debugging on the phone")
        self.exe = exe
        self.timeout_s = timeout_s
        self.serial = self._pick_device(target.serial)

    def _call(self, args: list[str], timeout_s: float | None = None, serial: bool = True) -> subprocess.CompletedProcess:
        argv = [self.exe] + (["-s", self.serial] if serial else []) + args
        try:
            return subprocess.run(argv, capture_output=True, text=True, errors="replace",
                                  timeout=timeout_s or self.timeout_s, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise EdgecvError(f"adb {' '.join(args[:1])} on {self.serial or 'device'}: no answer within "
                              f"{timeout_s or self.timeout_s:.0f} s") from None

    def _pick_device(self, serial: str | None) -> str:
        res = self._call(["devices"], timeout_s=60, serial=False)
        if res.returncode != 0:
            raise EdgecvError(f"adb devices failed: {_last_line(res.stderr or res.stdout)}")
        devices: dict[str, str] = {}
        for line in res.stdout.splitlines():
            if not line.strip() or line.startswith("List of devices") or line.startswith("*"):
                continue
            parts = line.split()
            if len(parts) >= 2:
                devices[parts[0]] = parts[1]
        ready = [s for s, st in devices.items() if st == "device"]
        if serial is None:
            if not devices:
                raise EdgecvError("--target adb: no Android device found (`adb devices` lists none); connect one "
                                  "with USB debugging enabled")
            if not ready:
                s, st = next(iter(devices.items()))
                raise EdgecvError(f"--target adb: device {s} is {st}{_state_hint(st)}")
            if len(ready) > 1:
                raise EdgecvError(f"--target adb: {len(ready)} devices connected ({', '.join(ready)}); "
                                  f"choose one with --target adb:SERIAL")
            return ready[0]
        if serial not in devices:
            listed = ", ".join(devices) or "none"
            raise EdgecvError(f"--target adb:{serial}: no such device (connected: {listed})."
                              f"{suggest(serial, devices)}")
        if devices[serial] != "device":
            raise EdgecvError(f"--target adb:{serial}: device is {devices[serial]}{_state_hint(devices[serial])}")
        return serial

    def shell(self, command: str, timeout_s: float | None = None) -> subprocess.CompletedProcess:
        return self._call(["shell", command], timeout_s)

    def push(self, local: Path, remote: str) -> None:
        res = self._call(["push", str(local), remote])
        if res.returncode != 0:
            raise EdgecvError(f"adb push {local.name} to {self.serial} failed: {_last_line(res.stderr or res.stdout)}")

    def props(self) -> dict[str, str]:
        script = "; ".join(f"echo {k}=$(getprop {p})" for k, p in PROPS.items())
        script += "; echo governor=$(cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null)"
        script += "; echo cores=$(ls -d /sys/devices/system/cpu/cpu[0-9]* 2>/dev/null | wc -l)"
        res = self.shell(script, timeout_s=60)
        out = {}
        for line in res.stdout.splitlines():
            k, sep, v = line.strip().partition("=")
            if sep and v.strip():
                out[k] = v.strip()
        cpu = self.shell("cat /proc/cpuinfo", timeout_s=60)
        if cpu.returncode == 0 and cpu.stdout.strip():
            out["cpuinfo"] = cpu.stdout[:1_000_000]
        return out


def _state_hint(state: str) -> str:
    return {
        "unauthorized": ": accept the USB debugging prompt on the phone",
        "offline": ": reconnect the cable or run `adb kill-server`",
        "no": ": check the udev rules / USB permissions",
    }.get(state, "")


def _last_line(text: str) -> str:
    return last_line(text, "no message")


def benchmark_command(remote_dir: str, model_name: str, *, threads: int | None, warmup_runs: int | None,
                      runs: int | None, min_time_s: float | None, cpus: str | None,
                      op_profiling: bool = False) -> str:
    binary = f"{remote_dir}/benchmark_model"
    args = [binary, f"--graph={remote_dir}/{model_name}"]
    if op_profiling:
        args.append("--enable_op_profiling=true")
    if threads is not None:
        args.append(f"--num_threads={int(threads)}")
    if warmup_runs is not None:
        # exactly this many warm-up runs: no minimum warm-up time
        args += [f"--warmup_runs={int(warmup_runs)}", "--warmup_min_secs=0"]
    if runs is not None:
        args.append(f"--num_runs={int(runs)}")
    args.append(f"--min_secs={float(min_time_s or 0.0):g}")
    cmd = " ".join(shlex.quote(a) for a in args)
    if cpus:
        cmd = f"taskset {cpu_mask(cpus)} {cmd}"
    return cmd


def measure_over_adb(model: Path, target: AdbTarget, benchmark_binary: str | Path, *, threads: int | None = None,
                     warmup_runs: int | None = None, runs: int | None = None, min_time_s: float | None = None,
                     cpus: str | None = None, device_dir: str = DEVICE_DIR, timeout_s: float = 1800.0,
                     op_profiling: bool = False) -> tuple[BenchmarkModelOutput, dict, str, str]:
    """Push, run, parse, clean up. Returns (parsed output, device properties, serial, raw output)."""
    if model.suffix.lower() != ".tflite":
        raise EdgecvError(f"--target adb: benchmark_model runs .tflite files only, got {model.name!r}")
    if benchmark_binary is None:
        raise EdgecvError("--target adb needs --benchmark-binary PATH: the Android build of TensorFlow Lite's "
                          "benchmark_model (bazel build -c opt --config=android_arm64 "
                          "tensorflow/lite/tools/benchmark:benchmark_model)")
    binary = Path(benchmark_binary)
    if not binary.is_file():
        raise EdgecvError(f"--benchmark-binary: no such file: {str(binary)!r}")
    if cpus:
        cpu_mask(cpus)  # validate before touching the device
    adb = Adb(target, timeout_s)
    res = adb.shell(f"mktemp -d {shlex.quote(device_dir.rstrip('/') + '/edgecv.XXXXXXXX')}", timeout_s=60)
    remote_dir = res.stdout.strip().splitlines()[-1].strip() if res.stdout.strip() else ""
    if res.returncode != 0 or not remote_dir.startswith("/") or "/edgecv." not in remote_dir:
        raise EdgecvError(f"adb:{adb.serial}: cannot create a folder under {device_dir}: "
                          f"{_last_line(res.stderr or res.stdout)}")
    try:
        adb.push(model, f"{remote_dir}/model.tflite")
        adb.push(binary, f"{remote_dir}/benchmark_model")
        res = adb.shell(f"chmod 755 {shlex.quote(remote_dir + '/benchmark_model')}", timeout_s=60)
        if res.returncode != 0:
            raise EdgecvError(f"adb:{adb.serial}: chmod failed: {_last_line(res.stderr or res.stdout)}")
        props = adb.props()
        cmd = benchmark_command(remote_dir, "model.tflite", threads=threads, warmup_runs=warmup_runs, runs=runs,
                                min_time_s=min_time_s, cpus=cpus, op_profiling=op_profiling)
        res = adb.shell(cmd)
        text = res.stdout + ("\n" + res.stderr if res.stderr else "")
        try:
            parsed = parse_benchmark_model(text)
        except BenchmarkOutputError as exc:
            if res.returncode > 128:
                raise EdgecvError(f"adb:{adb.serial}: benchmark_model was killed by signal {res.returncode - 128}") from None
            raise EdgecvError(f"adb:{adb.serial}: {exc}") from None
        return parsed, props, adb.serial, text
    finally:
        adb.shell(f"rm -rf {shlex.quote(remote_dir)}", timeout_s=60)
