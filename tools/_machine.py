"""The machine a benchmark ran on: a file-name tag and an environment record written next to the figures.

Figures from different machines must never mix, so every result file name carries ``machine_tag()``:
CPU model, the widest int8/vector ISA level the CPU has, core count and a short hash of the host name
(``amd-epyc-avx512-vnni_2c_3f9a1c2e``). The ISA level is in the name because a virtual machine reports one
model name ("AMD EPYC") for CPUs whose kernels differ (AVX2 without VNNI saturates ONNX Runtime's int8
kernels, VNNI does not), and the host name of a sandbox can repeat across machines. Files written before the
ISA level was added are named without it (``amd-epyc_2c_5bce98f7``: an AVX2 CPU without VNNI).
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import socket
import time
from typing import Any


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown-cpu"


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# Widest first: the first feature the CPU has names its level.
ISA_LEVELS = ("amx_int8", "avx512_vnni", "avx_vnni", "avx512f", "avx2", "avx", "sve2", "sve", "i8mm", "asimddp",
              "neon")


def isa_level() -> str:
    from edgecv.profiling.runner import environment as runner_environment

    isa = runner_environment().get("isa", {})
    return next((name for name in ISA_LEVELS if isa.get(name)), "base")


def machine_tag() -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", f"{cpu_model()} {isa_level()}".lower()).strip("-")[:60] or "cpu"
    host = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
    return f"{slug}_{cores()}c_{host}"


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def environment() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    pkgs = {}
    for dist in ("edgecv", "tensorflow-cpu", "keras", "ai-edge-litert", "onnxruntime", "onnx", "tf2onnx", "numpy",
                 "scikit-learn"):
        try:
            pkgs[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return {"machine": machine_tag(), "cpu": cpu_model(), "cores": cores(), "os_cpu_count": os.cpu_count(),
            "python": platform.python_version(), "platform": platform.platform(),
            "isa_level": isa_level(), "host_sha256_8": machine_tag().rsplit("_", 1)[-1], "packages": pkgs,
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load_average_start": load_average()}
