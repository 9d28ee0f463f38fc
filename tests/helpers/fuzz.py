"""A small seeded fuzzer for edgecv's readers of untrusted files, shared by ``tests/core/test_fuzz.py`` (a short run
with a time budget) and ``tools/fuzz.py`` (a long run whose result goes to ``tools/results``).

Each *kind* has a valid seed file and a reader. A case is the seed mutated (bit flips, random bytes,
truncation, splices, zeroed or duplicated runs, extreme int32 fields; for zip archives also their central
directory's sizes and names) and read by edgecv. An outcome is ``ok`` (read), ``refused`` (one-line
``EdgecvError``), ``contained`` (the HDF5 library hung or crashed in the reader's child process: edgecv reads
weights in such a child with a time limit first, so the user sees one line) or a *finding*: any other exception, a message of more than one line, a crash of the process
or a case that exceeds the time limit.

Readers:
- ``keras``: ``check_keras_file`` (the archive checks edgecv runs before Keras opens a file), in this process.
- ``h5``: the ``--weights`` reader (``edgecv.builders.h5_weights``: link and storage checks, legacy layout),
  in a child process that reads a batch of files: the HDF5 library is C and a crash must be seen, not suffered.
- ``npy``, ``npz``: ``load_calibration`` of a preprocessed array; ``npz_labelled``: ``evaluate --data FILE.npz``
  (x and y), in this process.
- ``tflite``, ``onnx``: ``static_profile`` (edgecv parses them in its own child process with a time limit).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ARRAY_SHAPE = (8, 8, 3)
CASE_LIMIT_S = 20.0
STARTUP_S = 180.0


# --- mutations -------------------------------------------------------------------------------------------

def mutate(data: bytes, other: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    buf = bytearray(data)
    kind = ["bitflip", "bytes", "truncate", "splice", "header", "zero", "duplicate", "int_fields"][
        int(rng.integers(8))]
    n = len(buf)
    if kind == "bitflip":
        for pos in rng.integers(0, n, size=int(rng.integers(1, 16))):
            buf[pos] ^= 1 << int(rng.integers(8))
    elif kind == "bytes":
        for pos in rng.integers(0, n, size=int(rng.integers(1, 64))):
            buf[pos] = int(rng.integers(256))
    elif kind == "truncate":
        buf = buf[: int(rng.integers(1, n))]
    elif kind == "splice":
        cut, cut2 = int(rng.integers(1, n)), int(rng.integers(0, len(other)))
        buf = buf[:cut] + bytearray(other[cut2:])
    elif kind == "header":  # the first 64 bytes hold offsets and identifiers in most formats
        for pos in rng.integers(0, min(64, n), size=int(rng.integers(1, 8))):
            buf[pos] = int(rng.integers(256))
    elif kind == "zero":
        a = int(rng.integers(0, n))
        b = min(n, a + int(rng.integers(1, 4096)))
        buf[a:b] = bytes(b - a)
    elif kind == "duplicate":
        a = int(rng.integers(0, n))
        b = min(n, a + int(rng.integers(1, 2048)))
        buf = buf[:b] + buf[a:b] + buf[b:]
    else:  # overwrite aligned little-endian int32 fields with extreme values (sizes, offsets, indices)
        for pos in rng.integers(0, max(1, n // 4), size=int(rng.integers(1, 8))) * 4:
            v = int(rng.choice([0, 1, -1, 2**31 - 1, -(2**31), 2**16, 7]))
            buf[pos:pos + 4] = v.to_bytes(4, "little", signed=True)
    return kind, bytes(buf)


def mutate_zip(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """Structural damage to a zip's central directory: declared sizes, name lengths, member names."""
    buf = bytearray(data)
    heads = [i for i in range(len(buf) - 4) if buf[i:i + 4] == b"PK\x01\x02"]
    if not heads:
        return mutate(data, data, rng)
    at = heads[int(rng.integers(len(heads)))]
    kind = ["zip_sizes", "zip_name_length", "zip_name"][int(rng.integers(3))]
    if kind == "zip_sizes":  # compressed (20) / uncompressed (24) size
        off = at + (20 if rng.integers(2) else 24)
        buf[off:off + 4] = int(rng.choice([0, 1, 2**31, 2**32 - 1, 12345678])).to_bytes(4, "little")
    elif kind == "zip_name_length":
        buf[at + 28:at + 30] = int(rng.choice([0, 1, 255, 65535])).to_bytes(2, "little")
    else:
        n = int.from_bytes(buf[at + 28:at + 30], "little")
        name = rng.choice([b"../", b"/", b"..", b"\\", b"\xff\xfe"])
        buf[at + 46:at + 46 + min(n, len(name))] = name[:n]
    return kind, bytes(buf)


# --- seeds -----------------------------------------------------------------------------------------------

def seed_h5(path: Path) -> None:
    """A legacy Keras weights file (layer_names / weight_names), like keras.applications' ImageNet files."""
    import h5py

    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"conv1", b"fc"]
        for layer, shapes in (("conv1", [(3, 3, 3, 4), (4,)]), ("fc", [(4, 2), (2,)])):
            g = f.create_group(layer)
            names = [f"{layer}/kernel:0", f"{layer}/bias:0"]
            g.attrs["weight_names"] = [n.encode() for n in names]
            for n, s in zip(names, shapes):
                g.create_dataset(n, data=rng.normal(size=s).astype("float32"))


def seed_arrays(folder: Path) -> dict[str, bytes]:
    x = np.random.default_rng(0).normal(size=(6, *ARRAY_SHAPE)).astype(np.float32)
    np.save(folder / "seed.npy", x)
    np.savez_compressed(folder / "seed.npz", x=x)
    np.savez_compressed(folder / "labelled.npz", x=x, y=np.arange(len(x)) % 2)  # evaluate --data FILE.npz
    return {"npy": (folder / "seed.npy").read_bytes(), "npz": (folder / "seed.npz").read_bytes(),
            "npz_labelled": (folder / "labelled.npz").read_bytes()}


# --- readers ---------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    kind: str
    case: int
    mutation: str
    outcome: str  # ok | refused | finding
    seconds: float
    detail: str = ""


def _judge(exc: BaseException | None) -> tuple[str, str]:
    from edgecv.errors import EdgecvError

    if exc is None:
        return "ok", ""
    if type(exc) is EdgecvError:
        msg = str(exc)
        if "\n" in msg.strip() or "Traceback" in msg:
            return "finding", f"multi-line error: {msg[:300]!r}"
        return "refused", msg[:200]
    return "finding", f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def _read_keras(path: Path) -> None:
    from edgecv.conversion.loading import check_keras_file

    check_keras_file(path)


def _read_array(path: Path) -> None:
    from edgecv.builders.arch import Preprocessing
    from edgecv.conversion.calibration import load_calibration

    pre = Preprocessing(range=(-1.0, 1.0), mean=(127.5,) * 3, std=(127.5,) * 3, in_model=False)
    load_calibration(str(path), input_shape=ARRAY_SHAPE, preprocessing=pre, samples=4, holdout=1)


def _read_labelled(path: Path) -> None:
    from edgecv.evaluation.data import load, open_source

    load(open_source(path), ARRAY_SHAPE)


def _read_model(path: Path) -> None:
    from edgecv.profiling.api import static_profile

    static_profile(path, timeout_s=CASE_LIMIT_S)


IN_PROCESS: dict[str, Callable[[Path], None]] = {"keras": _read_keras, "npy": _read_array, "npz": _read_array,
                                                 "npz_labelled": _read_labelled, "tflite": _read_model,
                                                 "onnx": _read_model}

_H5_CHILD = r"""
import json, sys, time
from pathlib import Path
from edgecv.builders.h5_weights import load_legacy_or_none
from edgecv.errors import EdgecvError
for line in sys.stdin:
    path = line.strip()
    t0 = time.monotonic()
    print(json.dumps({"start": path}), flush=True)
    try:
        load_legacy_or_none(Path(path), isolate=False)  # this process is the isolation
        rep = {"outcome": "ok"}
    except EdgecvError as exc:
        rep = {"outcome": "error", "type": type(exc).__name__, "msg": str(exc)}
    except BaseException as exc:
        rep = {"outcome": "exception", "type": type(exc).__name__, "msg": " ".join(str(exc).split())[:300]}
    rep.update(path=path, seconds=time.monotonic() - t0)
    print(json.dumps(rep), flush=True)
"""


def _read_h5_batch(paths: list[Path], limit_s: float) -> dict[Path, tuple[str, str, float]]:
    """Read ``paths`` in child processes (restarted after a crash or a case that exceeds ``limit_s``):
    path -> (outcome, detail, seconds)."""
    import select

    out: dict[Path, tuple[str, str, float]] = {}
    todo = list(paths)
    while todo:
        env = {**os.environ, "PYTHONSAFEPATH": "1"}
        proc = subprocess.Popen([sys.executable, "-P", "-c", _H5_CHILD], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                                cwd=str(paths[0].parent))
        proc.stdin.write("\n".join(str(p) for p in todo) + "\n")
        proc.stdin.close()
        started, last, t_case, why = None, None, time.monotonic(), None
        while True:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if not ready:
                # a case gets limit_s; starting the reader (Python, numpy, h5py) gets STARTUP_S on a busy machine
                if time.monotonic() - t_case > (limit_s if started is not None else STARTUP_S):
                    why = f"hang (killed after {limit_s:.0f} s)" if started is not None else "reader did not start"
                    break
                continue
            line = proc.stdout.readline()
            if not line:
                break  # the child ended: done, or died on `started`
            rep = json.loads(line)
            if "start" in rep:
                started, t_case = Path(rep["start"]), time.monotonic()
                continue
            started, t_case = None, time.monotonic()
            last = Path(rep["path"])
            outcome = {"ok": "ok"}.get(rep["outcome"], "finding")
            detail = f"{rep.get('type')}: {rep.get('msg', '')[:300]}"
            if rep["outcome"] == "error" and rep["type"] == "EdgecvError" and "\n" not in rep["msg"].strip():
                outcome, detail = "refused", rep["msg"][:200]
            out[Path(rep["path"])] = (outcome, "" if outcome == "ok" else detail, rep["seconds"])
        proc.kill()
        proc.wait()
        if started is None and why is not None and last is not None:
            started, why = last, "hang after reading (closing the damaged file)"  # the library's cleanup
        if started is not None:
            # edgecv reads weights in a child with a time limit first (h5_weights.probe): a hang or crash of the
            # HDF5 library is contained there and reported in one line; counted apart, not as a finding
            out[started] = ("contained", why or f"crash (exit code {proc.returncode})",
                            round(time.monotonic() - t_case, 3))
        elif why is not None or (proc.returncode not in (0, -9) and todo[0] not in out):
            for p in todo:  # the child failed before reading anything
                out.setdefault(p, ("finding", f"reader process failed (exit code {proc.returncode})", 0.0))
        todo = [p for p in todo if p not in out]
    return out


# --- the run ---------------------------------------------------------------------------------------------

@dataclass
class Report:
    seed: int
    kinds: list[str]
    budget_s: float | None
    cases: int = 0
    seconds: float = 0.0
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    findings: list[dict] = field(default_factory=list)
    contained: list[dict] = field(default_factory=list)  # hangs/crashes of a library inside edgecv's child

    def to_dict(self) -> dict:
        return asdict(self)


def run(seeds: dict[str, bytes], workdir: Path, *, cases_per_kind: int, seed: int = 0,
        budget_s: float | None = None, limit_s: float = CASE_LIMIT_S,
        on_case: Callable[[Outcome], None] | None = None) -> Report:
    """Fuzz each kind of ``seeds`` (kind -> a valid file's bytes) with ``cases_per_kind`` mutants, seeded by
    ``seed``, stopping early when ``budget_s`` seconds have passed; mutants are written under ``workdir``."""
    rng = np.random.default_rng(seed)
    kinds = list(seeds)
    rep = Report(seed=seed, kinds=kinds, budget_s=budget_s)
    t_start = time.monotonic()
    suffix = {"keras": ".keras", "h5": ".h5", "npy": ".npy", "npz": ".npz", "npz_labelled": ".npz",
              "tflite": ".tflite", "onnx": ".onnx"}
    outcomes: list[Outcome] = []
    batch_h5: list[tuple[int, str, Path]] = []

    def record(o: Outcome) -> None:
        outcomes.append(o)
        if on_case:
            on_case(o)

    def flush_h5() -> None:
        if not batch_h5:
            return
        res = _read_h5_batch([p for _, _, p in batch_h5], limit_s)
        for i, mutation, p in batch_h5:
            outcome, detail, s = res[p]
            record(Outcome("h5", i, mutation, outcome, round(s, 3), detail))
        batch_h5.clear()

    others = {k: seeds[kinds[(j + 1) % len(kinds)]] for j, k in enumerate(kinds)}
    for i in range(cases_per_kind):
        if budget_s is not None and time.monotonic() - t_start > budget_s:
            break
        for kind in kinds:
            zipped = kind in ("keras", "npz", "npz_labelled")
            mutation, data = (mutate_zip(seeds[kind], rng) if zipped and rng.random() < 0.3
                              else mutate(seeds[kind], others[kind], rng))
            path = workdir / f"{kind}_{i}{suffix[kind]}"
            path.write_bytes(data)
            if kind == "h5":
                batch_h5.append((i, mutation, path))
                if len(batch_h5) >= 50:
                    flush_h5()
                continue
            t0 = time.monotonic()
            try:
                IN_PROCESS[kind](path)
                outcome, detail = _judge(None)
            except Exception as exc:  # noqa: BLE001 - judged: anything but a one-line EdgecvError is a finding
                outcome, detail = _judge(exc)
            s = time.monotonic() - t0
            if s > limit_s * (2 if kind in ("tflite", "onnx") else 1):
                outcome, detail = "finding", f"took {s:.1f} s (limit {limit_s:.0f} s)"
            record(Outcome(kind, i, mutation, outcome, round(s, 3), detail))
    flush_h5()
    rep.cases = len(outcomes)
    rep.seconds = round(time.monotonic() - t_start, 1)
    for o in outcomes:
        counts = rep.by_kind.setdefault(o.kind, {"ok": 0, "refused": 0, "contained": 0, "finding": 0})
        counts[o.outcome] += 1
        if o.outcome == "finding":
            rep.findings.append(asdict(o))
        elif o.outcome == "contained":
            rep.contained.append(asdict(o))
    return rep


def keras_seed(folder: Path) -> bytes:
    """A small valid .keras file (imports Keras)."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x), name="fuzzseed").save(folder / "seed.keras")
    return (folder / "seed.keras").read_bytes()


def h5_seed(folder: Path) -> bytes:
    seed_h5(folder / "seed.h5")
    return (folder / "seed.h5").read_bytes()

