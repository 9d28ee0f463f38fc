"""Device profiles: one TOML file per device in ``device_profiles/``, loaded into frozen dataclasses.

Every figure carries its unit in its name and a source (``source`` keys point into the file's
``[sources]`` table). The ``[prediction]`` table holds the coefficients the latency model uses, fitted by
``tools/calibrate_devices.py`` on the ``[[anchors]]`` (published measurements) of the same file, or
priors when a device has too few anchors. ``host`` is completed from the running machine at load time.

Errors name the file and the field: ``device_profiles/rpi4.toml: clusters[0].freq_ghz: expected a
number > 0. Received: 'fast'``.
"""

from __future__ import annotations

import math
import os
import platform
import re
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from edgecv.errors import EdgecvError, suggest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

SCHEMA = "edgecv.device/v1"
KINDS = ("linux-sbc", "android", "host")
# The ISA features a profile may list: the ones the latency model reads, named as the one CPU probe names them
# (a subset of edgecv.profiling.cpu_probe.ISA_NAMES; dot product = cpu_probe.DOTPROD_FEATURES).
FEATURES = ("neon", "asimddp", "asimdhp", "i8mm", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni")
# In-order cores: they reach a different fraction of peak than out-of-order ones ("similar cores" for priors).
LITTLE_CORES = ("cortex-a7", "cortex-a53", "cortex-a55", "cortex-a510")


def is_little(cluster: "Cluster") -> bool:
    """In-order core (Cortex-A7/A53/A55/A510), named alone or in brackets: ``kryo-385-silver (cortex-a55)``."""
    return any(re.search(rf"(?<![\w-]){c}(?![\w])", cluster.core.lower()) for c in LITTLE_CORES)


class ProfileError(EdgecvError):
    """A malformed device profile: names the file and the field."""


@dataclass(frozen=True)
class Cluster:
    core: str
    count: int
    freq_ghz: float
    features: tuple[str, ...]
    fp32_flop_per_cycle: float
    fp16_flop_per_cycle: float  # 0: no fp16 arithmetic
    int8_op_per_cycle: float  # 2 ops per MAC; 4x fp32 with sdot, ~2x without
    l1d_kib: int = 0
    l2_kib: int = 0
    source: str = ""

    @property
    def dotprod(self) -> bool:
        from edgecv.profiling.cpu_probe import has_dotprod

        return has_dotprod(self.features)

    @property
    def fp16_arith(self) -> bool:
        return self.fp16_flop_per_cycle > 0

    def peak_gmacs(self, dtype: str) -> float:
        """Peak multiply-accumulates per second of one core, in G (2 FLOP or 2 ops per MAC)."""
        per_cycle = {"float32": self.fp32_flop_per_cycle, "float16": self.fp16_flop_per_cycle,
                     "int8": self.int8_op_per_cycle}[dtype]
        return self.freq_ghz * per_cycle / 2


@dataclass(frozen=True)
class Memory:
    type: str
    bandwidth_gbs: float  # sustained DRAM bandwidth the bandwidth bound uses
    bandwidth_kind: str  # meas | spec | der | prior
    ram_gib: tuple[float, ...]  # the sizes sold; fits_ram checks the smallest
    os_reserved_mib: float  # RAM the OS and other processes keep (prior)
    runtime_baseline_mib: float  # interpreter + delegate resident memory beside arena and weights
    l3_kib: int = 0
    source: str = ""


@dataclass(frozen=True)
class Power:
    idle_w: float | None = None
    active_w: float | None = None
    source: str = ""


@dataclass(frozen=True)
class Coefficients:
    """The latency model's coefficients (see ``edgecv.devices.model``)."""

    runtime: str  # runtime family of the anchors they were fitted on
    method: str  # nnls (fitted on this device's anchors) | prior (spec + efficiencies of similar cores)
    conv_fp32_peak_fraction: float  # dense conv, pointwise and fully connected, fp32
    dw_fp32_peak_fraction: float
    conv_int8_peak_fraction: float
    dw_int8_peak_fraction: float
    elementwise_bytes_per_cycle: float  # per core, elementwise and pooling
    overhead_us_per_op: float
    thread_efficiency: float  # each extra thread adds this fraction of its core's peak
    loo_mdape: float  # leave-one-out median absolute percentage error (fraction); the band
    anchors_fitted: int = 0
    source: str = ""


@dataclass(frozen=True)
class Anchor:
    model: str  # registry name: mobilenet_v1_0.50_224
    precision: str
    threads: int
    runtime: str
    latency_ms: float
    source: str = ""
    note: str = ""


@dataclass(frozen=True)
class DeviceProfile:
    id: str
    name: str
    kind: str
    soc: str
    runtime: str
    confidence: str
    clusters: tuple[Cluster, ...]
    memory: Memory
    power: Power
    prediction: Coefficients
    anchors: tuple[Anchor, ...] = ()
    sources: dict[str, str] = field(default_factory=dict)
    path: str = ""

    @property
    def cores(self) -> int:
        return sum(c.count for c in self.clusters)

    def cores_by_speed(self) -> list[Cluster]:
        """One entry per core, fastest first (threads are placed on the fastest cores)."""
        out: list[Cluster] = []
        for c in sorted(self.clusters, key=lambda c: -c.peak_gmacs("float32")):
            out += [c] * c.count
        return out

    @property
    def dotprod(self) -> bool:
        return self.cores_by_speed()[0].dotprod

    @property
    def fp16_arith(self) -> bool:
        return self.cores_by_speed()[0].fp16_arith

    @property
    def core_group(self) -> str:
        return "little" if is_little(self.cores_by_speed()[0]) else "big"

    @property
    def ram_bytes(self) -> int:
        return int(min(self.memory.ram_gib) * 2**30)

    @property
    def usable_ram_bytes(self) -> int:
        return max(0, self.ram_bytes - int(self.memory.os_reserved_mib * 2**20))

    def peak_gmacs(self, dtype: str, threads: int | None = None) -> float:
        cores = self.cores_by_speed()[: threads or self.cores]
        return sum(c.peak_gmacs(dtype) for c in cores)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        d = asdict(self)
        d["cores"] = self.cores
        d["derived"] = {
            "peak_fp32_gflops": round(2 * self.peak_gmacs("float32"), 2),
            "peak_int8_gops": round(2 * self.peak_gmacs("int8"), 2),
            "peak_fp16_gflops": round(2 * self.peak_gmacs("float16"), 2),
            "dotprod": self.dotprod, "fp16_arith": self.fp16_arith,
        }
        return d


# --- loading and validation --------------------------------------------------------------------------

class _Reader:
    """Typed access to a TOML table with errors that name the file and the field path."""

    def __init__(self, path: Path, data: dict, where: str = ""):
        self.path, self.data, self.where = path, data, where

    def fail(self, key: str, msg: str, value: Any = None, show_value: bool = True):
        at = f"{self.where}.{key}" if self.where else key
        received = f" Received: {value!r}" if show_value else ""
        raise ProfileError(f"{_show(self.path)}: {at}: {msg}.{received}")

    def sub(self, key: str, required: bool = True) -> "_Reader":
        v = self.data.get(key)
        if v is None and not required:
            return _Reader(self.path, {}, self._at(key))
        if not isinstance(v, dict):
            self.fail(key, "expected a table", v, show_value=v is not None)
        return _Reader(self.path, v, self._at(key))

    def items(self, key: str) -> list["_Reader"]:
        v = self.data.get(key, [])
        if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
            self.fail(key, "expected an array of tables ([[...]])", v)
        return [_Reader(self.path, x, f"{self._at(key)}[{i}]") for i, x in enumerate(v)]

    def _at(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def str(self, key: str, default: str | None = None, choices: tuple[str, ...] | None = None) -> str:
        v = self.data.get(key, default)
        if v is None:
            self.fail(key, "missing (a string is required)", show_value=False)
        if not isinstance(v, str) or not v.strip():
            self.fail(key, "expected a non-empty string", v)
        if choices and v not in choices:
            self.fail(key, f"expected one of {', '.join(choices)}", v)
        return v

    def num(self, key: str, default: float | None = None, minimum: float = 0.0, strict: bool = True,
            maximum: float | None = None, optional: bool = False) -> float | None:
        v = self.data.get(key, default)
        if v is None:
            if optional:
                return None
            self.fail(key, "missing (a number is required)", show_value=False)
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ok = ok and (v > minimum if strict else v >= minimum) and (maximum is None or v <= maximum)
        if not ok:
            rng = f"{'>' if strict else '>='} {minimum:g}" + (f" and <= {maximum:g}" if maximum is not None else "")
            self.fail(key, f"expected a number {rng}", v)
        return float(v)

    def int(self, key: str, default: int | None = None, minimum: int = 1) -> int:
        v = self.data.get(key, default)
        if v is None:
            self.fail(key, "missing (an integer is required)", show_value=False)
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
            self.fail(key, f"expected an integer >= {minimum}", v)
        return int(v)

    def list(self, key: str, kind: type, default: list | None = None) -> list:
        v = self.data.get(key, default)
        if v is None:
            self.fail(key, "missing (an array is required)", show_value=False)
        if not isinstance(v, list) or not all(isinstance(x, kind) and not isinstance(x, bool) for x in v):
            self.fail(key, f"expected an array of {kind.__name__}", v)
        return v


def _show(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def parse_profile(path: Path, data: dict) -> DeviceProfile:
    """Validate a profile's TOML data and return the frozen record (errors name file and field)."""
    r = _Reader(path, data)
    schema = r.str("schema")
    if schema != SCHEMA:
        r.fail("schema", f"expected {SCHEMA!r}", schema)
    pid = r.str("id")
    if pid != path.stem:
        r.fail("id", f"must equal the file name {path.stem!r}", pid)
    kind = r.str("kind", choices=KINDS)
    clusters = []
    for c in r.items("clusters"):
        feats = c.list("features", str, [])
        for f in feats:
            if f not in FEATURES:
                c.fail("features", f"unknown feature {f!r} (known: {', '.join(FEATURES)})", feats)
        clusters.append(Cluster(
            core=c.str("core"), count=c.int("count"), freq_ghz=c.num("freq_ghz", maximum=6.0),
            features=tuple(feats), fp32_flop_per_cycle=c.num("fp32_flop_per_cycle"),
            fp16_flop_per_cycle=c.num("fp16_flop_per_cycle", 0.0, strict=False),
            int8_op_per_cycle=c.num("int8_op_per_cycle"),
            l1d_kib=c.int("l1d_kib", 0, minimum=0), l2_kib=c.int("l2_kib", 0, minimum=0),
            source=c.str("source")))
    if not clusters:
        r.fail("clusters", "at least one [[clusters]] table is required", show_value=False)
    m = r.sub("memory")
    ram = m.list("ram_gib", (int, float))
    if not ram or any(x <= 0 for x in ram):
        m.fail("ram_gib", "expected a non-empty array of sizes > 0", ram)
    memory = Memory(type=m.str("type"), bandwidth_gbs=m.num("bandwidth_gbs"),
                    bandwidth_kind=m.str("bandwidth_kind", choices=("meas", "spec", "der", "prior")),
                    ram_gib=tuple(float(x) for x in ram), os_reserved_mib=m.num("os_reserved_mib", strict=False),
                    runtime_baseline_mib=m.num("runtime_baseline_mib", strict=False),
                    l3_kib=m.int("l3_kib", 0, minimum=0), source=m.str("source"))
    pw = r.sub("power", required=False)
    power = Power(idle_w=pw.num("idle_w", optional=True), active_w=pw.num("active_w", optional=True),
                  source=pw.str("source", "none found") if pw.data else "none found")
    p = r.sub("prediction")
    coeffs = Coefficients(
        runtime=p.str("runtime"), method=p.str("method", choices=("nnls", "prior")),
        conv_fp32_peak_fraction=p.num("conv_fp32_peak_fraction", maximum=1.5),
        dw_fp32_peak_fraction=p.num("dw_fp32_peak_fraction", maximum=1.5),
        conv_int8_peak_fraction=p.num("conv_int8_peak_fraction", maximum=1.5),
        dw_int8_peak_fraction=p.num("dw_int8_peak_fraction", maximum=1.5),
        elementwise_bytes_per_cycle=p.num("elementwise_bytes_per_cycle"),
        overhead_us_per_op=p.num("overhead_us_per_op", strict=False),
        thread_efficiency=p.num("thread_efficiency", strict=False, maximum=1.0),
        loo_mdape=p.num("loo_mdape", strict=False, maximum=10.0),
        anchors_fitted=p.int("anchors_fitted", 0, minimum=0), source=p.str("source"))
    anchors = []
    for a in r.items("anchors"):
        anchors.append(Anchor(model=a.str("model"), precision=a.str("precision", choices=("float32", "float16", "int8")),
                              threads=a.int("threads"), runtime=a.str("runtime"),
                              latency_ms=a.num("latency_ms"), source=a.str("source"), note=a.data.get("note", "")))
    srcs = data.get("sources", {})
    if not isinstance(srcs, dict) or not all(isinstance(v, str) for v in srcs.values()):
        r.fail("sources", "expected a table of id = \"text\"", srcs)
    return DeviceProfile(id=pid, name=r.str("name"), kind=kind, soc=r.str("soc"), runtime=r.str("runtime"),
                         confidence=r.str("confidence", choices=("high", "medium", "low")),
                         clusters=tuple(clusters), memory=memory, power=power, prediction=coeffs,
                         anchors=tuple(anchors), sources=dict(srcs), path=str(path))


def profiles_dir() -> Path:
    env = os.environ.get("EDGECV_DEVICE_PROFILES")
    if env:
        return Path(env)
    from edgecv.fileio import data_dir

    return data_dir("device_profiles")


def load_profile_file(path: str | os.PathLike) -> DeviceProfile:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{_show(path)}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ProfileError(f"{_show(path)}: cannot read: {exc.strerror}") from None
    prof = parse_profile(path, data)
    if prof.id == "host":
        prof = fill_host(prof)
    return prof


def device_ids(directory: Path | None = None) -> list[str]:
    d = directory or profiles_dir()
    return sorted(p.stem for p in d.glob("*.toml"))


@lru_cache(maxsize=64)
def _load_cached(path: str, mtime: float) -> DeviceProfile:
    return load_profile_file(path)


def load_profile(device: str, directory: Path | None = None) -> DeviceProfile:
    """The profile of ``device`` (an id such as ``rpi4``); unknown ids suggest close names."""
    d = directory or profiles_dir()
    if not isinstance(device, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", device or ""):
        raise EdgecvError(f"--device: expected a device id such as rpi4. Received: {device!r}")
    path = d / f"{device}.toml"
    if not path.is_file():
        ids = device_ids(d)
        hint = suggest(device, ids) or f" Known devices: {', '.join(ids)}."
        raise EdgecvError(f"--device: unknown device {device!r}.{hint}")
    return _load_cached(str(path), path.stat().st_mtime)


def load_all(directory: Path | None = None) -> list[DeviceProfile]:
    return [load_profile(i, directory) for i in device_ids(directory)]


# --- host ------------------------------------------------------------------------------------------

def fill_host(prof: DeviceProfile) -> DeviceProfile:
    """Replace the host template's CPU and memory figures with the running machine's."""
    from edgecv.profiling import cpu_probe

    cpuinfo = cpu_probe.read_text("/proc/cpuinfo") or ""
    fp = cpu_probe.fingerprint(cpuinfo)
    ncores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    isa = fp["isa"]
    model_name = ", ".join(x for x in (fp["board"], fp["core"]) if x) or platform.machine()
    template = prof.clusters[0]
    freq = cpu_probe.max_freq_ghz(cpuinfo) or template.freq_ghz
    feats = [f for f in FEATURES if isa.get(f)]  # the probe's feature names (one set: cpu_probe.ISA_NAMES)
    if platform.machine().lower() not in cpu_probe.X86_MACHINES:
        feats = ["neon"] + [f for f in feats if f != "neon"]
        fp32 = 8.0
        fp16 = 16.0 if isa.get("asimdhp") else 0.0
        int8 = 32.0 if isa.get("asimddp") else 16.0
    else:
        lanes = 16 if isa.get("avx512f") else 8 if isa.get("avx2") else 4
        fp32 = float(lanes * 2 * (2 if isa.get("fma") else 1)) if isa.get("fma") else float(lanes * 2)
        fp16 = 0.0
        int8 = fp32 * (4 if cpu_probe.has_dotprod(fp["features"]) else 2)
    cluster = replace(template, core=model_name, count=ncores, freq_ghz=round(freq, 3), features=tuple(feats),
                      fp32_flop_per_cycle=fp32, fp16_flop_per_cycle=fp16, int8_op_per_cycle=int8,
                      l2_kib=cpu_probe.cache_kib(2) or template.l2_kib,
                      source="read at load time from /proc/cpuinfo and /sys (FLOP/cycle derived from the ISA flags)")
    gib = cpu_probe.mem_total_gib()
    ram = (gib,) if gib else prof.memory.ram_gib
    memory = replace(prof.memory, ram_gib=tuple(round(x, 2) for x in ram),
                     l3_kib=cpu_probe.cache_kib(3) or prof.memory.l3_kib)
    return replace(prof, name=f"This machine ({model_name}, {ncores} cores)", clusters=(cluster,), memory=memory,
                   soc=platform.machine() or prof.soc)


def field_names(cls) -> list[str]:
    return [f.name for f in fields(cls)]
