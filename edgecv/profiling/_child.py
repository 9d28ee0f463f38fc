"""Run model parsing and measurement in a child process: a crash or hang of a runtime on an untrusted file
becomes a one-line ``EdgecvError`` (exit code 2), never a traceback or a dead edgecv.

Children are started by :mod:`edgecv.isolation` (isolated from the working folder, ended with edgecv)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from edgecv.errors import EdgecvError, last_line

SUFFIXES = (".tflite", ".onnx", ".keras")


def check_model_path(path, suffixes=SUFFIXES) -> str:
    """The path as a string if it names a non-empty regular file with a known suffix, else EdgecvError."""
    p = Path(path)
    if not p.exists():
        raise EdgecvError(f"model file not found: {str(p)!r}")
    if p.is_dir():
        raise EdgecvError(f"model path is a directory, expected a file: {str(p)!r}")
    if not p.is_file():
        raise EdgecvError(f"model path is not a regular file: {str(p)!r}")
    if p.suffix.lower() not in suffixes:
        raise EdgecvError(f"unsupported model file suffix {p.suffix or '(none)'!r} in {str(p)!r}; "
                          f"expected one of {', '.join(suffixes)}")
    if p.stat().st_size == 0:
        raise EdgecvError(f"model file is empty: {str(p)!r}")
    if not os.access(p, os.R_OK):
        raise EdgecvError(f"model file is not readable: {str(p)!r}")
    return str(p)


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _isolated(cmd: list[str]) -> list[str]:
    """``[sys.executable, "-m", module | "-c", code | script, *args]`` -> the isolated form."""
    from edgecv.isolation import program_argv, python_argv

    if cmd and cmd[0] == sys.executable:
        if len(cmd) >= 3 and cmd[1] == "-m":
            return python_argv(module=cmd[2], args=cmd[3:])
        if len(cmd) >= 3 and cmd[1] == "-c":
            return python_argv(code=cmd[2], args=cmd[3:])
        if len(cmd) >= 2 and not cmd[1].startswith("-"):
            return python_argv(script=cmd[1], args=cmd[2:])
        raise ValueError(f"run_child: unsupported Python command line {cmd[:3]!r}")
    return program_argv(cmd)


def run_child(cmd: list[str], timeout_s: float, what: str) -> str:
    """Run ``cmd`` (``[sys.executable, "-m", module | "-c", code | script, ...]``) isolated from
    the working folder, return its stdout; on timeout, death by a signal or a non-zero exit raise a one-line
    EdgecvError that says which (with the child's last stderr line)."""
    from edgecv.isolation import run

    try:
        res = run(_isolated(cmd), timeout_s)
    except OSError as exc:  # cannot start a process at all (no memory, no pids)
        raise EdgecvError(f"{what}: cannot start a child process: {exc.strerror or exc}") from None
    except subprocess.TimeoutExpired:
        raise EdgecvError(f"{what}: the runtime did not finish within {timeout_s:g} s (killed)") from None
    if res.returncode < 0:
        raise EdgecvError(f"{what}: the runtime crashed ({_signal_name(res.returncode)})")
    if res.returncode != 0:
        msg = last_line(res.stderr, f"exit code {res.returncode}")
        if msg.startswith("runner: error: "):
            msg = msg[len("runner: error: "):]
        raise EdgecvError(f"{what}: {msg}")
    return res.stdout
