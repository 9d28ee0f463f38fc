"""Time the test suite: wall time, CPU time, peak memory of the whole process tree, slowest tests.

    python tools/bench_tests.py                       # the README's command: -m "not slow" -n 2 --dist loadfile
    python tools/bench_tests.py -- -m slow            # the slow tests (CI runs them too)
    python tools/bench_tests.py --label all -- tests  # the whole suite

Arguments after ``--`` go to pytest. Writes ``tools/results/tests_<label>_<machine>.json``: wall and CPU
time (user + system of pytest and every child it waited for), the peak resident memory of the process tree
(the sum of RSS, and of PSS, over pytest and all its descendants, sampled every 0.2 s), the load average before and after
(figures from a busy machine are not comparable), the outcome counts, the warning count and each test's wall
and CPU time (setup + call + teardown; CPU time of pytest and the children it waited for, recorded by
``tests/conftest.py`` when ``EDGECV_TEST_CPU_LOG`` is set) with the resident memory of pytest after it and the
largest child so far, most CPU first. Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import environment, load_average, machine_tag  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PAGE = os.sysconf("SC_PAGE_SIZE")


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def tree_memory(root: int) -> tuple[int, int]:
    """Bytes resident in ``root`` and all its descendants now: (RSS sum, PSS sum). RSS counts a shared page (the
    TensorFlow and LiteRT libraries every process maps) once per process; PSS divides it among them, so the PSS sum
    is what the tree takes from the machine."""
    kids, rss, pss, todo = _children(), 0, 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(kids.get(pid, ()))
        try:
            with open(f"/proc/{pid}/statm", encoding="ascii") as fh:
                rss += int(fh.read().split()[1]) * PAGE
            with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
                pss += next((int(ln.split()[1]) * 1024 for ln in fh if ln.startswith("Pss:")), 0)
        except (OSError, ValueError):
            pass
    return rss, pss


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", default=None, help="result file label (default: from the -m expression)")
    ap.add_argument("--reverse", action="store_true", help="run the test files in reverse order")
    ap.add_argument("pytest_args", nargs="*", help='pytest arguments (default: the README\'s, -m "not slow" -n 2 --dist loadfile)')
    args = ap.parse_args()
    pytest_args = args.pytest_args or ["-m", "not slow", "-n", "2", "--dist", "loadfile"]
    if args.reverse:  # e.g. a second run on a shared machine that meets the first one half way
        files = sorted((ROOT / "tests").glob("*/test_*.py"), reverse=True)
        pytest_args = [*pytest_args, *(str(f.relative_to(ROOT)) for f in files)]
    label = args.label or re.sub(r"[^a-z0-9]+", "-", " ".join(pytest_args).lower()).strip("-") or "all"

    env = environment()
    with tempfile.TemporaryDirectory() as tmp:
        junit, cpu_log = Path(tmp) / "junit.xml", Path(tmp) / "cpu.jsonl"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *pytest_args]
        start, peak, peak_pss = time.monotonic(), 0, 0
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "EDGECV_TEST_CPU_LOG": str(cpu_log)})
        done = threading.Event()

        def poll() -> None:
            nonlocal peak, peak_pss
            while not done.is_set():
                rss, pss = tree_memory(proc.pid)
                peak, peak_pss = max(peak, rss), max(peak_pss, pss)
                done.wait(0.2)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        out_lines, complete = [], True
        assert proc.stdout is not None
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            for line in proc.stdout:
                sys.stdout.write(line)
                out_lines.append(line)
            rc = proc.wait()
        except KeyboardInterrupt:  # stopped early: keep what was measured, marked incomplete
            complete = False
            proc.send_signal(signal.SIGINT)
            try:
                rc = proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
        wall = time.monotonic() - start
        done.set()
        poller.join()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = {}
        if cpu_log.exists():
            for line in cpu_log.read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                cpu[row["id"]] = row
        tests = []
        if junit.exists():
            for case in ET.parse(junit).getroot().iter("testcase"):
                outcome = "passed"
                for tag in ("failure", "error", "skipped"):
                    if case.find(tag) is not None:
                        outcome = tag
                tests.append({"id": f"{case.get('classname')}::{case.get('name')}",
                              "seconds": round(float(case.get("time") or 0), 2), "outcome": outcome})
    if cpu:  # node ids are exact here; JUnit's class names are not
        outcomes = {t["id"]: t["outcome"] for t in tests}
        tests = [{"id": k, "seconds": v["wall_s"], "cpu_s": v["cpu_s"], "slow": v["slow"],
                  "pytest_rss_mb": v.get("pytest_rss_mb"), "children_max_rss_mb": v.get("children_max_rss_mb"),
                  "outcome": outcomes.get(k.replace("/", ".").replace(".py::", "::"), "?")} for k, v in cpu.items()]
    tests.sort(key=lambda t: -t.get("cpu_s", t["seconds"]))
    by_file: dict[str, dict[str, float]] = {}
    for t in tests:
        f = by_file.setdefault(t["id"].split("::")[0], {"tests": 0, "seconds": 0.0, "cpu_s": 0.0})
        f["tests"] += 1
        f["seconds"] = round(f["seconds"] + t["seconds"], 1)
        f["cpu_s"] = round(f["cpu_s"] + t.get("cpu_s", 0.0), 1)
    summary = out_lines[-1].strip() if out_lines else ""
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|warnings?|"
                                                r"deselected)", summary)}
    record = {
        "command": ["python", "-m", "pytest", *pytest_args], "complete": complete, "exit_code": rc,
        "wall_s": round(wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "peak_tree_rss_mb": round(peak / 2**20),
        "peak_tree_pss_mb": round(peak_pss / 2**20),
        "max_single_process_rss_mb": round(usage.ru_maxrss / 1024), "summary": summary, "counts": counts,
        "load_average_end": load_average(), "environment": env,
        "files": dict(sorted(by_file.items(), key=lambda kv: -kv[1]["cpu_s"])), "tests": tests,
    }
    out = ROOT / "tools" / "results" / f"tests_{label}_{machine_tag()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".json.part")
    tmp_out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    tmp_out.replace(out)
    print(f"{out.relative_to(ROOT)}: {record['wall_s']} s wall, {record['cpu_s']} s CPU, "
          f"peak tree RSS {record['peak_tree_rss_mb']} MB, PSS {record['peak_tree_pss_mb']} MB, {summary}", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
