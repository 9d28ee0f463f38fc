"""Child processes: never import from the working folder, end when edgecv ends; signals; full disks; one writer
of an output at a time.

Processes are found by an environment variable the test gives edgecv (every descendant inherits it, also after
it is re-parented to init), so "every process edgecv started has ended" is checked without psutil.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
import zipfile
from pathlib import Path

import pytest

# The console script's way of starting: the working folder is not on sys.path of edgecv itself.
EDGECV = [sys.executable, "-c", "import sys; del sys.path[0]; from edgecv.cli import main; main()"]
SWEEP = ["sweep", "--family", "mobilenet", "--alpha", "0.25", "--resolution", "32,64", "--precision", "float32",
         "--samples", "4", "--verify-samples", "2", "--no-report"]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and POSIX signals")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """tiny.keras / tiny.tflite (a 16x16 conv net), big.keras (more weights), hub.keras (its Dense layer names
    the module ``keras_hub.layers``, which Keras imports when it loads the file)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    d = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    m = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x), name="tiny")
    m.save(d / "tiny.keras")
    (d / "tiny.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(m).convert())
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(512, activation="relu")(x)
    big = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(keras.layers.Dense(256)(x)), name="big")
    big.save(d / "big.keras")
    with zipfile.ZipFile(d / "tiny.keras") as src, zipfile.ZipFile(d / "hub.keras", "w") as dst:
        cfg = json.loads(src.read("config.json"))
        dense = next(layer for layer in cfg["config"]["layers"] if layer["class_name"] == "Dense")
        dense["module"] = "keras_hub.layers"
        for name in src.namelist():
            dst.writestr(name, json.dumps(cfg) if name == "config.json" else src.read(name))
    return d


@pytest.fixture
def hostile(tmp_path):
    """A working folder whose modules shadow the standard library, numpy and keras_hub: each records its import
    in MARKERS."""
    d = tmp_path / "cwd"
    d.mkdir()
    code = "open({!r}, 'a').write(__name__ + '\\n')\n".format(str(d / "MARKERS"))
    for name in ("json", "numpy", "socket", "selectors", "pickle"):
        (d / f"{name}.py").write_text(code)
    (d / "keras_hub").mkdir()
    (d / "keras_hub" / "__init__.py").write_text(code)
    (d / "keras_hub" / "layers.py").write_text(code)
    return d


def _markers(d: Path) -> list[str]:
    f = d / "MARKERS"
    return f.read_text().split() if f.exists() else []


def _cli(args, cwd, env=None, timeout=600):
    return subprocess.run([*EDGECV, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def _err_lines(stderr: str) -> list[str]:
    """stderr's lines, without edgecv's warnings (e.g. about the preprocessing of a model it does not know)."""
    return [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("warning:")]


# --- no code from the working folder ---------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["static", "measure", "keras", "quantize"])
def test_children_never_import_from_the_working_folder(models, hostile, kind):
    args = {
        "static": ["profile", models / "tiny.tflite", "--static", "--json"],  # static-analysis child
        "measure": ["profile", models / "tiny.tflite", "--runs", "2", "--warmup-runs", "0",  # runner child
                    "--min-time-s", "0", "--json"],
        "keras": ["profile", models / "tiny.keras", "--static", "--json"],  # .keras -> .tflite child
        "quantize": ["quantize", models / "tiny.keras", "--precision", "float32", "-o", hostile / "out",  # probe,
                     "--json"],  # verification child
    }[kind]
    r = _cli(args, hostile)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)
    assert _markers(hostile) == []


def test_keras_hub_module_of_a_keras_file_is_not_imported_from_the_working_folder(models, hostile):
    r = _cli(["quantize", models / "hub.keras", "--precision", "float32", "-o", hostile / "out"], hostile)
    assert r.returncode == 2, r.stderr
    assert "keras_hub" in r.stderr and len(_err_lines(r.stderr)) == 1, r.stderr
    assert _markers(hostile) == []


@pytest.mark.slow
def test_sweep_workers_never_import_from_the_working_folder(hostile):
    r = _cli([*SWEEP, "-j", "2", "-o", hostile / "out", "--json"], hostile)
    assert r.returncode == 0, r.stderr
    assert _markers(hostile) == []


def test_isolated_child_sees_no_working_folder_and_a_timeout_kills_its_group(tmp_path, monkeypatch):
    from edgecv.isolation import python_argv, run

    (tmp_path / "json.py").write_text("raise SystemExit('hostile json imported')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep)  # an empty entry means the working folder
    r = run(python_argv(code="import json, sys; print(json.__file__); print(sys.path)"), 60)
    assert r.returncode == 0, r.stderr
    first, path = r.stdout.splitlines()[:2]
    assert not first.startswith(str(tmp_path)) and str(tmp_path) not in path and "''" not in path
    # a child and its grandchild are both killed on timeout
    pidfile = tmp_path / "grandchild"
    code = textwrap.dedent(f"""
        import subprocess, sys, time
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(pidfile)!r}, "w").write(str(p.pid))
        time.sleep(60)
    """)
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run(python_argv(code=code), 3)
    assert time.monotonic() - t0 < 10
    gpid = int(pidfile.read_text())
    assert _gone([gpid], 5), "grandchild outlived the timeout"


# --- every process ends with edgecv --------------------------------------------------------------------------

def _tagged(tag: str) -> list[int]:
    want = f"EDGECV_TEST_TAG={tag}".encode()
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                env = Path(f"/proc/{d}/environ").read_bytes()
            except OSError:
                continue
            if want in env.split(b"\0"):
                pids.append(int(d))
    return pids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _gone(pids, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


def _default_signals():
    # a runner that started pytest in the background (``cmd &``, nohup) leaves SIGINT/SIGHUP ignored
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def _signal_run(args, sig, cwd: Path, n_procs: int = 2, delay_s: float = 0.3, limit_s: float = 600):
    """Start edgecv, wait until it runs ``n_procs`` processes (itself and children), sleep ``delay_s``, send
    ``sig`` to the main process only. Returns (exit code, stderr, the pids seen, whether they all ended
    within 5 s of the main process)."""
    tag = uuid.uuid4().hex
    env = {**os.environ, "EDGECV_TEST_TAG": tag, "PYTHONUNBUFFERED": "1"}
    err = cwd / f"stderr-{tag}"
    with open(err, "w") as fh:  # a file, not a pipe: an orphan holding the pipe would hang the test
        proc = subprocess.Popen([*EDGECV, *map(str, args)], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=fh, preexec_fn=_default_signals,
                                start_new_session=True)
    seen: set[int] = set()
    t0 = time.monotonic()
    try:
        while proc.poll() is None and time.monotonic() - t0 < limit_s:
            now = _tagged(tag)
            seen.update(now)
            if len([p for p in now if _alive(p)]) >= n_procs:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"edgecv ended before it started {n_procs} processes: {err.read_text()}"
        time.sleep(delay_s)
        seen.update(_tagged(tag))
        proc.send_signal(sig)
        rc = proc.wait(timeout=60)
        ended = _gone(seen | set(_tagged(tag)), 5.0)
    finally:
        for p in _tagged(tag):
            os.kill(p, signal.SIGKILL)
        proc.wait(timeout=30)
    return rc, err.read_text(), seen, ended


EXPECTED = {signal.SIGINT: (130, "edgecv: interrupted"), signal.SIGTERM: (143, "edgecv: terminated"),
            signal.SIGHUP: (129, "edgecv: hang-up"), signal.SIGKILL: (-9, None)}


def _check_signal_outcome(sig, rc, err, seen, ended, out: Path | None):
    code, line = EXPECTED[sig]
    assert rc == code, err
    if line is not None:
        assert _err_lines(err)[-1:] == [line] and "Traceback" not in err, err
    assert len(seen) >= 2, seen
    assert ended, f"processes still running after the main one ended: {[p for p in seen if _alive(p)]}"
    if out is not None and sig != signal.SIGKILL:
        assert not [p for p in out.rglob("*") if ".part" in p.name], sorted(out.rglob("*"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGKILL])
def test_quantize_signal_ends_every_child_and_leaves_no_partial_file(models, tmp_path, sig):
    out = tmp_path / "out"
    rc, err, seen, ended = _signal_run(["quantize", models / "tiny.keras", "--precision", "float32", "-o", out],
                                       sig, tmp_path)
    _check_signal_outcome(sig, rc, err, seen, ended, out)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_profile_keras_signal_ends_the_conversion_child(models, tmp_path, sig):
    rc, err, seen, ended = _signal_run(["profile", models / "tiny.keras", "--static"], sig, tmp_path, delay_s=1.0)
    _check_signal_outcome(sig, rc, err, seen, ended, None)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL])
def test_sweep_jobs_signal_ends_workers_and_resource_tracker(tmp_path, sig):
    out = tmp_path / "out"
    # main + 2 workers (+ the resource tracker); the signal comes while the workers build and convert
    rc, err, seen, ended = _signal_run([*SWEEP, "-j", "2", "-o", out], sig, tmp_path, n_procs=3, delay_s=4.0)
    _check_signal_outcome(sig, rc, err, seen, ended, out)


@pytest.mark.slow
def test_demo_sigterm_ends_every_worker(tmp_path):
    out = tmp_path / "demo"
    rc, err, seen, ended = _signal_run(["demo", "-o", out], signal.SIGTERM, tmp_path, n_procs=3, delay_s=4.0)
    _check_signal_outcome(signal.SIGTERM, rc, err, seen, ended, out)


def test_pool_worker_ends_when_its_parent_is_killed(tmp_path):
    """A worker started by LocalExecutor watches its parent: SIGKILL of the parent ends a busy worker."""
    code = textwrap.dedent("""
        import sys, time
        from edgecv.sweep.executors import LocalExecutor
        ex = LocalExecutor(1)
        h = ex.submit(time.sleep, 120)
        pids = list(ex._pool._processes)
        print(pids[0], flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    worker = int(proc.stdout.readline())
    assert _alive(worker)
    proc.kill()
    proc.wait(timeout=30)
    assert _gone([worker], 5.0), "the worker outlived its parent"


RAY_DRIVER = textwrap.dedent("""
    import sys, time
    from edgecv.sweep.executors import RayExecutor

    def task(path):
        import os, time
        open(path, "w").write(str(os.getpid()))
        time.sleep(300)

    ex = RayExecutor(None, 1)  # a local Ray instance, started by this driver
    h = ex.submit(task, sys.argv[1])
    if sys.argv[2] == "cancel":
        while not __import__("os").path.exists(sys.argv[1]):
            time.sleep(0.2)
        ex.shutdown(cancel=True)  # what an error or a signal in the sweep does
        print("shut down", flush=True)
    time.sleep(300)
""")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["cancel", "sigkill"])
def test_ray_tasks_and_local_cluster_end_with_the_driver(tmp_path, how):
    pytest.importorskip("ray")
    tag = uuid.uuid4().hex
    pidfile = tmp_path / "task.pid"
    proc = subprocess.Popen([sys.executable, "-c", RAY_DRIVER, str(pidfile), how], cwd=tmp_path,
                            env={**os.environ, "EDGECV_TEST_TAG": tag}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        t0 = time.monotonic()
        while not pidfile.exists() and proc.poll() is None and time.monotonic() - t0 < 300:
            time.sleep(0.2)
        if not pidfile.exists():
            pytest.skip("a local Ray instance did not start here")
        worker = int(pidfile.read_text())
        seen = set(_tagged(tag))
        if how == "sigkill":
            proc.kill()
            proc.wait(timeout=30)
            # Ray ties its processes to the driver (fate sharing): about 2-5 s on an idle machine. Ray's own
            # node agents (DashboardAgent, RuntimeEnvAgent) sometimes outlive it; the task's worker, the raylet
            # and the GCS end.
            _gone(seen | set(_tagged(tag)), 30.0)
            left = [_cmdline(p) for p in seen | set(_tagged(tag)) if _alive(p)]
            assert not _alive(worker)
            assert not [c for c in left if not c.startswith(("ray::DashboardAgent", "ray::RuntimeEnvAgent"))], left
        else:  # the task's worker process is killed; Ray's own processes end with ray.shutdown()
            assert _gone([worker], 15.0)
            assert _gone([p for p in seen if p != proc.pid], 15.0), [p for p in seen if _alive(p)]
    finally:
        for p in _tagged(tag):
            os.kill(p, signal.SIGKILL)
        proc.wait(timeout=30)


# --- partial files -------------------------------------------------------------------------------------------

def test_stale_part_files_of_edgecv_naming_are_removed_by_a_later_run(models, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".tiny_float32.k3j_9x2a.part.tflite"  # what a writer killed before its rename leaves
    stale.write_bytes(b"x" * 1000)
    keep = [out / ".tiny_float32.tflite.part", out / ".other.k3j_9x2a.part.tflite", out / "notes.part.tflite"]
    for k in keep:
        k.write_bytes(b"mine")
    r = _cli(["quantize", models / "tiny.keras", "--precision", "float32", "--no-verify", "-o", out], tmp_path)
    assert r.returncode == 0, r.stderr
    assert not stale.exists()
    assert all(k.exists() for k in keep)
    assert (out / "tiny_float32.tflite").is_file()


def test_part_file_of_a_live_writer_is_not_removed(tmp_path):
    from edgecv.fileio import atomic_path, remove_stale_parts

    final = tmp_path / "m.tflite"
    with atomic_path(final) as tmp:
        tmp.write_bytes(b"partial")
        remove_stale_parts(final)  # as a second writer would, if it ran without the lock
        assert tmp.exists()
    assert final.read_bytes() == b"partial"


def test_folder_cleanup_leaves_another_process_live_writer_alone_and_removes_stale_parts(tmp_path):
    """A sweep starting on a folder another sweep is writing to: the other's temporary file survives (the clean-up
    waits for that output's lock), a killed writer's is removed, and files of other naming stay."""
    import threading

    from edgecv.fileio import remove_stale_parts_in

    writer = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom edgecv.fileio import atomic_path\n"
         "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_text('{}')\n    print(tmp, flush=True)\n"
         "    sys.stdin.readline()\n", str(tmp_path / "a.json")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        live = Path(writer.stdout.readline().strip())
        stale = tmp_path / ".b.k3j_9x2a.part.json"
        stale.write_text("{")
        mine = tmp_path / ".notes.part"
        mine.write_text("user file")
        cleaner = threading.Thread(target=remove_stale_parts_in, args=(tmp_path,))
        cleaner.start()
        time.sleep(1.0)
        assert live.exists()
        writer.stdin.write("\n")
        writer.stdin.flush()
        assert writer.wait(timeout=60) == 0
        cleaner.join(timeout=60)
        assert not cleaner.is_alive()
    finally:
        writer.kill()
    assert (tmp_path / "a.json").read_text() == "{}" and not live.exists()
    assert not stale.exists() and mine.exists()


# --- concurrent writers of one output ----------------------------------------------------------------------

RACER = textwrap.dedent(r"""
    import json, os, random, sys, time
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import edgecv.fileio as fio
    import edgecv.conversion.api as api

    orig = fio.write_json_atomic
    def slow(*a, **k):  # widen the gap between the artifact's rename and the sidecar's
        time.sleep(random.uniform(0.0, 0.6))
        return orig(*a, **k)
    fio.write_json_atomic = slow  # write_sidecar's writer

    import keras
    src, out, precision, n, seed = sys.argv[1:6]
    random.seed(int(seed))
    model = keras.saving.load_model(src, compile=False)
    checked = bad = 0
    for _ in range(int(n)):
        api.quantize(model, precision, output=out, verify=False)
        with fio.output_lock(out):  # a reader that takes the writers' lock sees a consistent pair
            if os.path.exists(out + ".json"):
                side = json.load(open(out + ".json"))
                checked += 1
                bad += side["file_bytes"] != os.path.getsize(out)
    print(json.dumps({"checked": checked, "bad": bad}))
""")


def test_concurrent_writers_of_one_output_leave_a_sidecar_that_describes_the_artifact(models, tmp_path):
    out = str(tmp_path / "same.tflite")
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(models / "big.keras"), out, prec, "6", str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
             for i, prec in enumerate(("float32", "dynamic"))]
    results = []
    for p in procs:
        o, e = p.communicate(timeout=900)
        assert p.returncode == 0, e[-2000:]
        results.append(json.loads(o.strip().splitlines()[-1]))
    side = json.loads(Path(out + ".json").read_text())
    assert side["file_bytes"] == os.path.getsize(out), (side["precision"], side["file_bytes"], os.path.getsize(out))
    assert sum(r["checked"] for r in results) >= 6, results
    assert [r["bad"] for r in results] == [0, 0], results
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name or p.name.endswith(".lock")]


def test_artifact_and_sidecar_have_the_modes_a_plain_open_gives_under_the_umask(models, tmp_path):
    """Temporary files are made 0600 (mkstemp); what is renamed into place follows the user's umask (027 here:
    neither 0600 nor the usual 0644)."""
    from edgecv.conversion import quantize

    out, probe = tmp_path / "out", tmp_path / "probe"
    old = os.umask(0o027)
    try:
        probe.write_bytes(b"")  # the reference: a plain open() under the same umask
        quantize(str(models / "tiny.keras"), "float32", verify=False, output=str(out), isolate_load=False)
    finally:
        os.umask(old)
    want = probe.stat().st_mode & 0o777
    got = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert want == 0o640 and got == {"tiny_float32.tflite": want, "tiny_float32.tflite.json": want}, got


# --- full disks, a directory in the way ------------------------------------------------------------------

@pytest.fixture
def small_fs(tmp_path):
    """A 1 MiB tmpfs (root and mount permission needed; else the test is skipped)."""
    d = tmp_path / "fs"
    d.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def _fill(d: Path, leave: int) -> None:
    st = os.statvfs(d)
    free = st.f_bavail * st.f_frsize
    with open(d / "filler", "wb") as fh:
        fh.write(b"\0" * max(0, free - leave))


def test_build_on_a_full_disk_is_one_line_naming_the_file_and_leaves_no_folder(small_fs, tmp_path):
    _fill(small_fs, 16 << 10)
    out = small_fs / "new" / "models"
    r = _cli(["build", "mobilenet", "--alpha", "0.25", "--resolution", "32", "-o", out], tmp_path)
    assert r.returncode == 2, r.stderr
    (line,) = _err_lines(r.stderr)
    assert str(out) in line and "No space left on device" in line, line
    assert not (small_fs / "new").exists()


def test_onnx_quantize_on_a_full_disk_is_one_line_naming_the_file(models, small_fs, tmp_path):
    _fill(small_fs, 8 << 10)
    out = small_fs / "q"
    r = _cli(["quantize", models / "big.keras", "--format", "onnx", "--precision", "float32", "--no-verify",
              "-o", out], tmp_path)
    assert r.returncode == 2, r.stderr
    (line,) = _err_lines(r.stderr)
    assert str(out / "big_float32.onnx") in line and "No space left on device" in line, line
    assert not out.exists() or not [p for p in out.iterdir()]


def test_sweep_report_on_a_full_disk_names_the_file(small_fs):
    from edgecv.errors import EdgecvError
    from edgecv.report.html import write_report

    _fill(small_fs, 0)
    with pytest.raises(EdgecvError, match=r"report\.html.*No space left on device"):
        write_report([], small_fs / "report.html")
    assert [p.name for p in small_fs.iterdir()] == ["filler"]


def test_directory_at_the_sidecar_path_is_one_line(models, tmp_path):
    out = tmp_path / "out"
    (out / "tiny_float32.tflite.json").mkdir(parents=True)
    r = _cli(["quantize", models / "tiny.keras", "--precision", "float32", "--no-verify", "-o", out], tmp_path)
    assert r.returncode == 2, r.stderr
    (line,) = _err_lines(r.stderr)
    assert "tiny_float32.tflite.json" in line and "directory" in line, line


def test_full_tmpdir_when_profiling_a_keras_file_is_one_line(models, small_fs, tmp_path):
    _fill(small_fs, 16 << 10)
    r = _cli(["profile", models / "big.keras", "--static"], tmp_path, env={"TMPDIR": str(small_fs)})
    assert r.returncode == 2, r.stderr
    (line,) = _err_lines(r.stderr)
    assert "TMPDIR" in line and str(small_fs) in line and "NoneType" not in line, line
