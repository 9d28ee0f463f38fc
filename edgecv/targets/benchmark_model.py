"""Parse the text output of TensorFlow Lite's ``benchmark_model`` tool (``tensorflow/lite/tools/benchmark``).

The tool prints (to stdout, or to logcat on the Android APK) lines such as::

    count=9 first=64791 curr=56295 min=54873 max=65831 avg=57758.2 std=4065          <- warm-up runs
    count=50 first=58154 curr=53809 min=53077 max=60727 avg=55043.2 std=1562         <- timed runs
    Inference timings in us: Init: 18777, First inference: 64791, Warmup (avg): 57758.2, Inference (avg): 55043.2
    Memory footprint delta from the start of the tool (MB): init=8.97656 overall=18.7227
    Overall peak memory footprint (MB) via periodic monitoring: 93.2383

Older releases write ``Peak memory footprint (MB): init=... overall=...``; newer ones prefix every line with
``INFO: `` and add ``p5= median= p95=`` to the statistics lines; logcat adds its own prefix. Large values
are printed in scientific notation (``avg=2.95034e+06``). All times are microseconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from edgecv.errors import EdgecvError
from edgecv.records import LatencyStats

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
# logcat "11-25 10:31:13.022 21767 21767 I tflite  : ", then "INFO: " / "ERROR: " ... of the TFLite logger.
_PREFIX = re.compile(
    r"^(?:\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+[VDIWEF]\s+[^:]*:\s?)?"
    r"(?:(?:INFO|WARN|WARNING|ERROR|VERBOSE|DEBUG):\s*)?"
)
_TIMINGS = re.compile(
    rf"Inference timings in us: Init: (?P<init>{_NUM}), First inference: (?P<first>{_NUM}), "
    rf"Warmup \(avg\): (?P<warmup>{_NUM}), Inference \(avg\): (?P<avg>{_NUM})"
)
_MEMORY = re.compile(
    rf"(?:Peak memory footprint|Memory footprint delta from the start of the tool) \(MB\): "
    rf"init=(?P<init>{_NUM}) overall=(?P<overall>{_NUM})"
)
_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: (?P<peak>{_NUM})")
_SIZE = re.compile(rf"The input model file size \(MB\): (?P<mb>{_NUM})")
_THREADS = re.compile(r"(?:#threads used for CPU inference|Num threads): \[(?P<n>-?\d+)\]")
_KV = re.compile(rf"(\w+)=({_NUM})")
_DELEGATES = (
    ("XNNPACK delegate", "xnnpack"),
    ("delegate for GPU", "gpu"),
    ("delegate for NNAPI", "nnapi"),
    ("Hexagon delegate", "hexagon"),
)

MB = 1024 * 1024  # benchmark_model divides kilobytes by 1024.0


class BenchmarkOutputError(EdgecvError):
    """benchmark_model failed or printed no timing summary."""


@dataclass(frozen=True)
class RunStats:
    """One ``count=... avg=... std=...`` line, in microseconds."""

    count: int
    avg_us: float
    std_us: float | None = None
    min_us: float | None = None
    max_us: float | None = None
    first_us: float | None = None
    median_us: float | None = None
    p5_us: float | None = None
    p95_us: float | None = None


@dataclass(frozen=True)
class OpTiming:
    """One row of benchmark_model's op profile ("Run Order" of the regular benchmark runs): milliseconds."""

    index: int  # the node's index in the execution plan (the ``:N`` after the name)
    type: str  # CONV_2D, DEPTHWISE_CONV_2D, TfLiteXNNPackDelegate, ...
    name: str
    first_ms: float
    avg_ms: float
    percent: float
    times_called: int = 1


@dataclass(frozen=True)
class BenchmarkModelOutput:
    """What one ``benchmark_model`` run reported. Times in milliseconds, memory in bytes."""

    init_ms: float
    first_inference_ms: float
    warmup_avg_ms: float
    inference_avg_ms: float
    runs: RunStats | None = None  # the timed runs
    warmup: RunStats | None = None
    memory_init_bytes: int | None = None  # footprint (max RSS delta from tool start) after init
    memory_overall_bytes: int | None = None  # ... after all runs
    peak_memory_bytes: int | None = None  # periodic monitoring (--report_peak_memory_footprint=true)
    model_file_bytes: int | None = None
    threads: int | None = None
    delegates: tuple[str, ...] = field(default_factory=tuple)
    ops: tuple["OpTiming", ...] = ()  # --enable_op_profiling=true: the regular runs' "Run Order" table

    def latency_ms(self) -> LatencyStats:
        """The timed runs (ms). Percentiles the tool does not print are ``None`` (p50 comes from ``median=`` in
        releases that print it)."""
        r = self.runs
        ms = (lambda v: None if v is None else v / 1000.0)
        return LatencyStats(mean=self.inference_avg_ms, std=ms(r.std_us) if r else None,
                            min=ms(r.min_us) if r else None, p50=ms(r.median_us) if r else None, p90=None, p99=None,
                            runs=r.count if r else None)


def strip_prefix(line: str) -> str:
    return _PREFIX.sub("", line.rstrip("\r\n"), count=1)


def _float(s: str) -> float:
    return float(s)


def _run_stats(text: str) -> RunStats | None:
    kv = {k: float(v) for k, v in _KV.findall(text)}
    if "count" in kv and "avg" not in kv and kv["count"] == 1 and "curr" in kv:
        kv["avg"] = kv["min"] = kv["max"] = kv["first"] = kv["curr"]  # one run: "count=1 curr=3512391"
    if "count" not in kv or "avg" not in kv:
        return None
    return RunStats(
        count=int(kv["count"]), avg_us=kv["avg"], std_us=kv.get("std"), min_us=kv.get("min"),
        max_us=kv.get("max"), first_us=kv.get("first"), median_us=kv.get("median"),
        p5_us=kv.get("p5"), p95_us=kv.get("p95"),
    )


def failure_reason(text: str) -> str:
    """The most telling line of a failed run: the first ERROR line, else the last non-empty line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if re.match(r"^(?:ERROR:|E\s|.*\bE tflite)", ln) or "error" in ln.lower():
            return strip_prefix(ln) or ln
    return strip_prefix(lines[-1]) if lines else "no output"


_OP_ROW = re.compile(
    rf"^\s*(?P<type>\S+)\s+(?P<start>{_NUM})\s+(?P<first>{_NUM})\s+(?P<avg>{_NUM})\s+(?P<pct>{_NUM})%\s+"
    rf"(?P<cdf>{_NUM})%\s+(?P<mem>{_NUM})\s+(?P<calls>\d+)\s+(?P<name>.*)$")


def parse_op_profile(text: str) -> tuple[OpTiming, ...]:
    """The "Run Order" table after "Operator-wise Profiling Info for Regular Benchmark Runs" (empty if the
    run had no --enable_op_profiling)."""
    lines = [strip_prefix(ln) for ln in text.splitlines()]
    try:
        start = next(i for i, ln in enumerate(lines) if "Operator-wise Profiling Info for Regular Benchmark Runs" in ln)
    except StopIteration:
        return ()
    out: list[OpTiming] = []
    in_table = False
    for ln in lines[start + 1:]:
        if "Run Order" in ln and ln.strip().startswith("="):
            in_table = True
            continue
        if not in_table or "[node type]" in ln:
            continue
        if ln.strip().startswith("=") or not ln.strip():
            if out:
                break
            continue
        m = _OP_ROW.match(ln)
        if m is None:
            continue
        name = m["name"].strip()
        idx = re.search(r":(\d+)$", name)
        out.append(OpTiming(index=int(idx.group(1)) if idx else len(out), type=m["type"],
                            name=re.sub(r"^\[(.*)\]:\d+$", r"\1", name), first_ms=float(m["first"]),
                            avg_ms=float(m["avg"]), percent=float(m["pct"]), times_called=int(m["calls"])))
    return tuple(out)


def parse_benchmark_model(text: str) -> BenchmarkModelOutput:
    """Parse ``benchmark_model`` output. Raises ``BenchmarkOutputError`` if the run failed (no
    ``Inference timings`` summary), with the tool's own error line in the message."""
    stats: list[RunStats] = []
    timings = memory = None
    peak = size = threads = None
    delegates: list[str] = []
    for raw in text.splitlines():
        line = strip_prefix(raw).strip()
        if not line:
            continue
        if line.startswith("count=") and timings is None:
            s = _run_stats(line)
            if s is not None:
                stats.append(s)
            continue
        if timings is None and (m := _TIMINGS.search(line)):
            timings = m
            continue
        if m := _MEMORY.search(line):
            memory = m
        elif m := _PEAK.search(line):
            peak = float(m["peak"])
        elif m := _SIZE.search(line):
            size = float(m["mb"])
        elif threads is None and (m := _THREADS.search(line)):
            threads = int(m["n"])
        else:
            for needle, name in _DELEGATES:
                if needle in line and name not in delegates:
                    delegates.append(name)
    if timings is None:
        if "Benchmarking failed" in text or "ERROR" in text:
            raise BenchmarkOutputError(f"benchmark_model failed: {failure_reason(text)}")
        raise BenchmarkOutputError("benchmark_model printed no 'Inference timings' summary: "
                                   f"{failure_reason(text)}")
    runs = stats[-1] if stats else None
    warmup = stats[-2] if len(stats) >= 2 else None
    us = {k: _float(timings[k]) for k in ("init", "first", "warmup", "avg")}
    return BenchmarkModelOutput(
        init_ms=us["init"] / 1000.0,
        first_inference_ms=us["first"] / 1000.0,
        warmup_avg_ms=us["warmup"] / 1000.0,
        inference_avg_ms=us["avg"] / 1000.0,
        runs=runs,
        warmup=warmup,
        memory_init_bytes=round(float(memory["init"]) * MB) if memory else None,
        memory_overall_bytes=round(float(memory["overall"]) * MB) if memory else None,
        peak_memory_bytes=round(peak * MB) if peak is not None else None,
        model_file_bytes=round(size * 1e6) if size is not None else None,
        threads=threads,
        delegates=tuple(delegates),
        ops=parse_op_profile(text),
    )
