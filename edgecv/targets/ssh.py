"""Measure a model on a Linux board (Raspberry Pi, Jetson, any SSH host) with the host profiler's runner.

Uses the system ``ssh``/``scp`` with the user's own configuration, keys and agent, always in batch mode
(a missing key fails instead of prompting; no password ever goes on a command line). Steps, each one
``ssh``/``scp`` invocation:

1. probe: the target's Python, numpy and TFLite/ONNX runtime, and ``tempfile.mkdtemp()`` on the target;
2. ``scp`` the model, ``edgecv/profiling/runner.py`` and its companion ``cpu_probe.py`` into that folder;
3. run ``python3 runner.py MODEL ...`` there (a shell ``trap`` removes the folder when it ends);
4. if step 3 did not confirm the removal (killed, timed out, Ctrl-C, connection lost): ``rm -rf`` it
   in a ``finally`` block, after stopping the runner if it is still alive.

Extra ``ssh`` options (``-F config``, ``-o UserKnownHostsFile=...``, ``-i key``) come from the
``ssh_options`` argument or the ``EDGECV_SSH_OPTIONS`` environment variable; edgecv never turns host-key
checking off by itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from edgecv.errors import EdgecvError, last_line, suggest

RUNNER = Path(__file__).resolve().parents[1] / "profiling" / "runner.py"
CPU_PROBE = RUNNER.with_name("cpu_probe.py")  # the runner's one companion (standard library only)
DEFAULT_CONNECT_TIMEOUT_S = 15
QUERY_KEYS = ("python",)
_HOST_RE = re.compile(r"^[A-Za-z0-9_.:%-]+$")
_USER_RE = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*$")
CLEANED_MARK = "edgecv-target: cleaned"

# Raspberry Pi OS bookworm refuses `pip install` into the system Python (externally-managed-environment):
# the hints name the venv route docs/targets.md documents, then how to point edgecv at that venv's python.
VENV_HINT = "then pass --target 'ssh://user@host?python=/home/USER/edgecv/bin/python'"
INSTALL_HINT_TFLITE = ("install a TFLite runtime there in a venv: 64-bit OS (aarch64/x86-64): `python3 -m venv "
                       "~/edgecv && ~/edgecv/bin/pip install numpy ai-edge-litert`; 32-bit Raspberry Pi OS "
                       "(armv7l): `sudo apt-get install python3-numpy && python3 -m venv --system-site-packages "
                       f"~/edgecv && ~/edgecv/bin/pip install tflite-runtime`; {VENV_HINT}")
INSTALL_HINT_ONNX = ("install it there in a venv: `python3 -m venv ~/edgecv && ~/edgecv/bin/pip install numpy "
                     f"onnxruntime`; {VENV_HINT}")
INSTALL_HINT_NUMPY = ("install it there: `sudo apt-get install python3-numpy` (then `python3 -m venv "
                      "--system-site-packages ~/edgecv` for the runtime), or in a venv: `python3 -m venv ~/edgecv && "
                      f"~/edgecv/bin/pip install numpy`; {VENV_HINT}")


@dataclass(frozen=True)
class SshTarget:
    host: str
    user: str | None = None
    port: int | None = None
    python: str = "python3"

    @property
    def uri(self) -> str:
        """``ssh://host[:port]``: the device name in results (no user name, no credentials)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ssh://{host}" + (f":{self.port}" if self.port else "")

    def scp_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host


def parse_ssh_target(text: str, python: str | None = None) -> SshTarget:
    """``ssh://[user@]host[:port][?python=/path/to/python3]`` -> SshTarget (EdgecvError if malformed)."""
    bad = f"--target: expected ssh://[user@]host[:port], got {text!r}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise EdgecvError(bad) from None
    if parts.scheme != "ssh" or not parts.hostname or parts.path not in ("", "/") or parts.fragment:
        raise EdgecvError(bad)
    if parts.password is not None:
        # never echo the password back
        raise EdgecvError("--target: passwords are not accepted in ssh:// targets; use an SSH key "
                          "(ssh-copy-id) or ssh-agent")
    host = parts.hostname
    if host.startswith("-") or not _HOST_RE.match(host):
        raise EdgecvError(f"--target: invalid host name {host!r}")
    user = parts.username
    if user is not None and (not _USER_RE.match(user)):
        raise EdgecvError(f"--target: invalid user name {user!r}")
    query = parse_qs(parts.query, keep_blank_values=True) if parts.query else {}
    for key in query:
        if key not in QUERY_KEYS:
            raise EdgecvError(f"--target: unknown option {key!r} in {text!r}.{suggest(key, QUERY_KEYS)} "
                              "Known: python=/path/to/python3")
    py = python or (query["python"][-1] if "python" in query else None) or "python3"
    if not py or py.startswith("-") or any(c in py for c in "\n\r\0"):
        raise EdgecvError(f"--target: invalid python path {py!r}")
    return SshTarget(host=host, user=user, port=port, python=py)


def _extra_options(ssh_options: Any) -> list[str]:
    opts: list[str] = []
    env = os.environ.get("EDGECV_SSH_OPTIONS")
    if env:
        opts += shlex.split(env)
    if ssh_options:
        opts += shlex.split(ssh_options) if isinstance(ssh_options, str) else [str(o) for o in ssh_options]
    return opts


def ssh_error_message(target: SshTarget, stderr: str) -> str:
    """One line that says what went wrong connecting, from ssh's stderr."""
    where = target.uri
    who = f"{target.user}@{target.host}" if target.user else target.host
    low = stderr.lower()
    if "connection refused" in low:
        return f"{where}: connection refused (is sshd running on the target, and is the port right?)"
    if "could not resolve hostname" in low or "name or service not known" in low \
            or "nodename nor servname" in low or "temporary failure in name resolution" in low:
        return f"{where}: unknown host {target.host!r} (check the name, or use the board's IP address)"
    if "timed out" in low or "no route to host" in low or "network is unreachable" in low \
            or "host is down" in low:
        return f"{where}: host unreachable ({_last_line(stderr)})"
    if "remote host identification has changed" in low or "host key for" in low and "has changed" in low:
        return (f"{where}: WARNING: the host key of {target.host} has CHANGED since it was stored in known_hosts "
                "(someone may be intercepting the connection, or the board was reinstalled); edgecv did not "
                f"connect. If the change is expected, remove the old key with `ssh-keygen -R {_known_name(target)}` "
                f"and check the new one with `ssh {who}`")
    if "host key verification failed" in low or "no matching host key" in low:
        return (f"{where}: the host key is not trusted (host key verification failed); connect once with "
                f"`ssh {who}` to check and accept it. edgecv never disables host-key checking")
    if "permission denied" in low or "too many authentication failures" in low:
        return (f"{where}: authentication failed for {who}; edgecv runs ssh in batch mode and never asks for "
                f"a password: install your public key on the target (`ssh-copy-id {who}`) or load it into "
                "ssh-agent")
    if "connection closed" in low or "connection reset" in low or "broken pipe" in low:
        return f"{where}: the connection was closed ({_last_line(stderr)})"
    return f"{where}: ssh failed: {_last_line(stderr) or 'no message'}"


def _known_name(target: SshTarget) -> str:
    """The host's name as known_hosts stores it: ``host`` or ``[host]:port``."""
    return f"'[{target.host}]:{target.port}'" if target.port and target.port != 22 else target.host


def _last_line(text: str) -> str:
    return last_line(text, skip=("Warning: Permanently",))


_PROBE = r"""
import importlib.util, json, os, platform, sys, tempfile
need = sys.argv[1]
mods = ("numpy", "ai_edge_litert", "tflite_runtime", "tensorflow", "onnxruntime")
have = {}
for m in mods:
    try:
        have[m] = importlib.util.find_spec(m) is not None
    except Exception:
        have[m] = False
info = {"python": platform.python_version(), "machine": platform.machine(), "have": have,
        "cores": os.cpu_count()}
rt = have["onnxruntime"] if need == "onnx" else (have["ai_edge_litert"] or have["tflite_runtime"] or have["tensorflow"])
if sys.version_info >= (3, 8) and have["numpy"] and rt:
    info["dir"] = tempfile.mkdtemp(prefix="edgecv.")
print("EDGECV_PROBE " + json.dumps(info))
"""


def _sh(script: str) -> str:
    """A remote command line that runs ``script`` with sh, whatever the user's login shell."""
    return "sh -c " + shlex.quote(script)


class SshSession:
    """The ssh/scp command lines for one target (no state on the target besides the temp folder)."""

    def __init__(self, target: SshTarget, ssh_options: Any = None, connect_timeout_s: int = DEFAULT_CONNECT_TIMEOUT_S):
        for tool in ("ssh", "scp"):
            if shutil.which(tool) is None:
                raise EdgecvError(f"--target {target.uri}: `{tool}` is not on PATH; install the OpenSSH client "
                                  "(Debian/Ubuntu: sudo apt-get install openssh-client)")
        self.target = target
        # BatchMode first: ssh keeps the first value it sees for an option, so nothing can turn prompts on.
        opts = ["-o", "BatchMode=yes"] + _extra_options(ssh_options)
        opts += ["-o", f"ConnectTimeout={int(connect_timeout_s)}", "-o", "ServerAliveInterval=10",
                 "-o", "ServerAliveCountMax=6", "-o", "LogLevel=ERROR"]
        if target.user:
            opts += ["-o", f"User={target.user}"]
        if target.port:
            opts += ["-o", f"Port={target.port}"]
        self.options = opts

    def ssh_argv(self, remote_command: str) -> list[str]:
        return ["ssh", *self.options, "-T", "--", self.target.host, remote_command]

    def scp_argv(self, files: list[Path], remote_dir: str, legacy: bool = False) -> list[str]:
        # legacy: the old SCP protocol (-O), for targets without an SFTP server (dropbear, minimal images)
        return ["scp", "-q", *(["-O"] if legacy else []), *self.options, "--", *[str(f) for f in files],
                f"{self.target.scp_host()}:{remote_dir}/"]

    def run(self, argv: list[str], timeout_s: float, stdin: str | None = None) -> subprocess.CompletedProcess:
        """Run ssh/scp in its own session (the terminal's Ctrl-C reaches edgecv only, which then stops it),
        ended with edgecv (``edgecv.isolation``)."""
        from edgecv.isolation import program_argv, run

        try:
            return run(program_argv(argv), timeout_s, input=stdin)
        except subprocess.TimeoutExpired:
            raise EdgecvError(f"{self.target.uri}: no answer within {timeout_s:.0f} s") from None


def _check_connection(sess: SshSession, res: subprocess.CompletedProcess) -> None:
    if res.returncode == 255:
        raise EdgecvError(ssh_error_message(sess.target, res.stderr))


def probe(sess: SshSession, fmt: str, timeout_s: float = 60) -> dict:
    """Check Python/numpy/runtime on the target and create the temporary folder there."""
    t = sess.target
    script = (f"PY={shlex.quote(t.python)}\n"
              'if ! command -v "$PY" >/dev/null 2>&1; then echo "EDGECV_NO_PYTHON"; exit 0; fi\n'
              f'exec "$PY" -c {shlex.quote(_PROBE)} {shlex.quote(fmt)}\n')
    res = sess.run(sess.ssh_argv(_sh(script)), timeout_s)
    _check_connection(sess, res)
    out = res.stdout
    if "EDGECV_NO_PYTHON" in out:
        raise EdgecvError(f"{t.uri}: {t.python!r} not found on the target; install Python 3 there "
                          "(Raspberry Pi OS / Debian: sudo apt-get install python3 python3-numpy) or point "
                          "edgecv at it with ssh://host?python=/path/to/python3")
    line = next((ln for ln in out.splitlines() if ln.startswith("EDGECV_PROBE ")), None)
    if line is None:
        raise EdgecvError(f"{t.uri}: cannot run {t.python!r} on the target: "
                          f"{_last_line(res.stderr) or _last_line(out) or f'exit code {res.returncode}'}")
    try:
        info = json.loads(line[len("EDGECV_PROBE "):])
    except ValueError:
        raise EdgecvError(f"{t.uri}: unexpected answer from {t.python!r} on the target: {line[:200]!r}") from None
    have = info.get("have", {})
    py = info.get("python", "?")
    if "dir" not in info:
        if tuple(int(x) for x in re.findall(r"\d+", py)[:2]) < (3, 8):
            raise EdgecvError(f"{t.uri}: Python {py} on the target is too old; the runner needs Python >= 3.8")
        if not have.get("numpy"):
            raise EdgecvError(f"{t.uri}: numpy is missing on the target (Python {py}); {INSTALL_HINT_NUMPY}")
        if fmt == "onnx":
            raise EdgecvError(f"{t.uri}: onnxruntime is missing on the target (Python {py}); {INSTALL_HINT_ONNX}")
        raise EdgecvError(f"{t.uri}: no TFLite runtime on the target (Python {py}, {info.get('machine')}); "
                          f"{INSTALL_HINT_TFLITE}")
    d = info["dir"]
    if not _safe_dir(d):
        raise EdgecvError(f"{t.uri}: unexpected temporary folder name {d!r}")
    return info


def _safe_dir(d: str) -> bool:
    return d.startswith("/") and os.path.basename(d).startswith("edgecv.") and "\n" not in d and ".." not in d


def _runner_args(model_name: str, runtime: str | None, threads: int | None, warmup_runs: int | None,
                 runs: int | None, min_time_s: float | None, cpus: str | None) -> list[str]:
    args = [model_name]
    if runtime:
        args += ["--runtime", runtime]
    if threads is not None:
        args += ["--threads", str(int(threads))]
    if warmup_runs is not None:
        args += ["--warmup-runs", str(int(warmup_runs))]
    if runs is not None:
        args += ["--runs", str(int(runs))]
    if min_time_s is not None:
        args += ["--min-time-s", repr(float(min_time_s))]
    if cpus:
        args += ["--cpus", str(cpus)]
    return args


def run_script(remote_dir: str, python: str, runner_args: list[str]) -> str:
    """The shell script that runs the runner in ``remote_dir`` and removes the folder when it ends."""
    d = shlex.quote(remote_dir)
    cmd = " ".join(shlex.quote(a) for a in [python, "runner.py", *runner_args])
    return (
        f"d={d}\n"
        'cleanup() { rm -rf -- "$d" && echo "' + CLEANED_MARK + '" >&2; }\n'
        "trap cleanup EXIT\n"
        "trap 'exit 129' HUP\ntrap 'exit 130' INT\ntrap 'exit 143' TERM\n"
        'cd "$d" || exit 90\n'
        f"{cmd} </dev/null &\n"
        "pid=$!\n"
        'echo "$pid" > pid\n'
        'wait "$pid"\n'
        "rc=$?\n"
        'if [ "$rc" -gt 128 ]; then echo "edgecv-target: runner killed by signal $((rc - 128))" >&2; fi\n'
        'exit "$rc"\n'
    )


def cleanup_script(remote_dir: str) -> str:
    d = shlex.quote(remote_dir)
    return (f"d={d}\n"
            'if [ -f "$d/pid" ]; then kill "$(cat "$d/pid")" 2>/dev/null; fi\n'
            'rm -rf -- "$d"\n')


_SIGNALS = {9: "SIGKILL: killed, e.g. by the out-of-memory killer", 15: "SIGTERM", 6: "SIGABRT",
            11: "SIGSEGV: the runtime crashed", 7: "SIGBUS", 4: "SIGILL: an instruction this CPU lacks"}


def measure_over_ssh(model: Path, target: SshTarget, *, fmt: str, runtime: str | None = None,
                     threads: int | None = None, warmup_runs: int | None = None, runs: int | None = None,
                     min_time_s: float | None = None, cpus: str | None = None, ssh_options: Any = None,
                     timeout_s: float = 1800.0, connect_timeout_s: int = DEFAULT_CONNECT_TIMEOUT_S,
                     runner: Path | None = None, extra_files: list[Path] = (),
                     extra_args: list[str] = ()) -> tuple[dict, dict]:
    """Run the runner on the target. Returns (runner JSON, probe info). Raises EdgecvError on any failure,
    after the temporary folder on the target has been removed (also on Ctrl-C, SIGTERM and SIGHUP: the removal
    itself cannot be interrupted, and the watchdog of ``edgecv.isolation`` runs it if edgecv must end first).

    extra_files: more files for the runner's folder (e.g. verification inputs); extra_args: more runner options."""
    runner = Path(runner or RUNNER)
    if not runner.is_file():
        raise EdgecvError(f"the profiler's runner script is missing: {runner}")
    sess = SshSession(target, ssh_options, connect_timeout_s)
    with signals_unwind():
        info = probe(sess, fmt, timeout_s=max(60.0, 4 * connect_timeout_s))
        return _measure_in(sess, info, model, target, runner, fmt=fmt, runtime=runtime, threads=threads,
                           warmup_runs=warmup_runs, runs=runs, min_time_s=min_time_s, cpus=cpus, timeout_s=timeout_s,
                           connect_timeout_s=connect_timeout_s, extra_files=extra_files, extra_args=extra_args)


def _measure_in(sess: SshSession, info: dict, model: Path, target: SshTarget, runner: Path, *, fmt, runtime, threads,
                warmup_runs, runs, min_time_s, cpus, timeout_s, connect_timeout_s, extra_files, extra_args):
    remote_dir = info["dir"]
    if threads is None:  # as the host profiler: all the cores the run may use
        threads = len(_cpu_list(cpus)) if cpus else int(info.get("cores") or 1)
    cleaned = False

    def remove_remote_dir() -> None:
        try:
            sess.run(sess.ssh_argv(_sh(cleanup_script(remote_dir))), timeout_s=max(30.0, 2 * connect_timeout_s))
        except EdgecvError:
            pass  # connection gone: nothing more can be done from here

    from edgecv.isolation import forget_forced_exit, on_forced_exit

    on_forced_exit(remove_remote_dir)  # if edgecv must end before this function's finally has run
    try:
        # scp keeps each file's base name: stage both under fixed names so no remote path needs quoting
        with tempfile.TemporaryDirectory(prefix="edgecv-upload.") as stage:
            staged_model = Path(stage) / ("model" + model.suffix.lower())
            staged_runner = Path(stage) / "runner.py"
            staged_probe = Path(stage) / "cpu_probe.py"
            _link_or_copy(model, staged_model)
            _link_or_copy(runner, staged_runner)
            _link_or_copy(runner.with_name("cpu_probe.py") if runner.with_name("cpu_probe.py").is_file()
                          else CPU_PROBE, staged_probe)
            files = [staged_model, staged_runner, staged_probe]
            for f in extra_files:
                _link_or_copy(Path(f), Path(stage) / Path(f).name)
                files.append(Path(stage) / Path(f).name)
            res = sess.run(sess.scp_argv(files, remote_dir), timeout_s)
            if res.returncode != 0 and ("subsystem request failed" in res.stderr or "sftp" in res.stderr.lower()):
                res = sess.run(sess.scp_argv(files, remote_dir, legacy=True), timeout_s)
        if res.returncode != 0:
            if res.returncode == 255 or "lost connection" in res.stderr.lower():
                raise EdgecvError(ssh_error_message(target, res.stderr))
            raise EdgecvError(f"{target.uri}: copying the model to {remote_dir} failed: {_last_line(res.stderr)}")
        args = _runner_args(staged_model.name, runtime, threads, warmup_runs, runs, min_time_s, cpus) + list(extra_args)
        res = sess.run(sess.ssh_argv(_sh(run_script(remote_dir, target.python, args))), timeout_s)
        cleaned = CLEANED_MARK in res.stderr
        if res.returncode == 255 and not res.stdout.strip():
            raise EdgecvError(ssh_error_message(target, res.stderr))
        if res.returncode != 0:
            raise EdgecvError(_runner_failure(target, res))
        result = _parse_runner_json(res.stdout)
        if result is None:
            raise EdgecvError(f"{target.uri}: the runner printed no JSON result "
                              f"({_last_line(res.stderr) or 'no message'})")
        return result, info
    finally:
        if not cleaned:
            with deferred_signals():  # a second Ctrl-C (or SIGTERM) waits until the folder is gone
                remove_remote_dir()
        forget_forced_exit(remove_remote_dir)


class TargetSignal(BaseException):
    """SIGTERM/SIGHUP while edgecv's signal handlers are not installed (the Python API): unwinds like Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _unwind_signals() -> list:
    return [signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])


@contextlib.contextmanager
def signals_unwind():
    """SIGTERM/SIGHUP unwind the block (so ``finally`` cleans the target) when they would otherwise end the
    process on the spot (default handlers: the Python API; the CLI installs its own). Afterwards the process
    ends by that signal, as it would have."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    mine = [sg for sg in _unwind_signals() if signal.getsignal(sg) == signal.SIG_DFL]

    def handler(signum, frame):
        raise TargetSignal(signum)

    for sg in mine:
        signal.signal(sg, handler)
    try:
        yield
    except TargetSignal as exc:
        for sg in mine:
            signal.signal(sg, signal.SIG_DFL)
        mine = []
        signal.raise_signal(exc.signum)
        raise
    finally:
        for sg in mine:
            signal.signal(sg, signal.SIG_DFL)


@contextlib.contextmanager
def deferred_signals():
    """Hold SIGINT/SIGTERM/SIGHUP until the block is done (main thread), then act on the first one as its
    handler would have. The block must bound its own time (the ssh calls have timeouts)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    sigs = [signal.SIGINT] + _unwind_signals()
    old = {sg: signal.getsignal(sg) for sg in sigs}
    for sg in sigs:
        signal.signal(sg, lambda signum, frame: got.append(signum))
    try:
        yield
    finally:
        for sg, h in old.items():
            signal.signal(sg, h)
        if got:
            h = old[got[0]]
            if callable(h):
                h(got[0], None)  # KeyboardInterrupt, edgecv.isolation.Terminated, TargetSignal ...
            elif h == signal.SIG_DFL:
                signal.raise_signal(got[0])


def _cpu_list(cpus: str) -> list[int]:
    out: list[int] = []
    for part in str(cpus).split(","):
        lo, sep, hi = part.strip().partition("-")
        if lo.isdigit() and (not sep or hi.isdigit()):
            out += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    return out or [0]


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.symlink(os.path.abspath(src), dst)
    except OSError:
        shutil.copyfile(src, dst)


def _runner_failure(target: SshTarget, res: subprocess.CompletedProcess) -> str:
    rc = res.returncode
    killed = re.search(r"runner killed by signal (\d+)", res.stderr)
    if killed or rc > 128:
        sig = int(killed.group(1)) if killed else rc - 128
        what = _SIGNALS.get(sig, f"signal {sig}")
        return f"{target.uri}: the runner was killed mid-run by signal {sig} ({what})"
    lines = [ln.strip() for ln in res.stderr.splitlines()
             if ln.strip() and not ln.startswith("edgecv-target:")]
    err = next((ln for ln in reversed(lines) if ln.startswith("runner: error:")), None)
    if err:
        msg = err[len("runner: error:"):].strip()
        if "no TFLite runtime" in msg:
            msg += f"; {INSTALL_HINT_TFLITE}"
        elif "onnxruntime is not installed" in msg:
            msg += f"; {INSTALL_HINT_ONNX}"
        return f"{target.uri}: the runner failed: {msg}"
    return f"{target.uri}: the runner failed with exit code {rc}: {lines[-1] if lines else 'no message'}"


def _parse_runner_json(stdout: str) -> dict | None:
    """The runner's JSON object: the last stdout line that parses as one (login scripts may print too)."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and "latency_ms" in obj:
                return obj
    return None
