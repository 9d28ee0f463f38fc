"""Every process edgecv starts, started one way: isolated from the working folder, with a time limit, stdin
closed, and ending when edgecv ends.

- **Python children** (model parsing, measurement, conversion probes) run ``python -P -c BOOT ...``: the
  working folder and the script's folder are not put on ``sys.path`` (``PYTHONSAFEPATH=1`` is passed on, so
  grandchildren do the same), so a ``json.py`` or ``keras_hub/`` in the folder a user runs edgecv from is never
  imported. The small bootstrap then asks the kernel to kill the child when its parent dies
  (``PR_SET_PDEATHSIG``, Linux) and watches its parent pid (every platform), then runs the module or script.
- **Other programs** (``ssh``, ``adb``) go through the same bootstrap, which ``exec``\\ s them after setting the
  parent-death signal (it survives ``exec``).
- Children run in their own session: a timeout, an error or a signal in edgecv kills the child's whole process
  group, and the terminal's Ctrl-C reaches edgecv only (which then ends them).
- :func:`install_signal_handlers` makes SIGTERM and SIGHUP unwind like Ctrl-C (:class:`Terminated`), so partial
  files are removed; a watchdog ends the process (removing edgecv's live temporary files and killing its
  children) if the main thread is stuck in native code and cannot unwind within a few seconds.
- Pool workers (``sweep -j N``) call :func:`watch_parent` in their initializer.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

# Run by ``python -P -c``. On Python 3.10 (no -P) the first entry of sys.path is the working folder: drop it
# before anything else is imported.
BOOT = ("import sys\n"
        "if not getattr(sys.flags, 'safe_path', False) and sys.path and sys.path[0] in ('', '.'):\n"
        "    del sys.path[0]\n"
        "from edgecv.isolation import _child_main\n"
        "_child_main(sys.argv[1:])\n")

POLL_S = 0.5  # how often a child or worker checks that its parent is alive
GRACE_S = 5.0  # after SIGTERM/SIGHUP/SIGINT: how long the main thread may take to unwind before the watchdog ends it

_live: set[subprocess.Popen] = set()  # children started by run() and not yet reaped
_live_lock = threading.Lock()
_group_cleanups: list[Callable[[], None]] = []  # e.g. terminate pool workers; run by the watchdog
_leaving = threading.Event()  # the main thread has unwound and is printing its one line and exiting


class Terminated(BaseException):
    """SIGTERM or SIGHUP received: unwinds like KeyboardInterrupt (not caught by ``except Exception``)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


# --- starting children ------------------------------------------------------------------------------------

def _flags() -> list[str]:
    return ["-P"] if sys.version_info >= (3, 11) else []


def python_argv(*, module: str | None = None, script: str | os.PathLike | None = None, code: str | None = None,
                args: Sequence[str] = ()) -> list[str]:
    """The command line that runs one of ``module`` (like ``-m``), ``script`` (a file) or ``code`` (like
    ``-c``) with ``args`` in an isolated child of this process."""
    if sum(x is not None for x in (module, script, code)) != 1:
        raise ValueError("python_argv: give exactly one of module, script, code")
    kind, target = (("module", module) if module is not None else
                    ("script", os.fspath(script)) if script is not None else ("code", code))
    return [sys.executable, *_flags(), "-c", BOOT, str(os.getpid()), kind, str(target), *map(str, args)]


def program_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` (another program: ssh, adb) started through the bootstrap, so it ends when edgecv ends."""
    if not sys.platform.startswith("linux"):
        return list(argv)
    return [sys.executable, *_flags(), "-c", BOOT, str(os.getpid()), "exec", *map(str, argv)]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: this one, with ``PYTHONSAFEPATH=1`` (grandchildren do not put their
    working folder on sys.path either), empty ``PYTHONPATH`` entries (which mean the working folder) dropped,
    and TensorFlow's start-up notices off unless the user set a level."""
    env = dict(os.environ)
    env["PYTHONSAFEPATH"] = "1"
    if "PYTHONPATH" in env:
        parts = [p for p in env["PYTHONPATH"].split(os.pathsep) if p not in ("", ".")]
        if parts:
            env["PYTHONPATH"] = os.pathsep.join(parts)
        else:
            del env["PYTHONPATH"]
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra or {})
    return env


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the child's process group (it leads its own session); only while the child is not yet reaped,
    so the group id cannot have been reused."""
    if proc.returncode is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, AttributeError):
        try:
            proc.kill()
        except ProcessLookupError:
            pass


def run(argv: Sequence[str], timeout_s: float, *, env: dict[str, str] | None = None,
        input: str | None = None, text: bool = True) -> subprocess.CompletedProcess:
    """Run ``argv`` (from :func:`python_argv` / :func:`program_argv`), capture its output, return the
    ``CompletedProcess``. ``subprocess.TimeoutExpired`` after ``timeout_s``; on a timeout, an error or a signal
    in this process the child's process group is killed before this returns or raises. stdin is closed unless
    ``input`` is given."""
    proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=text,
                            errors="replace" if text else None, env=child_env() if env is None else env,
                            start_new_session=True, close_fds=True)
    with _live_lock:
        _live.add(proc)
    try:
        try:
            out, err = proc.communicate(input=input, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate()
            raise subprocess.TimeoutExpired(proc.args, timeout_s, output=out, stderr=err) from None
        except BaseException:
            _kill_group(proc)
            proc.wait()
            raise
    finally:
        with _live_lock:
            _live.discard(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def kill_children() -> None:
    """Kill every child started by :func:`run` that is still running (used when edgecv must end now)."""
    with _live_lock:
        procs = list(_live)
    for p in procs:
        _kill_group(p)


def on_forced_exit(fn: Callable[[], None]) -> Callable[[], None]:
    """Register ``fn`` to run when the watchdog ends the process (e.g. terminate pool workers)."""
    _group_cleanups.append(fn)
    return fn


def forget_forced_exit(fn: Callable[[], None]) -> None:
    if fn in _group_cleanups:
        _group_cleanups.remove(fn)


# --- ending with the parent -------------------------------------------------------------------------------

def _set_parent_death_signal(sig: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(1, int(sig), 0, 0, 0) == 0  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False


def _die(code: int) -> None:
    from edgecv.fileio import remove_live_temporaries

    remove_live_temporaries()
    kill_children()
    os._exit(code)


def watch_parent(ppid: int, graceful: bool = False) -> None:
    """End this process when ``ppid`` (its parent) ends: SIGKILL from the kernel on Linux (``PR_SET_PDEATHSIG``),
    elsewhere a daemon thread that checks the parent pid every ``POLL_S`` s (removing edgecv's live temporary
    files first).

    ``graceful`` (pool workers): SIGTERM/SIGHUP remove the live temporary files, kill this process's children
    and exit 143/129; Ctrl-C is left to the main process, which ends its workers."""
    armed = _set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != ppid:  # the parent died before the death signal was armed
        os._exit(143)
    if graceful:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
            if sig is not None:
                signal.signal(sig, lambda signum, frame: _die(128 + signum))

    def poll() -> None:
        while True:
            time.sleep(POLL_S)
            if os.getppid() != ppid:
                _die(143)

    if not armed:  # no parent-death signal on this platform: poll (a thread that wakes twice a second)
        threading.Thread(target=poll, name="edgecv-parent-watch", daemon=True).start()


def _child_main(argv: list[str]) -> None:
    """Entry of the bootstrap: ``<parent pid> <module|script|code|exec> <target> [args...]``."""
    ppid, kind, target, args = int(argv[0]), argv[1], argv[2], argv[3:]
    if kind == "exec":
        _set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != ppid:
            os._exit(143)
        try:
            os.execvp(target, [target, *args])
        except OSError as exc:
            sys.stderr.write(f"cannot run {target!r}: {exc.strerror}\n")
            os._exit(127)
    watch_parent(ppid)
    import runpy

    sys.argv = [target, *args]
    if kind == "module":
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    elif kind == "script":
        runpy.run_path(target, run_name="__main__")
    else:
        sys.argv[0] = "-c"
        exec(compile(target, "<edgecv-child>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})


# --- signals in the main process --------------------------------------------------------------------------

def leaving() -> None:
    """Tell the watchdog that the main thread has unwound and exits now (it then prints nothing itself)."""
    _leaving.set()


def _raise_terminated(signum: int, frame) -> None:
    raise Terminated(signum)


def install_signal_handlers() -> None:
    """In the main thread of the CLI: SIGTERM and SIGHUP raise :class:`Terminated` (files are cleaned up while
    it unwinds, like Ctrl-C); a watchdog thread ends the process ``GRACE_S`` s after any of SIGINT, SIGTERM,
    SIGHUP if the main thread has not finished unwinding by then (it can be stuck in native code, where Python
    signal handlers do not run): it removes edgecv's live temporary files, kills the children and exits with
    128 + the signal number."""
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:  # ``nohup edgecv ...`` stays immune
            signal.signal(sig, _raise_terminated)
    try:
        r, w = os.pipe()
        os.set_blocking(w, False)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    except (ValueError, OSError):  # not the main thread
        return
    watched = {signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", signal.SIGTERM)}

    def watchdog() -> None:
        while True:
            data = os.read(r, 16)
            sigs = [s for s in data if s in watched]
            if not sigs:
                continue
            time.sleep(GRACE_S)
            if _leaving.is_set():  # the main thread prints the line and exits: give it a moment more
                time.sleep(2.0)
                _die(128 + sigs[0])
            for fn in list(_group_cleanups):
                try:
                    fn()
                except Exception:  # noqa: BLE001 - best effort on the way out
                    pass
            word = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}.get(sigs[0], "hang-up")
            try:
                os.write(2, f"edgecv: {word}\n".encode())
            except OSError:
                pass
            _die(128 + sigs[0])

    threading.Thread(target=watchdog, name="edgecv-signal-watchdog", daemon=True).start()
