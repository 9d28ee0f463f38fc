"""The one host/CPU probe (``edgecv/profiling/cpu_probe.py``) on Raspberry Pi /proc/cpuinfo files.

The files in tests/data/cpuinfo/ have the layout the Raspberry Pi kernels print (per-processor blocks, then
``Hardware``/``Revision``/``Serial``/``Model``); the expected names come from Arm's part numbers (Cortex-A72 is
0xd08, Cortex-A76 0xd0b: Arm Technical Reference Manuals, MIDR_EL1.PartNum) and the boards' specifications
(the Pi 4's Cortex-A72 has no dot product or fp16 arithmetic; the Pi 5's Cortex-A76 has both).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgecv.profiling import cpu_probe

DATA = Path(__file__).resolve().parents[1] / "data" / "cpuinfo"
RUNNER_DIR = Path(cpu_probe.__file__).parent


@pytest.mark.parametrize("name, machine, board, core, part, features", [
    ("rpi4_arm64", "aarch64", "Raspberry Pi 4 Model B Rev 1.4", "Cortex-A72", "0xd08", ["neon"]),
    ("rpi4_armhf", "armv7l", "Raspberry Pi 4 Model B Rev 1.1", "Cortex-A72", "0xd08", ["neon"]),
    ("rpi5_arm64", "aarch64", "Raspberry Pi 5 Model B Rev 1.0", "Cortex-A76", "0xd0b", ["neon", "asimddp", "asimdhp"]),
])
def test_fingerprint_names_board_and_core(name, machine, board, core, part, features):
    fp = cpu_probe.fingerprint((DATA / f"{name}.txt").read_text(), machine, model_files=())
    assert fp["board"] == board and fp["core"] == core and fp["cpu_part"] == part
    assert fp["features"] == features
    assert fp["cpuinfo_processors"] == 4
    # the kernel's Hardware line (BCM2835 on a Pi 4 with the 64-bit kernel) is kept, but never names the CPU
    assert "BCM" not in cpu_probe.describe(fp, 4)
    assert cpu_probe.describe(fp, 4) == f"{board}, {core}, 4 cores ({', '.join(features)})"


def test_board_from_device_tree_when_cpuinfo_has_no_model_line(tmp_path):
    text = "\n".join(ln for ln in (DATA / "rpi4_arm64.txt").read_text().splitlines() if not ln.startswith("Model"))
    dt = tmp_path / "model"
    dt.write_bytes(b"Raspberry Pi 4 Model B Rev 1.5\x00")
    fp = cpu_probe.fingerprint(text, "aarch64", model_files=(str(tmp_path / "absent"), str(dt)))
    assert fp["board"] == "Raspberry Pi 4 Model B Rev 1.5" and fp["core"] == "Cortex-A72"


def test_big_little_lists_each_core_type():
    block = "processor\t: {i}\nFeatures\t: fp asimd asimddp\nCPU implementer\t: 0x41\nCPU part\t: {p}\n\n"
    text = "".join(block.format(i=i, p="0xd05" if i < 6 else "0xd0b") for i in range(8))
    fp = cpu_probe.fingerprint(text, "aarch64", model_files=())
    assert fp["core"] == "6x Cortex-A55 + 2x Cortex-A76" and fp["cpu_part"] == "0xd05,0xd0b"


def test_host_fingerprint_matches_proc_cpuinfo():
    text = Path("/proc/cpuinfo").read_text()
    fp = cpu_probe.host()
    m = re.search(r"^model name\s*:\s*(.*)$", text, re.M)
    if m:  # x86: the CPU's own name
        assert fp["cpu_model"] == m.group(1).strip()
    flags = set(re.search(r"^(?:flags|Features)\s*:\s*(.*)$", text, re.M).group(1).split())
    for name in fp["features"]:
        assert set((cpu_probe.ISA_X86 | cpu_probe.ISA_ARM)[name]) & flags
    assert fp["cores"] == os.cpu_count()


def test_one_set_of_isa_names_for_runner_devices_and_targets():
    from edgecv.devices.profile import FEATURES
    from edgecv.profiling.runner import environment

    assert set(FEATURES) <= set(cpu_probe.ISA_NAMES)
    env = environment()
    assert set(env["isa"]) <= set(cpu_probe.ISA_NAMES) and env["features"] == cpu_probe.host()["features"]


def test_runner_runs_with_only_its_companion_file(tmp_path):
    """On a target the runner lives in a folder with cpu_probe.py and nothing of edgecv."""
    for f in ("runner.py", "cpu_probe.py"):
        (tmp_path / f).write_bytes((RUNNER_DIR / f).read_bytes())
    code = ("import sys; sys.path[:] = [p for p in sys.path if 'edgecv' not in p and p not in ('', '.')]; "
            "import runpy; g = runpy.run_path(sys.argv[1]); import json; "
            "print(json.dumps(g['environment']()['features']))")
    res = subprocess.run([sys.executable, "-I", "-c", code, str(tmp_path / "runner.py")], capture_output=True,
                         text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(cpu_probe.host()["features"]).replace("'", '"')
    source = (RUNNER_DIR / "cpu_probe.py").read_text()
    imports = re.findall(r"^\s*(?:import|from)\s+([\w.]+)", source, re.M)
    assert not [m for m in imports if m.split(".")[0] in ("edgecv", "numpy")], imports


def test_throttled_bits_as_documented():
    # raspberrypi/documentation, vcgencmd get_throttled: bit 0 under-voltage, 2 throttled, 16/18 occurred
    assert cpu_probe.throttled_flags("0x50005") == ["under-voltage", "throttled", "under-voltage occurred",
                                                    "throttling occurred"]
    assert cpu_probe.throttled_flags("0x0") == []


def test_sensors_report_what_is_missing():
    s = cpu_probe.sensors()
    if not Path("/sys/class/thermal/thermal_zone0/temp").exists():
        assert s["temp_c"] is None and any("temperature" in u for u in s["unavailable"])
    else:
        assert s["temp_c"]


def test_clock_and_dot_product_from_the_probe_for_every_caller():
    """runner.py (env cpu_mhz), the host device profile (freq_ghz) and the ONNX int8 check read /proc/cpuinfo
    through the probe: the clock from the first ``cpu MHz`` line (x86 only), dot product from DOTPROD_FEATURES."""
    x86 = ("processor\t: 0\nmodel name\t: Some CPU\ncpu MHz\t\t: 2599.998\nflags\t\t: fpu avx2 fma avx_vnni\n\n"
           "processor\t: 1\nmodel name\t: Some CPU\ncpu MHz\t\t: 1200.000\nflags\t\t: fpu avx2 fma avx_vnni\n")
    assert cpu_probe.cpuinfo_mhz(cpu_probe.parse_cpuinfo(x86)) == 2599.998
    fp = cpu_probe.fingerprint(x86, "x86_64", model_files=())
    assert cpu_probe.has_dotprod(fp["features"]) and fp["features"] == ["avx2", "fma", "avx_vnni"]
    for name, dot in (("rpi4_arm64", False), ("rpi4_armhf", False), ("rpi5_arm64", True)):
        text = (DATA / f"{name}.txt").read_text()
        assert cpu_probe.cpuinfo_mhz(cpu_probe.parse_cpuinfo(text)) is None  # Arm kernels print no clock
        assert cpu_probe.has_dotprod(cpu_probe.fingerprint(text, "aarch64", model_files=())["features"]) is dot


def test_host_profile_and_runner_read_the_same_cpu():
    from edgecv.devices.profile import load_profile
    from edgecv.profiling.runner import environment

    host = cpu_probe.host()
    cluster = load_profile("host").clusters[0]
    text = Path("/proc/cpuinfo").read_text()
    flags = set((re.search(r"^(?:flags|Features)\s*:(.*)$", text, re.M) or re.match("()", "")).group(1).split())
    assert cluster.dotprod == bool(flags & {"asimddp", "avx512_vnni", "avx_vnni"})  # read here, by hand
    assert set(cluster.features) - {"neon"} <= set(host["features"])
    env = environment()
    m = re.search(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M)
    if cpu_probe.sensors()["cpu_mhz"] is None and host["machine"] in cpu_probe.X86_MACHINES:
        assert env["cpu_mhz"] == (round(float(m.group(1))) if m else None)
    if not Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").exists() and m:
        assert cluster.freq_ghz == round(float(m.group(1)) / 1000, 3)


def test_cache_sizes_and_clock_from_a_sysfs_tree(tmp_path, monkeypatch):
    """sysfs prints cache sizes as ``512K`` (Arm, x86 L2) or ``4M``; cpufreq prints kHz."""
    cpu0 = tmp_path / "cpu0"
    for index, size in ((0, "48K"), (2, "512K"), (3, "4M"), (4, "")):
        (cpu0 / "cache" / f"index{index}").mkdir(parents=True)
        (cpu0 / "cache" / f"index{index}" / "size").write_text(size + "\n")
    (cpu0 / "cpufreq").mkdir()
    (cpu0 / "cpufreq" / "cpuinfo_max_freq").write_text("1800000\n")
    monkeypatch.setattr(cpu_probe, "CPU0", f"{cpu0}/")
    assert [cpu_probe.cache_kib(i) for i in (0, 2, 3, 4, 5)] == [48, 512, 4096, None, None]
    assert cpu_probe.max_freq_ghz("") == 1.8  # a Pi 4 at its stock 1.8 GHz
    (cpu0 / "cpufreq" / "cpuinfo_max_freq").unlink()
    assert cpu_probe.max_freq_ghz("processor\t: 0\ncpu MHz\t\t: 2599.998\n") == pytest.approx(2.599998)
    assert cpu_probe.max_freq_ghz((DATA / "rpi4_arm64.txt").read_text()) is None  # Arm kernels print no clock


def test_host_caches_and_memory_agree_with_libc():
    """glibc's sysconf is an independent reader (x86: CPUID for the caches; the kernel's page count for RAM)."""
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert cpu_probe.mem_total_gib() == pytest.approx(pages / 2**30, rel=1e-3)
    for index, name in ((2, "LEVEL2_CACHE_SIZE"), (3, "LEVEL3_CACHE_SIZE")):
        r = subprocess.run(["getconf", name], capture_output=True, text=True)
        ours = cpu_probe.cache_kib(index)
        if r.returncode != 0 or not r.stdout.strip().isdigit() or not int(r.stdout) or ours is None:
            continue  # this libc or kernel does not say
        assert ours * 1024 == int(r.stdout), (index, ours, r.stdout)
