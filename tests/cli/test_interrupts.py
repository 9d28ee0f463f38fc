"""Interruption: SIGKILL at random moments never leaves a partial artifact; Ctrl-C exits 130 in one line.

Covered writers: ``edgecv build`` (the .keras), ``edgecv quantize`` (the artifact and its sidecar JSON) and
``edgecv sweep`` (results.json, results.csv, report.html and the files of its points).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

BUILD = [sys.executable, "-m", "edgecv", "build", "mobilenet", "--alpha", "0.25", "--resolution", "96"]


def _final_files(out):
    return [p for p in out.iterdir() if not p.name.startswith(".")] if out.exists() else []


def _complete_keras(path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip() is None and "config.json" in z.namelist()
    except zipfile.BadZipFile:
        return False


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_old_or_new_complete_file(tmp_path):
    out = tmp_path / "out"
    t0 = time.monotonic()
    subprocess.run([*BUILD, "-o", str(out)], check=True, capture_output=True, timeout=600)
    duration = time.monotonic() - t0
    (final,) = _final_files(out)
    old = final.read_bytes()
    assert _complete_keras(final)
    rng = np.random.default_rng(7)
    # kill times spread over the whole run, denser near the end where the file is written
    times = sorted(rng.uniform(0.3, 1.0, size=2) * duration) + list(duration * np.linspace(0.85, 1.05, 4))
    for when in times:
        final.write_bytes(old)  # "the old file"
        proc = subprocess.Popen([*BUILD, "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(when)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        files = _final_files(out)
        assert [p.name for p in files] == [final.name]
        data = final.read_bytes()
        assert data == old or _complete_keras(final), f"partial file after kill at {when:.2f}s"
        for tmp in out.iterdir():  # leftovers are only hidden temporaries, never at the final path
            assert tmp == final or tmp.name.startswith("."), tmp


def test_ctrl_c_exits_130_with_one_line_and_no_partial_file(tmp_path):
    # Interrupt inside the TensorFlow import or the build (an idle machine builds this model in ~4 s); a run
    # that finished first is retried with a shorter delay, so the interrupt is always exercised.
    for delay_s in (1.5, 0.8, 0.4):
        out = tmp_path / f"out{delay_s}"
        # SIGINT as in a terminal: a runner that started pytest in the background (``cmd &``) leaves it ignored,
        # and Python keeps an ignored SIGINT ignored.
        proc = subprocess.Popen([*BUILD, "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        time.sleep(delay_s)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        if proc.returncode != 0:
            break
    assert proc.returncode == 130, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == ["edgecv: interrupted"], err
    assert _final_files(out) == []


# --- helpers for commands that start child processes -------------------------------------------------------

def _start(cmd: list[str]) -> subprocess.Popen:
    """Start ``cmd`` in its own process group, so a kill reaches its children (probe, verifier, workers) too."""
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # the run finished and its group is gone
        pass
    proc.wait(timeout=60)


def _kill_when(cmd: list[str], ready, delay_s: float, poll_s: float = 0.002) -> float:
    """Run ``cmd``, wait until ``ready()`` (or the run ends), sleep ``delay_s`` and SIGKILL its process group.

    Returns the seconds from start to the kill."""
    t0 = time.monotonic()
    proc = _start(cmd)
    while proc.poll() is None and not ready():
        time.sleep(poll_s)
    time.sleep(delay_s)
    when = time.monotonic() - t0
    _kill(proc)
    return when


def _new_temporary(folder: Path):
    """A ``ready`` test: a hidden file that was not in ``folder`` now (killed runs leave temporaries) appeared."""
    before = {p.name for p in folder.iterdir()}
    return lambda: any(p.name.startswith(".") and p.name not in before for p in folder.iterdir())


def _hidden_or(out: Path, allowed: set[str]) -> None:
    """Only the final files named in ``allowed``, hidden temporaries (``.name.*.part*``) and the hidden lock file
    of a killed writer (``.name.lock``: its lock ended with the process; the next writer removes the file) are in
    ``out``."""
    for p in out.iterdir():
        assert p.name in allowed or (p.name.startswith(".") and (".part" in p.name or p.name.endswith(".lock"))), p


# --- quantize: the artifact and its sidecar ----------------------------------------------------------------

QUANT_NEW = ["--precision", "int8", "--calib", "synthetic", "--samples", "4", "--verify-samples", "2"]
SIDECAR_KEYS = {"model", "source", "format", "precision", "path", "sidecar", "status", "file_bytes", "inputs",
                "outputs", "preprocessing", "calibration", "verification", "versions", "io"}


@pytest.fixture(scope="module")
def quantize_old(tmp_path_factory):
    """A built model and an "old" artifact with its sidecar: float32, where every new run writes int8, so old and
    new files are told apart by their content."""
    d = tmp_path_factory.mktemp("quantize")
    subprocess.run([*BUILD, "-o", str(d)], check=True, capture_output=True, timeout=600)
    (keras_file,) = d.glob("*.keras")
    final = d / "out" / "model.tflite"
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "edgecv", "quantize", str(keras_file), "--precision", "float32",
                    "--no-verify", "-q", "-o", str(final)], check=True, capture_output=True, timeout=600)
    duration = time.monotonic() - t0
    return keras_file, final, final.read_bytes(), Path(f"{final}.json").read_bytes(), duration


def _tflite_kind(data: bytes) -> str:
    """The input dtype of a complete .tflite (LiteRT verifies the flatbuffer), else AssertionError."""
    from ai_edge_litert.interpreter import Interpreter

    assert data[4:8] == b"TFL3", "not a TFLite flatbuffer"
    it = Interpreter(model_content=data)
    it.allocate_tensors()
    return it.get_input_details()[0]["dtype"].__name__


def _check_quantize_outputs(final: Path, old: bytes, old_side: bytes) -> tuple[str, str]:
    """Each file at its final path is the old one, a new complete one or (sidecar only) absent, and a sidecar
    always describes the artifact beside it. Returns the states, e.g. ("new", "absent")."""
    side = Path(f"{final}.json")
    _hidden_or(final.parent, {final.name, side.name})
    data = final.read_bytes()
    art = "old" if data == old else "new"
    kind = _tflite_kind(data)
    assert kind == ("float32" if art == "old" else "int8"), (art, kind)
    if not side.exists():
        return art, "absent"
    text = side.read_bytes()
    rec = json.loads(text)  # a partial sidecar does not parse
    assert SIDECAR_KEYS <= set(rec), sorted(SIDECAR_KEYS - set(rec))
    state = "old" if text == old_side else "new"
    assert rec["precision"] == ("float32" if state == "old" else "int8"), (state, rec["precision"])
    # the sidecar describes the file beside it, not the one it replaced
    assert (rec["precision"], rec["file_bytes"]) == (kind, len(data)), \
        f"{art} artifact ({kind}, {len(data)} bytes) beside a {state} sidecar ({rec['precision']}, " \
        f"{rec['file_bytes']} bytes)"
    return art, state


@pytest.mark.slow
def test_quantize_sigkill_leaves_old_or_new_complete_artifact_and_sidecar(quantize_old):
    """SIGKILL at random moments of ``edgecv quantize``: before the artifact is written, while its temporary is
    verified, and just after it replaced the old artifact (before the sidecar is written).

    quantize writes two files, the artifact then ``<artifact>.json``, each atomically; no rename makes the pair
    atomic. The promise checked here: each file is the old one or a new complete one, and a sidecar always
    describes the artifact beside it. A kill between the two renames may leave the new artifact with no sidecar
    (quantize removes the old sidecar just before the new artifact replaces the old one): an artifact without its
    sidecar says "not described", where an old sidecar would describe a different file (its precision, size and
    verification), which is not acceptable.
    """
    keras_file, final, old, old_side, duration = quantize_old
    cmd = [sys.executable, "-m", "edgecv", "quantize", str(keras_file), *QUANT_NEW, "-q", "-o", str(final)]
    side = Path(f"{final}.json")
    rng = np.random.default_rng(11)

    def replaced(ino: int):
        return lambda: final.stat().st_ino != ino

    seen = []
    for trigger in ("time", "temporary", "replaced"):
        final.write_bytes(old)  # "the old files"
        side.write_bytes(old_side)
        ready = {"time": lambda: True, "temporary": _new_temporary(final.parent),
                 "replaced": replaced(final.stat().st_ino)}
        # the sidecar follows the artifact within ~10 ms: poll fast and kill at once to land in between
        delay = {"time": rng.uniform(0.05, 0.6) * duration, "temporary": rng.uniform(0.0, 0.4),
                 "replaced": rng.uniform(0.0, 0.003)}
        when = _kill_when(cmd, ready[trigger], delay[trigger], poll_s=0.0005 if trigger == "replaced" else 0.002)
        try:
            seen.append((trigger, round(when, 2), *_check_quantize_outputs(final, old, old_side)))
        except AssertionError as exc:
            raise AssertionError(f"after a kill at {when:.2f}s ({trigger}): {exc}") from None
    print(seen)


KILL_AT_SIDECAR = r"""
import os, signal, sys
import edgecv.conversion.api as api
import edgecv.fileio as fileio

write = fileio.write_json_atomic

def die(path, *args, **kwargs):  # the process is killed at the moment the sidecar would be written
    if str(path) == sys.argv[2] + ".json":
        os.kill(os.getpid(), signal.SIGKILL)
    return write(path, *args, **kwargs)

fileio.write_json_atomic = die  # write_sidecar's writer
api.quantize(sys.argv[1], "int8", calib="synthetic", samples=4, verify_samples=2, output=sys.argv[2],
             isolate_load=False)
"""


@pytest.mark.slow
def test_quantize_killed_between_artifact_and_sidecar_leaves_no_stale_sidecar(quantize_old):
    """The one moment random kills rarely hit: the new artifact is in place, its sidecar not yet written. The old
    sidecar must not survive beside the new artifact (it would describe the old one)."""
    keras_file, final, old, old_side, _ = quantize_old
    final.write_bytes(old)
    Path(f"{final}.json").write_bytes(old_side)
    proc = subprocess.run([sys.executable, "-c", KILL_AT_SIDECAR, str(keras_file), str(final)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert _check_quantize_outputs(final, old, old_side) == ("new", "absent")


# --- sweep: results.json, results.csv, report.html and the points' files -------------------------------------

SWEEP = [sys.executable, "-m", "edgecv", "sweep", "--family", "mobilenet", "--alpha", "0.25", "--resolution", "96",
         "--precision", "float32", "--verify-samples", "2", "-q"]
RESULTS = ("results.json", "results.csv", "report.html")
_WRITTEN = re.compile(rb"written \d{4}-\d\d-\d\d \d\d:\d\d UTC")


def _results_complete(root: Path, name: str, data: bytes, rows: int) -> None:
    """A complete results file of ``rows`` rows (AssertionError otherwise)."""
    from edgecv.report.html import PLOT_IDS
    from edgecv.sweep.api import RESULTS_SCHEMA

    text = data.decode()
    if name == "results.json":
        rec = json.loads(text)
        assert rec["schema"] == RESULTS_SCHEMA and len(rec["rows"]) == rows, name
    elif name == "results.csv":
        table = [ln.split(",") for ln in text.splitlines()]
        assert text.endswith("\n") and len(table) == rows + 1, name
        assert all(len(r) == len(table[0]) for r in table), name  # no quoted commas in these rows
    else:
        assert text.endswith("</body></html>\n") and all(f'id="{i}' in text for i in PLOT_IDS), name


def _check_sweep_files(root: Path, old: dict[str, bytes], new: dict[str, bytes] | None, rows: int) -> list[str]:
    """Each results file is the old one or a new complete one (byte-equal to ``new`` when given, the report's
    "written" minute aside); every final file of the points parses. Returns each results file's state."""
    _hidden_or(root, {*RESULTS, "points", "work", "artifacts"})
    states = []
    for name in RESULTS:
        data = (root / name).read_bytes()
        if data == old[name]:
            states.append("old")
            continue
        _results_complete(root, name, data, rows)
        if new is not None:
            assert _WRITTEN.sub(b"", data) == _WRITTEN.sub(b"", new[name]), f"{name} differs from a complete run"
        states.append("new")
    for folder in (root / "points", root / "work" / "stages", root / "work" / "models", root / "artifacts"):
        for p in folder.iterdir():
            if p.name.startswith("."):
                assert ".part" in p.name or p.name.endswith(".lock"), p
            elif p.suffix == ".json":
                json.loads(p.read_text())
            elif p.suffix == ".keras":
                assert _complete_keras(p), p
            else:
                assert _tflite_kind(p.read_bytes()) == "float32", p
                assert json.loads(Path(f"{p}.json").read_text())["file_bytes"] == p.stat().st_size, p
    return states


@pytest.mark.slow
def test_sweep_sigkill_leaves_old_or_new_complete_results_and_report(tmp_path):
    """SIGKILL at random moments of ``edgecv sweep``: a cached re-run (which rewrites only results.json,
    results.csv and report.html) and a --force re-run (which rebuilds, converts and profiles the point too).

    The old results are those of the same sweep predicted on rpi4 only (1 row); the new runs add pixel4 (2 rows).
    The three files are independent (each written atomically; results.json is the record, the CSV and the
    report are views of it), so any mix of old and new files is a consistent state: a re-run rewrites all three.
    """
    root = tmp_path / "sweep"
    t0 = time.monotonic()
    subprocess.run([*SWEEP, "--device", "rpi4", "-o", str(root)], check=True, capture_output=True, timeout=600)
    full = time.monotonic() - t0
    old = {name: (root / name).read_bytes() for name in RESULTS}
    cmd = [*SWEEP, "--device", "rpi4,pixel4", "-o", str(root)]
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    cached = time.monotonic() - t0
    new = {name: (root / name).read_bytes() for name in RESULTS}

    rng = np.random.default_rng(5)
    # cached re-runs: 4 kills anywhere in the run, 6 once the first results file is being written
    runs = [(cmd, False, rng.uniform(0.0, 1.1) * cached, new) for _ in range(4)]
    runs += [(cmd, True, rng.uniform(0.0, 0.05), new) for _ in range(6)]
    # --force re-runs: the point's .keras, artifact, sidecar and stage/point records are rewritten too
    runs += [([*cmd, "--force"], False, rng.uniform(0.1, 1.0) * full, None) for _ in range(3)]
    seen = []
    for run, on_write, delay, want in runs:
        for name in RESULTS:
            (root / name).write_bytes(old[name])  # "the old files"
        ready = _new_temporary(root) if on_write else (lambda: True)
        when = _kill_when(run, ready, delay, poll_s=0.0005)
        try:
            seen.append((round(when, 2), *_check_sweep_files(root, old, want, rows=2)))
        except (AssertionError, ValueError) as exc:
            raise AssertionError(f"after a kill at {when:.2f}s of {' '.join(run[3:])}: {exc!r}") from None
    print(seen)
    # a re-run finishes the sweep and removes the temporaries of the killed writers
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    assert _check_sweep_files(root, old, None, rows=2) == ["new"] * 3
    assert not [p for p in root.rglob(".*") if ".part" in p.name]
