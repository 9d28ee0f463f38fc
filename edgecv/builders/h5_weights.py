"""Reading Keras HDF5 weight files (``build --weights``) without trusting them.

A weights file is untrusted input. HDF5 can make a dataset's bytes come from outside the file: external
storage (raw bytes of any local file), virtual datasets (slices of other files), external links and soft links.
Read naively, ``/etc/passwd`` becomes a convolution kernel and from there every artifact. :func:`check_h5_file`
walks every link of the file once, before any dataset is read, and refuses all of these in one line naming the
file and the dataset path; it also bounds the declared bytes of all datasets (a compressed dataset can declare
terabytes). :func:`read_legacy_h5` turns a malformed legacy file (missing groups or keys, wrong types) into one
line instead of a ``KeyError``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgecv.errors import EdgecvError, root_cause

MAX_WEIGHTS_BYTES_ENV = "EDGECV_MAX_WEIGHTS_BYTES"
DEFAULT_MAX_WEIGHTS_BYTES = 4 * 2**30  # EfficientNet-B7's ImageNet file holds ~260 MB


def max_weights_bytes() -> int:
    from edgecv.validate import env_int

    return env_int(MAX_WEIGHTS_BYTES_ENV, DEFAULT_MAX_WEIGHTS_BYTES, minimum=1)


def _refuse(path: Path, where: str, why: str) -> EdgecvError:
    return EdgecvError(f"--weights: refused {str(path)!r}: {where} {why}; edgecv reads weights only from "
                       f"datasets stored inside the file")


def check_h5_file(f: Any, path: Path) -> None:
    """Refuse external storage, virtual datasets, external/soft links and oversized datasets anywhere in ``f``
    (an open ``h5py.File``) with one line naming ``path`` and the dataset path."""
    import h5py

    limit = max_weights_bytes()
    total = 0
    seen: set[int] = set()
    stack = [f]
    while stack:
        group = stack.pop()
        for name in group:
            where = f"{group.name.rstrip('/')}/{name}"
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.SoftLink):
                raise _refuse(path, f"{where!r} is a soft link (to {link.path!r}),", "which is not allowed")
            if isinstance(link, h5py.ExternalLink):
                raise _refuse(path, f"{where!r} is an external link (to {link.filename!r}:{link.path!r}),",
                              "which is not allowed")
            if not isinstance(link, h5py.HardLink):
                raise _refuse(path, f"{where!r} is a user-defined link,", "which is not allowed")
            obj = group.get(name)
            key = hash(obj.id)
            if key in seen:
                continue
            seen.add(key)
            if isinstance(obj, h5py.Group):
                stack.append(obj)
            elif isinstance(obj, h5py.Dataset):
                if obj.is_virtual:
                    raise _refuse(path, f"dataset {where!r} is a virtual dataset (its data comes from other files),",
                                  "which is not allowed")
                if obj.external:
                    src = obj.external[0][0]
                    src = src.decode(errors="replace") if isinstance(src, bytes) else str(src)
                    raise _refuse(path, f"dataset {where!r} uses external storage (its bytes are read from "
                                        f"{src!r}),", "which is not allowed")
                total += int(obj.size or 0) * obj.dtype.itemsize
                if total > limit:
                    raise EdgecvError(f"--weights: {str(path)!r} declares more than {limit:,} bytes of datasets "
                                      f"(at {where!r}); the limit is {MAX_WEIGHTS_BYTES_ENV}={limit} (raise it in "
                                      f"the environment to read larger files)")


def open_checked(path: Path):
    """``h5py.File(path)`` opened read-only after :func:`check_h5_file`; one line for an unreadable file."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise EdgecvError(f"--weights: not a readable HDF5 weights file: {str(path)!r} ({exc})") from None
    try:
        check_h5_file(f, path)
    except EdgecvError:
        f.close()
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a damaged file makes h5py raise
        f.close()
        raise EdgecvError(f"--weights: damaged HDF5 weights file {str(path)!r}: {root_cause(exc)}") from None
    return f


def is_legacy(f: Any) -> bool:
    """A legacy Keras file (keras.applications' format): ``layer_names`` at the root or in ``model_weights``."""
    import h5py

    if "layer_names" in f.attrs:
        return True
    g = f.get("model_weights")
    return isinstance(g, h5py.Group) and "layer_names" in g.attrs


def _names(attrs: Any, key: str, where: str, path: Path) -> list[str]:
    import numpy as np

    if key not in attrs:
        return []
    arr = np.asarray(attrs[key])
    if arr.size == 0:
        return []
    if arr.ndim != 1 or arr.dtype.kind not in "SUO":
        raise EdgecvError(f"--weights: malformed legacy .h5 {str(path)!r}: attribute {key!r} of {where!r} is not "
                          f"a list of names")
    out = []
    for v in arr.tolist():
        if isinstance(v, bytes):
            v = v.decode("utf-8")
        if not isinstance(v, str):
            raise EdgecvError(f"--weights: malformed legacy .h5 {str(path)!r}: attribute {key!r} of {where!r} "
                              f"holds {type(v).__name__}, not names")
        out.append(v)
    return out


def read_legacy_h5(f: Any, path: Path) -> dict[str, list]:
    """{layer name: [arrays in the layer's weight order]} from a checked legacy Keras HDF5 weights file."""
    import h5py
    import numpy as np

    g = f["model_weights"] if "model_weights" in f else f
    out: dict[str, list] = {}
    try:
        for lname in _names(g.attrs, "layer_names", g.name, path):
            lg = g.get(lname)
            if not isinstance(lg, h5py.Group):
                raise EdgecvError(f"--weights: malformed legacy .h5 {str(path)!r}: layer_names lists {lname!r} but "
                                  f"{g.name.rstrip('/')}/{lname!r} is not a group")
            arrays = []
            for w in _names(lg.attrs, "weight_names", lg.name, path):
                ds = lg.get(w)
                if not isinstance(ds, h5py.Dataset):
                    raise EdgecvError(f"--weights: malformed legacy .h5 {str(path)!r}: weight {w!r} of layer "
                                      f"{lname!r} is not a dataset in {lg.name!r}")
                if ds.dtype.kind not in "fiub":
                    raise EdgecvError(f"--weights: malformed legacy .h5 {str(path)!r}: dataset "
                                      f"{ds.name!r} holds {ds.dtype}, not numbers")
                arrays.append(np.asarray(ds[()]))
            if arrays:
                out[lname] = arrays
    except EdgecvError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged file: one line, not a KeyError
        raise EdgecvError(f"--weights: damaged HDF5 weights file {str(path)!r}: {root_cause(exc)}") from None
    return out


PROBE_TIMEOUT_S = 300.0


def _read_everything(path: Path) -> None:
    """What the child does: the checks, then every dataset read once (legacy or Keras 3 layout)."""
    import h5py

    with open_checked(path) as f:
        if is_legacy(f):
            read_legacy_h5(f, path)
            return
        datasets: list = []
        f.visititems(lambda name, obj: datasets.append(obj) if isinstance(obj, h5py.Dataset) else None)
        try:
            for ds in datasets:
                ds[()]
        except Exception as exc:  # noqa: BLE001
            raise EdgecvError(f"--weights: damaged HDF5 weights file {str(path)!r}: {root_cause(exc)}") from None


def probe(path: Path, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Read ``path`` completely in a child process with a time limit first: the HDF5 library is C code, and a
    damaged file can crash it or make it loop for ever (seen when fuzzing). Raises the child's one-line error."""
    import json
    import subprocess

    from edgecv.isolation import python_argv, run

    try:
        proc = run(python_argv(module="edgecv.builders.h5_weights", args=[str(path)]), timeout_s)
    except subprocess.TimeoutExpired:
        raise EdgecvError(f"--weights: reading {str(path)!r} did not finish within {timeout_s:.0f} s "
                          f"(a damaged HDF5 file?)") from None
    except OSError as exc:
        raise EdgecvError(f"--weights: cannot start a process to read {str(path)!r}: {exc}") from None
    if proc.returncode < 0:
        raise EdgecvError(f"--weights: the HDF5 reader crashed on {str(path)!r} (signal {-proc.returncode})")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    rep = json.loads(lines[-1]) if lines else {"error": f"--weights: cannot read {str(path)!r} (reader exit code "
                                                        f"{proc.returncode})"}
    if rep.get("error"):
        raise EdgecvError(rep["error"])


def load_legacy_or_none(path: str | os.PathLike, isolate: bool = True) -> dict[str, list] | None:
    """Check ``path`` and read it if it is a legacy file (by layer name); None for a Keras 3 ``.weights.h5``
    (checked too: Keras then reads it). ``isolate``: read it in a child process with a time limit first."""
    p = Path(path)
    if isolate:
        probe(p)
    with open_checked(p) as f:
        try:
            legacy = is_legacy(f)
        except Exception as exc:  # noqa: BLE001
            raise EdgecvError(f"--weights: damaged HDF5 weights file {str(p)!r}: {root_cause(exc)}") from None
        return read_legacy_h5(f, p) if legacy else None


if __name__ == "__main__":  # the child of probe()
    import json
    import sys

    try:
        _read_everything(Path(sys.argv[1]))
        print(json.dumps({"ok": True}))
    except EdgecvError as exc:
        print(json.dumps({"error": str(exc)}))
    except BaseException as exc:  # noqa: BLE001
        print(json.dumps({"error": f"--weights: cannot read {sys.argv[1]!r}: {root_cause(exc)}"}))
