"""Measured top-1 for a sweep's artifacts (``edgecv sweep ... --eval-data DIR``).

Each finished artifact runs on the labelled data in its runtime in a child process
(:func:`edgecv.evaluation.api.evaluate`). Results are cached per artifact and per data fingerprint (a hash of
every file's relative path and content) in the sweep's ``work/stages`` folder, so a re-run measures only new
artifacts or changed data.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from edgecv.evaluation.data import Source, open_source
from edgecv.records import MeasuredTop1


def fingerprint(src: Source, labels: str | os.PathLike | None = None) -> str:
    """sha256 over the data's files (relative path and content) and the class order."""
    h = hashlib.sha256()
    h.update(json.dumps(list(src.classes)).encode())
    files = [src.path] if src.kind == "npz" else [f for f, _ in src.files]
    for f in files:
        h.update(str(f.relative_to(src.path) if src.kind == "dir" else f.name).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    if labels is not None:
        h.update(Path(labels).read_bytes())
    return h.hexdigest()


def measure(artifacts: dict[str, str], eval_data: str | os.PathLike, cache_dir: Path, *,
            labels: str | os.PathLike | None = None, on_done=None) -> dict[str, MeasuredTop1]:
    """{name: artifact path} -> {name: its measured top-1}.

    A cached figure is reused when its artifact is unchanged (size and mtime) and the data fingerprint matches.
    """
    from edgecv.evaluation.api import evaluate
    from edgecv.fileio import write_json_atomic

    src = open_source(eval_data, labels, option="--eval-data")
    fp = fingerprint(src, labels)
    out: dict[str, MeasuredTop1] = {}
    for name, path in artifacts.items():
        st = Path(path).stat()
        stamp = [st.st_size, st.st_mtime_ns]
        cache = cache_dir / f"{Path(name).stem}.evaluate-{fp[:12]}.json"
        try:
            raw = json.loads(cache.read_text())
            hit = MeasuredTop1.from_dict(raw) if raw.get("fingerprint") == fp and raw.get("artifact") == stamp \
                else None
        except (OSError, ValueError, AttributeError):
            hit = None
        if hit is None:
            r = evaluate([path], eval_data, labels=labels).results[0]
            top5 = None if r.top5 is None else round(100.0 * r.top5, 4)
            hit = MeasuredTop1(top1=round(100.0 * r.top1, 4), top5=top5, samples=r.samples, data=str(eval_data),
                               runtime=r.runtime)
            write_json_atomic(cache, {"fingerprint": fp, "artifact": stamp, **hit.to_dict()})
        out[name] = hit
        if on_done is not None:
            on_done()
    return out
