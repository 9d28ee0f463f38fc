"""The one host/CPU probe: ``/proc/cpuinfo``, the device tree and sysfs read into a fingerprint.

Used by the profiler's runner (on the host and, copied next to ``runner.py``, on a target), by the device
profiles (``host``) and by the targets. Standard library only: a target has nothing but Python, numpy and a
runtime, and this file travels there beside the runner.

Names: the board as the vendor prints it (``Raspberry Pi 4 Model B Rev 1.4``, from the ``Model`` line of
/proc/cpuinfo or ``/proc/device-tree/model``), the core as Arm names it (``Cortex-A72``, from ``CPU part
0xd08``), and one set of ISA feature names for every caller (``ISA_NAMES``: the kernel's flag names, with
``neon`` for Arm's Advanced SIMD, which arm64 kernels print as ``asimd``).
"""

from __future__ import annotations

import glob
import os
import platform
import shutil
import subprocess

# feature name -> raw /proc/cpuinfo flags that imply it
ISA_ARM = {
    "neon": ("asimd", "neon"),  # Advanced SIMD: "asimd" on arm64 kernels, "neon" on 32-bit ones
    "asimddp": ("asimddp",),  # SDOT/UDOT int8 dot product (Armv8.2+; not on Cortex-A72/A53)
    "asimdhp": ("asimdhp",),  # fp16 vector arithmetic
    "i8mm": ("i8mm",),
    "bf16": ("bf16",),
    "sve": ("sve",),
    "sve2": ("sve2",),
}
ISA_X86 = {
    "sse4_2": ("sse4_2",), "avx": ("avx",), "avx2": ("avx2",), "fma": ("fma",), "f16c": ("f16c",),
    "avx512f": ("avx512f",), "avx512_vnni": ("avx512_vnni",), "avx_vnni": ("avx_vnni",),
    "avx512_bf16": ("avx512_bf16",), "amx_int8": ("amx_int8",),
}
ISA_NAMES = tuple(ISA_ARM) + tuple(ISA_X86)
# "dot product" instructions in either family (int8 GEMM at 4x the fp32 MAC rate)
DOTPROD_FEATURES = ("asimddp", "avx512_vnni", "avx_vnni")

# (CPU implementer, CPU part) -> core name
ARM_PARTS = {
    (0x41, 0xc07): "Cortex-A7", (0x41, 0xc08): "Cortex-A8", (0x41, 0xc09): "Cortex-A9",
    (0x41, 0xc0d): "Cortex-A12", (0x41, 0xc0f): "Cortex-A15", (0x41, 0xc0e): "Cortex-A17",
    (0x41, 0xd01): "Cortex-A32", (0x41, 0xd03): "Cortex-A53", (0x41, 0xd04): "Cortex-A35",
    (0x41, 0xd05): "Cortex-A55", (0x41, 0xd06): "Cortex-A65", (0x41, 0xd07): "Cortex-A57",
    (0x41, 0xd08): "Cortex-A72", (0x41, 0xd09): "Cortex-A73", (0x41, 0xd0a): "Cortex-A75",
    (0x41, 0xd0b): "Cortex-A76", (0x41, 0xd0c): "Neoverse-N1", (0x41, 0xd0d): "Cortex-A77",
    (0x41, 0xd0e): "Cortex-A76AE", (0x41, 0xd40): "Neoverse-V1", (0x41, 0xd41): "Cortex-A78",
    (0x41, 0xd42): "Cortex-A78AE", (0x41, 0xd44): "Cortex-X1", (0x41, 0xd46): "Cortex-A510",
    (0x41, 0xd47): "Cortex-A710", (0x41, 0xd48): "Cortex-X2", (0x41, 0xd49): "Neoverse-N2",
    (0x41, 0xd4b): "Cortex-A78C", (0x41, 0xd4d): "Cortex-A715", (0x41, 0xd4e): "Cortex-X3",
    (0x41, 0xd4f): "Neoverse-V2", (0x41, 0xd80): "Cortex-A520", (0x41, 0xd81): "Cortex-A720",
    (0x41, 0xd82): "Cortex-X4",
    (0x51, 0x800): "Kryo 2xx Gold (Cortex-A73)", (0x51, 0x801): "Kryo 2xx Silver (Cortex-A53)",
    (0x51, 0x802): "Kryo 3xx Gold (Cortex-A75)", (0x51, 0x803): "Kryo 3xx Silver (Cortex-A55)",
    (0x51, 0x804): "Kryo 4xx Gold (Cortex-A76)", (0x51, 0x805): "Kryo 4xx Silver (Cortex-A55)",
    (0x61, 0x022): "Apple M1 Icestorm", (0x61, 0x023): "Apple M1 Firestorm",
}
MODEL_FILES = ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model")
X86_MACHINES = ("x86_64", "amd64", "i386", "i686", "x86")


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read().strip().strip("\x00").strip()
    except OSError:
        return None


def _int(text) -> int | None:
    try:
        return int(str(text).strip(), 0)
    except (TypeError, ValueError):
        return None


def parse_cpuinfo(text: str) -> dict:
    """/proc/cpuinfo -> ``{"processors": [{key: value}], "global": {key: value}}`` (keys lower case)."""
    processors: list[dict] = []
    glob_: dict = {}
    cur: dict | None = None
    for line in (text or "").splitlines():
        if ":" not in line:
            if not line.strip():
                cur = None
            continue
        key, _, val = line.partition(":")
        key, val = key.strip().lower(), val.strip()
        if key == "processor" and val.isdigit():
            cur = {"processor": val}
            processors.append(cur)
        elif cur is not None:
            cur.setdefault(key, val)
        else:
            glob_.setdefault(key, val)
    return {"processors": processors, "global": glob_}


def cpu_flags(info: dict) -> list[str]:
    """The raw ISA flags of a parsed /proc/cpuinfo: the first processor's ``flags`` (x86) or ``Features`` (Arm)
    line, else a global one (32-bit Arm kernels print one block)."""
    procs, g = info["processors"], info["global"]
    first = procs[0] if procs else {}
    return (first.get("flags") or first.get("features") or g.get("flags") or g.get("features") or "").split()


def cpuinfo_mhz(info: dict) -> float | None:
    """The ``cpu MHz`` line of a parsed /proc/cpuinfo (x86 kernels print the current clock there), or None."""
    procs, g = info["processors"], info["global"]
    for block in (*procs, g):
        raw = block.get("cpu mhz")
        if raw is not None:
            try:
                return float(raw)
            except ValueError:
                return None
    return None


def isa_features(flags, machine: str) -> dict:
    """Raw flags -> ``{feature: bool}`` over the feature names of ``machine``'s family."""
    table = ISA_X86 if (machine or "").lower() in X86_MACHINES else ISA_ARM
    have = set(flags)
    return {name: any(f in have for f in raw) for name, raw in table.items()}


def core_name(implementer, part) -> str | None:
    imp, prt = _int(implementer), _int(part)
    if imp is None or prt is None:
        return None
    return ARM_PARTS.get((imp, prt), f"Arm core 0x{imp:02x}:0x{prt:03x}")


def fingerprint(cpuinfo_text: str | None = None, machine: str | None = None,
                model_files=MODEL_FILES) -> dict:
    """What a user would call this CPU: board, SoC line, core(s), ISA features, raw flags."""
    machine = machine or platform.machine()
    if cpuinfo_text is None:
        cpuinfo_text = read_text("/proc/cpuinfo") or ""
    info = parse_cpuinfo(cpuinfo_text)
    procs, g = info["processors"], info["global"]
    first = procs[0] if procs else {}
    flags = cpu_flags(info)
    board = g.get("model") if not (g.get("model") or "").isdigit() else None  # x86's "model" is a number
    if not board:
        for f in model_files:
            board = read_text(f)
            if board:
                break
    clusters: dict[str, int] = {}
    parts: list[str] = []
    for p in procs:
        name = core_name(p.get("cpu implementer"), p.get("cpu part"))
        if name:
            clusters[name] = clusters.get(name, 0) + 1
            if p.get("cpu part") not in parts:
                parts.append(p.get("cpu part"))
    model_name = first.get("model name") or g.get("model name")
    if clusters:  # Arm: the cores by name, most numerous first ("Cortex-A76" or "4x Cortex-A55 + 4x Cortex-X1")
        order = sorted(clusters.items(), key=lambda kv: -kv[1])
        core = order[0][0] if len(order) == 1 else " + ".join(f"{n}x {c}" for c, n in order)
    else:
        core = model_name or g.get("hardware") or platform.processor() or machine
    isa = isa_features(flags, machine)
    return {
        "machine": machine,
        "board": board or None,
        "core": core,
        "cpu_model": core,
        "cpu_part": ",".join(parts) or None,
        "hardware": g.get("hardware"),
        "cpuinfo_processors": len(procs) or None,
        "isa": isa,
        "features": [k for k, v in isa.items() if v],
        "flags": flags,
    }


def describe(fp: dict, cores=None) -> str:
    """``Raspberry Pi 4 Model B Rev 1.4, Cortex-A72, 4 cores (neon)``."""
    head = ", ".join(x for x in (fp.get("board"), fp.get("core") or fp.get("cpu_model")) if x) or "unknown CPU"
    n = cores if cores is not None else fp.get("cores")
    feats = ", ".join(fp.get("features") or [k for k, v in (fp.get("isa") or {}).items() if v])
    return f"{head}{f', {n} cores' if n else ''}{f' ({feats})' if feats else ''}"


CPU0 = "/sys/devices/system/cpu/cpu0/"


def cpufreq_khz(name: str) -> int | None:
    """cpu0's cpufreq value ``name`` (``scaling_cur_freq``, ``cpuinfo_max_freq``) in kHz, None when absent."""
    raw = read_text(CPU0 + "cpufreq/" + name)
    return int(raw) if raw and raw.isdigit() else None


def sensors() -> dict:
    """CPU temperature(s), frequency and throttling now. Absent sources are listed in ``unavailable``."""
    out: dict = {"temp_c": None, "cpu_mhz": None, "cpu_max_mhz": None, "governor": None, "throttled": None,
                 "unavailable": []}
    temps = {}
    for zone in sorted(glob.glob("/sys/class/thermal/thermal_zone*")):
        raw = read_text(os.path.join(zone, "temp"))
        if raw and raw.lstrip("-").isdigit():
            kind = read_text(os.path.join(zone, "type")) or os.path.basename(zone)
            temps[kind] = round(int(raw) / 1000.0, 1)
    if temps:
        out["temp_c"] = temps
    else:
        out["unavailable"].append("temperature (/sys/class/thermal)")
    cur, mx = cpufreq_khz("scaling_cur_freq"), cpufreq_khz("cpuinfo_max_freq")
    out["cpu_mhz"] = cur // 1000 if cur is not None else None
    out["cpu_max_mhz"] = mx // 1000 if mx is not None else None
    out["governor"] = read_text(CPU0 + "cpufreq/scaling_governor")
    if out["cpu_mhz"] is None:
        out["unavailable"].append("frequency (cpufreq)")
    throttled = None
    if shutil.which("vcgencmd"):
        try:
            res = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=5)
            if res.returncode == 0 and "=" in res.stdout:
                throttled = res.stdout.strip().split("=", 1)[1]
        except (OSError, subprocess.SubprocessError):
            pass
    if throttled is None:  # Raspberry Pi kernels also expose the firmware's flags in sysfs
        raw = read_text("/sys/devices/platform/soc/soc:firmware/get_throttled")
        if raw:
            throttled = raw if raw.startswith("0x") else f"0x{int(raw, 16):x}" if _hex(raw) else raw
    if throttled is None:
        out["unavailable"].append("throttling flags (vcgencmd get_throttled)")
    else:
        out["throttled"] = throttled
        flags = throttled_flags(throttled)
        if flags is not None:
            out["throttled_now"] = flags
    return out


def _hex(text: str) -> bool:
    try:
        int(text, 16)
        return True
    except ValueError:
        return False


# bits of ``vcgencmd get_throttled`` (Raspberry Pi documentation, "get_throttled")
THROTTLE_BITS = {0: "under-voltage", 1: "arm frequency capped", 2: "throttled", 3: "soft temperature limit",
                 16: "under-voltage occurred", 17: "arm frequency capping occurred", 18: "throttling occurred",
                 19: "soft temperature limit occurred"}


def throttled_flags(value: str) -> list[str] | None:
    """``0x50005`` -> ``["under-voltage", "throttled", "under-voltage occurred", "throttling occurred"]``."""
    n = _int(value)
    if n is None:
        return None
    return [name for bit, name in THROTTLE_BITS.items() if n >> bit & 1]


def max_freq_ghz(cpuinfo_text: str | None = None) -> float | None:
    """cpu0's highest frequency: cpufreq's ``cpuinfo_max_freq``, else the ``cpu MHz`` of /proc/cpuinfo (x86
    virtual machines have no cpufreq). None when neither says."""
    mx = cpufreq_khz("cpuinfo_max_freq")
    if mx:
        return mx / 1e6
    text = read_text("/proc/cpuinfo") if cpuinfo_text is None else cpuinfo_text
    mhz = cpuinfo_mhz(parse_cpuinfo(text or ""))
    return mhz / 1000 if mhz else None


def cache_kib(index: int) -> int | None:
    """Size of cpu0's cache ``index`` in KiB (sysfs ``cache/index<N>/size``: 2 is L2, 3 is L3 on both x86 and
    Arm), None when the kernel does not say."""
    raw = read_text(f"{CPU0}cache/index{index}/size") or ""
    num, unit = raw[:-1] if raw[-1:] in "KM" else raw, raw[-1:] if raw[-1:] in "KM" else ""
    if not raw or not num.isdigit():
        return None
    return int(num) * (1024 if unit == "M" else 1)


def mem_total_gib() -> float | None:
    """``MemTotal`` of /proc/meminfo in GiB."""
    for line in (read_text("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            return int(parts[1]) / 2**20 if len(parts) > 1 and parts[1].isdigit() else None
    return None


def has_dotprod(features) -> bool:
    """Whether feature names (a fingerprint's ``features``, a device profile's) include an int8 dot product."""
    return any(f in features for f in DOTPROD_FEATURES)


def host() -> dict:
    """Fingerprint of the machine this runs on, with the cores the OS reports."""
    fp = fingerprint()
    fp["cores"] = os.cpu_count()
    return fp
