"""Measured per-op times from a target, mapped to the static analysis' ops and op classes.

Sources: ``benchmark_model --enable_op_profiling=true`` (ADB; its "Run Order" table, one row per node of the
execution plan, so a node index is a static op index; a delegate node covers the ops it took) and ONNX
Runtime's profiler (SSH, .onnx; one row per node of the optimized graph, matched to the static ops by node
name, else by type in order). LiteRT's and tflite-runtime's Python APIs have no op profiler: for a .tflite over
SSH the record says so instead of inventing numbers.
"""

from __future__ import annotations

import re
from typing import Any

from edgecv.records import OpTiming, OpTimings

# ONNX Runtime's fused kernels -> the graph op they start from
_ORT_FUSED = {"FusedConv": "Conv", "FusedGemm": "Gemm", "QLinearConv": "Conv", "NhwcFusedConv": "Conv",
              "FusedMatMul": "MatMul", "QLinearMatMul": "MatMul"}


def from_benchmark_model(out) -> dict[str, Any]:
    if not out.ops:
        return {"unavailable": "benchmark_model printed no op profile (a build without --enable_op_profiling?)"}
    return {"source": "benchmark_model --enable_op_profiling=true", "runs": out.runs.count if out.runs else None,
            "ops": [{"index": o.index, "name": o.name, "type": o.type, "avg_ms": o.avg_ms} for o in out.ops]}


def _norm(t: str) -> str:
    return re.sub(r"[^a-z0-9]", "", t.lower())


def map_op_timings(res, raw: dict[str, Any]) -> OpTimings:
    """``raw`` (the runner's or benchmark_model's per-op times) -> the ``op_timings`` part of a target result."""
    if not raw or "unavailable" in raw or not raw.get("ops"):
        reason = (raw or {}).get("unavailable") or "the target's runtime reported no per-op times"
        if res.format == "tflite" and str(res.device).startswith("ssh://"):
            reason += ("; over SSH a .tflite has no per-op source (LiteRT and tflite-runtime have no Python op "
                       "profiler): use --target adb with benchmark_model, or profile the .onnx export")
        return OpTimings(available=False, reason=reason)
    static = list(res.ops or [])
    by_index = {op.index: op for op in static}
    by_name = {op.name: op for op in static if op.name}
    unused_by_type: dict[str, list] = {}
    for op in static:
        unused_by_type.setdefault(_norm(op.type), []).append(op)
    taken: set[int] = set()
    rows = []
    for m in raw["ops"]:
        mtype = str(m.get("type", ""))
        st = None
        if "index" in m and m["index"] in by_index and _norm(by_index[m["index"]].type) == _norm(mtype):
            st = by_index[m["index"]]
        if st is None and m.get("name") in by_name:
            st = by_name[m["name"]]
        if st is None:
            for cand in unused_by_type.get(_norm(_ORT_FUSED.get(mtype, mtype)), []):
                if cand.index not in taken:
                    st = cand
                    break
        if st is not None and st.index in taken:
            st = None
        if st is not None:
            taken.add(st.index)
        cls = st.op_class if st is not None else ("delegated" if "delegate" in mtype.lower() else "unmapped")
        rows.append(OpTiming(name=str(m.get("name", "")), type=mtype, avg_ms=float(m["avg_ms"]), op_class=cls,
                             static_index=st.index if st is not None else None,
                             macs=st.macs if st is not None else None))
    by_class: dict[str, float] = {}
    for r in rows:
        by_class[r.op_class] = by_class.get(r.op_class, 0.0) + r.avg_ms
    return OpTimings(available=True, source=raw.get("source", ""), runs=raw.get("runs"), ops=tuple(rows),
                     by_class_ms=dict(sorted(by_class.items(), key=lambda kv: -kv[1])),
                     mapped=sum(r.static_index is not None for r in rows), measured=len(rows),
                     static_ops=len(static))
