#!/usr/bin/env python3
"""An emulated Raspberry Pi lab: Debian bookworm arm64 and armhf userlands run with qemu-user, reached over SSH.

Raspberry Pi OS is Debian bookworm; its userland runs the same Python wheels a Pi runs. Timings under
emulation mean nothing (600-1000x slower than a Pi); correctness (numerics, the SSH path, fingerprints) does.

    python tools/pi_lab.py build [--arch arm64|armhf|all]   # debootstrap + the Pi-side install; cached
    python tools/pi_lab.py up    [--arch ...]                # start sshd on 127.0.0.1, print how to reach it
    python tools/pi_lab.py status [--json]
    python tools/pi_lab.py down  [--arch ...]                # stop sshd, unmount (checked) -- nothing is deleted
    python tools/pi_lab.py destroy [--arch ...] [--cache]    # down, then delete the extracted tree (and the tarball)

Needs root and ``apt-get install qemu-user-static debootstrap binfmt-support openssh-client``. Everything lives
in ``$EDGECV_PI_LAB`` (default ``~/.cache/edgecv/pi-lab``): ``ARCH.tar.zst`` (a finished userland; ``build``
reuses it, so a rebuild from it takes about a minute), ``run/ARCH`` (the extracted tree ``up`` uses),
``keys/`` (the client key) and ``run/ARCH.json`` (the running lab: port, sshd pid, ssh options).

What each lab is (the install a Pi user does, as docs/targets.md tells them):
- arm64 (64-bit Raspberry Pi OS): ``python3 -m venv ~/edgecv``, ``~/edgecv/bin/pip install numpy ai-edge-litert
  onnxruntime``; ``QEMU_CPU=cortex-a72`` (Pi 4).
- armhf (32-bit Raspberry Pi OS): Debian's ``python3-numpy``, ``python3 -m venv --system-site-packages ~/edgecv``,
  ``~/edgecv/bin/pip install tflite-runtime``; ``QEMU_CPU=cortex-a15`` (qemu-arm has no Cortex-A72 model).
- A Raspberry Pi 4 ``/proc/cpuinfo`` (tests/data/cpuinfo/) is bound over the chroot's (the host's x86 one
  crashes XNNPACK), ``/sys/firmware/devicetree/base/model`` names the board, and ``/sys`` holds static
  Pi-like thermal and cpufreq files (the chroot has no real ones; the values are stand-ins, not readings).
- sshd listens on a free 127.0.0.1 port with generated host keys; user ``pi`` logs in with the lab's key.

``up`` prints ``EDGECV_SSH_OPTIONS=...`` and the ``ssh://`` URI to pass to ``edgecv profile --target``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CPUINFO_DIR = REPO / "tests" / "data" / "cpuinfo"
SUITE = "bookworm"
PACKAGES = "python3,python3-venv,python3-pip,ca-certificates,openssh-server"
ARCHES = {
    "arm64": {"qemu": "qemu-aarch64", "qemu_cpu": "cortex-a72", "cpuinfo": "rpi4_arm64.txt",
              "model": "Raspberry Pi 4 Model B Rev 1.4", "extra": "",
              "venv": "python3 -m venv ~/edgecv",
              "pip": "~/edgecv/bin/pip install numpy ai-edge-litert onnxruntime",
              "check": "import numpy, ai_edge_litert.interpreter, onnxruntime; print(numpy.__version__)"},
    "armhf": {"qemu": "qemu-arm", "qemu_cpu": "cortex-a15", "cpuinfo": "rpi4_armhf.txt",
              "model": "Raspberry Pi 4 Model B Rev 1.1", "extra": ",python3-numpy",
              "venv": "python3 -m venv --system-site-packages ~/edgecv",
              "pip": "~/edgecv/bin/pip install tflite-runtime",
              "check": "import numpy, tflite_runtime.interpreter; print(numpy.__version__)"},
}
# Static stand-ins for the sysfs files a Pi 4 has (a chroot has no /sys of its own).
SYSFS = {
    "class/thermal/thermal_zone0/type": "cpu-thermal",
    "class/thermal/thermal_zone0/temp": "47725",
    "devices/system/cpu/cpu0/cpufreq/scaling_governor": "ondemand",
    "devices/system/cpu/cpu0/cpufreq/scaling_cur_freq": "1500000",
    "devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq": "1500000",
    # the cpuinfo library (XNNPACK, ONNX Runtime) reads these; without them LiteRT runs without XNNPACK
    "devices/system/cpu/possible": "0-3",
    "devices/system/cpu/present": "0-3",
    "devices/system/cpu/online": "0-3",
    **{f"devices/system/cpu/cpu{i}/cpufreq/cpuinfo_max_freq": "1500000" for i in range(1, 4)},
}
USER = "pi"


def lab_dir() -> Path:
    return Path(os.environ.get("EDGECV_PI_LAB") or Path.home() / ".cache" / "edgecv" / "pi-lab")


def tarball(arch: str) -> Path:
    return lab_dir() / f"{arch}.tar.zst"


def root_dir(arch: str) -> Path:
    return lab_dir() / "run" / arch


def state_file(arch: str) -> Path:
    return lab_dir() / "run" / f"{arch}.json"


def log(msg: str) -> None:
    print(f"pi_lab: {msg}", file=sys.stderr, flush=True)


def die(msg: str, code: int = 2) -> None:
    print(f"pi_lab: error: {msg}", file=sys.stderr)
    sys.exit(code)


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, **kw)


def mirror() -> str:
    """The Debian mirror of the host's apt sources (deb822 or one-line format)."""
    for f in sorted(Path("/etc/apt/sources.list.d").glob("*")) + [Path("/etc/apt/sources.list")]:
        try:
            text = f.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.lstrip().startswith("#"):
                continue
            words = line.replace("URIs:", " ").split()
            for w in words:
                if w.startswith("http") and "/debian" in w and "security" not in w:
                    return w
    return "http://deb.debian.org/debian"


# ---- mounts ----------------------------------------------------------------------------------------------

def mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root`` (from /proc/self/mountinfo), deepest first."""
    out = []
    prefix = str(root.resolve())
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            mp = line.split()[4].replace("\\040", " ")
            if mp == prefix or mp.startswith(prefix + "/"):
                out.append(mp)
    return sorted(set(out), key=lambda p: -len(p))


def mount_all(arch: str, root: Path) -> None:
    if mounts_under(root):
        return
    cpuinfo = CPUINFO_DIR / ARCHES[arch]["cpuinfo"]
    run(["mount", "-t", "proc", "proc", str(root / "proc")])  # a fresh proc: never a bind of the host's
    run(["mount", "--bind", str(cpuinfo), str(root / "proc" / "cpuinfo")])
    run(["mount", "-o", "remount,bind,ro", str(root / "proc" / "cpuinfo")])
    run(["mount", "--bind", "/dev", str(root / "dev")])
    run(["mount", "--make-private", str(root / "dev")], stderr=subprocess.DEVNULL)


def unmount_all(root: Path) -> None:
    for _ in range(3):
        for mp in mounts_under(root):
            subprocess.run(["umount", mp], stderr=subprocess.DEVNULL)
        if not mounts_under(root):
            return
        time.sleep(1)
    for mp in mounts_under(root):
        subprocess.run(["umount", "-l", mp])
    left = mounts_under(root)
    if left:
        die(f"still mounted under {root}: {', '.join(left)}; nothing was deleted", 1)


def chroot_env(arch: str) -> dict:
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
            "LANG": "C.UTF-8", "QEMU_CPU": ARCHES[arch]["qemu_cpu"], "DEBIAN_FRONTEND": "noninteractive",
            "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_DEFAULT_TIMEOUT": "180"}


def in_chroot(arch: str, root: Path, script: str, user: str | None = None) -> None:
    if user:
        script = f"su - {user} -c {shlex.quote(script)}"
    run(["chroot", str(root), "/bin/sh", "-ec", script], env=chroot_env(arch))


# ---- build -------------------------------------------------------------------------------------------------

def check_host() -> None:
    if os.geteuid() != 0:
        die("needs root (debootstrap, chroot, mount)")
    for tool in ("debootstrap", "chroot", "mount", "tar", "zstd", "ssh-keygen", "ssh"):
        if shutil.which(tool) is None:
            die(f"`{tool}` is not installed (apt-get install qemu-user-static debootstrap binfmt-support "
                "zstd openssh-client)")


def enable_binfmt(arch: str) -> None:
    misc = Path("/proc/sys/fs/binfmt_misc")
    if not (misc / "register").exists():
        run(["mount", "binfmt_misc", "-t", "binfmt_misc", str(misc)])
    name = ARCHES[arch]["qemu"]
    if not (misc / name).exists():
        run(["update-binfmts", "--enable", name])
    if not (misc / name).exists():
        die(f"binfmt handler {name} is not registered (apt-get install qemu-user-static binfmt-support)")


def build(arch: str, force: bool = False) -> None:
    """Build ``ARCH.tar.zst`` (debootstrap, users, venv, wheels, ssh host keys), unless it exists."""
    out = tarball(arch)
    if out.exists() and not force:
        log(f"{arch}: cached userland {out} ({out.stat().st_size / 2**20:.0f} MiB); --force rebuilds it")
        return
    check_host()
    enable_binfmt(arch)
    spec = ARCHES[arch]
    work = lab_dir() / "build" / arch
    done = lab_dir() / "build" / f"{arch}.debootstrap-done"
    if not done.exists():
        if work.exists():
            unmount_all(work)
            shutil.rmtree(work)
        work.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        log(f"{arch}: debootstrap {SUITE} (10-15 min on 2 cores) ...")
        run(["debootstrap", f"--arch={arch}", f"--include={PACKAGES}{spec['extra']}", SUITE, str(work), mirror()],
            stdout=subprocess.DEVNULL)
        done.touch()
        log(f"{arch}: debootstrap done in {time.monotonic() - t0:.0f} s")
    t0 = time.monotonic()
    certs = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    for c in certs:  # pip inside needs the host's extra CA certificates (an intercepting proxy)
        shutil.copy(c, work / "usr" / "local" / "share" / "ca-certificates" / c.name)
    try:
        mount_all(arch, work)
        in_chroot(arch, work, "update-ca-certificates >/dev/null\n"
                              f"id {USER} >/dev/null 2>&1 || useradd -m -s /bin/bash {USER}\n"
                              "mkdir -p /run/sshd\n")
        log(f"{arch}: {spec['venv']}; {spec['pip']} ...")
        env_line = " ".join(f"{k}={v}" for k, v in chroot_env(arch).items() if k.startswith(("PIP_", "QEMU")))
        in_chroot(arch, work, f"export {env_line}; {spec['venv']} && {spec['pip']} >/dev/null", user=USER)
        in_chroot(arch, work, f"export {env_line}; ~/edgecv/bin/python -c {shlex.quote(spec['check'])}", user=USER)
        in_chroot(arch, work, "apt-get clean; rm -rf /var/lib/apt/lists/* /root/.cache /home/pi/.cache")
    finally:
        unmount_all(work)
    # host keys are made at `up` time (a fresh tree gets fresh keys)
    for k in (work / "etc" / "ssh").glob("ssh_host_*"):
        k.unlink()
    log(f"{arch}: install done in {time.monotonic() - t0:.0f} s; packing {out.name} ...")
    part = out.with_suffix(".zst.part")
    run(["tar", "-C", str(work), "--numeric-owner", "-I", "zstd -T0 -3", "-cf", str(part), "."])
    os.replace(part, out)
    shutil.rmtree(work)
    done.unlink()
    log(f"{arch}: {out} ({out.stat().st_size / 2**20:.0f} MiB)")


# ---- up / down --------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client_key() -> Path:
    key = lab_dir() / "keys" / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgecv-pi-lab", "-f", str(key)],
            stdin=subprocess.DEVNULL)
    return key


def read_state(arch: str) -> dict | None:
    try:
        return json.loads(state_file(arch).read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def up(arch: str) -> dict:
    st = read_state(arch)
    if st and _alive(st["sshd_pid"]):
        return st
    check_host()
    enable_binfmt(arch)
    spec = ARCHES[arch]
    root = root_dir(arch)
    if not (root / "etc" / "os-release").exists():
        if not tarball(arch).exists():
            die(f"no {arch} lab: run `python tools/pi_lab.py build --arch {arch}` first ({tarball(arch)} is missing)")
        t0 = time.monotonic()
        unmount_all(root)
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        run(["tar", "-C", str(root), "--numeric-owner", "-I", "zstd -T0", "-xf", str(tarball(arch))])
        log(f"{arch}: extracted in {time.monotonic() - t0:.0f} s")
    for rel, value in SYSFS.items():
        p = root / "sys" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(value + "\n")
    dt = root / "sys" / "firmware" / "devicetree" / "base"
    dt.mkdir(parents=True, exist_ok=True)
    (dt / "model").write_bytes(spec["model"].encode() + b"\x00")
    key = client_key()
    ssh_dir = root / "home" / USER / ".ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
    shadow = root / "etc" / "shadow"  # "!" locks the account for sshd without PAM: "*" = no password, key only
    shadow.write_text("".join(f"{USER}:*:" + ln[len(USER) + 3:] if ln.startswith(f"{USER}:!:") else ln
                              for ln in shadow.read_text().splitlines(keepends=True)))
    for kind in ("ed25519", "ecdsa", "rsa"):  # host keys made here (ssh-keygen under emulation is slow)
        hk = root / "etc" / "ssh" / f"ssh_host_{kind}_key"
        if not hk.exists():
            run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"root@pi-lab-{arch}", "-f", str(hk)],
                stdin=subprocess.DEVNULL)
    clear_tmp(root)
    mount_all(arch, root)
    port = _free_port()
    in_chroot(arch, root, f"mkdir -p /run/sshd; chown -R {USER}:{USER} /home/{USER}")
    host_pub = (root / "etc" / "ssh" / "ssh_host_ed25519_key.pub").read_text().split()
    known = state_file(arch).with_suffix(".known_hosts")
    known.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    logf = open(state_file(arch).with_suffix(".sshd.log"), "wb")
    argv = ["chroot", str(root), "/usr/sbin/sshd", "-D", "-e", "-p", str(port), "-o", "ListenAddress=127.0.0.1",
            "-o", f"SetEnv=QEMU_CPU={spec['qemu_cpu']}", "-o", "PasswordAuthentication=no",
            "-o", "KbdInteractiveAuthentication=no", "-o", "UsePAM=no"]
    proc = subprocess.Popen(argv, env=chroot_env(arch), stdout=logf, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            unmount_all(root)
            die(f"{arch}: sshd exited: {state_file(arch).with_suffix('.sshd.log').read_text(errors='replace')}", 1)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                unmount_all(root)
                die(f"{arch}: sshd did not listen within 60 s", 1)
            time.sleep(0.3)
    options = ["-F", "/dev/null", "-o", f"IdentityFile={key}", "-o", "IdentitiesOnly=yes",
               "-o", "IdentityAgent=none", "-o", f"UserKnownHostsFile={known}",
               "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes"]
    st = {"arch": arch, "port": port, "sshd_pid": proc.pid, "root": str(root), "known_hosts": str(known),
          "key": str(key), "ssh_options": options, "python": f"/home/{USER}/edgecv/bin/python",
          "uri": f"ssh://{USER}@127.0.0.1:{port}?python=/home/{USER}/edgecv/bin/python",
          "qemu_cpu": spec["qemu_cpu"]}
    state_file(arch).write_text(json.dumps(st, indent=1))
    return st


def clear_tmp(root: Path) -> None:
    """Empty the lab's /tmp, as a Pi's boot does: a run killed before its clean-up leaves its folder there, and the
    tests check that each run leaves none."""
    tmp = root / "tmp"
    if not tmp.is_dir() or tmp.is_symlink():
        return
    for p in tmp.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _lab_pids(root: Path) -> list[int]:
    """Processes whose root directory is the lab's tree (sshd and anything its sessions started)."""
    pids = []
    target = str(root.resolve())
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/root") == target:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def down(arch: str) -> None:
    root = root_dir(arch)
    st = read_state(arch)
    if st and _alive(st["sshd_pid"]):
        try:
            os.killpg(st["sshd_pid"], signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + 10
    while _lab_pids(root) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in _lab_pids(root):  # lab processes only (their root is the lab's tree)
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    time.sleep(0.2)
    if root.exists():
        unmount_all(root)
    if state_file(arch).exists():
        state_file(arch).unlink()


def destroy(arch: str, cache: bool) -> None:
    down(arch)
    root = root_dir(arch)
    if root.exists():
        if mounts_under(root):
            die(f"refusing to delete {root}: still mounted", 1)
        shutil.rmtree(root)
    for p in root.parent.glob(f"{arch}.*"):
        p.unlink()
    if cache and tarball(arch).exists():
        tarball(arch).unlink()


def status() -> dict:
    out = {}
    for arch in ARCHES:
        st = read_state(arch)
        out[arch] = {"cached": tarball(arch).exists(), "extracted": (root_dir(arch) / "etc" / "os-release").exists(),
                     "running": bool(st and _alive(st["sshd_pid"])),
                     "mounts": mounts_under(root_dir(arch)) if root_dir(arch).exists() else []}
        if out[arch]["running"]:
            out[arch].update({"uri": st["uri"], "ssh_options": st["ssh_options"]})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="pi_lab.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("build", "up", "down", "destroy"):
        s = sub.add_parser(name)
        s.add_argument("--arch", choices=(*ARCHES, "all"), default="all")
        if name == "build":
            s.add_argument("--force", action="store_true", help="rebuild even if the tarball exists")
        if name == "destroy":
            s.add_argument("--cache", action="store_true", help="also delete the cached tarball")
    s = sub.add_parser("status")
    s.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    arches = list(ARCHES) if getattr(args, "arch", "all") == "all" else [args.arch]
    if args.cmd == "build":
        for a in arches:
            build(a, args.force)
    elif args.cmd == "up":
        for a in arches:
            st = up(a)
            print(f"# {a} ({st['qemu_cpu']}): sshd on 127.0.0.1:{st['port']}")
            print(f"export EDGECV_SSH_OPTIONS={shlex.quote(shlex.join(st['ssh_options']))}")
            print(f"edgecv profile MODEL.tflite --target {shlex.quote(st['uri'])}")
    elif args.cmd == "down":
        for a in arches:
            down(a)
    elif args.cmd == "destroy":
        for a in arches:
            destroy(a, args.cache)
    else:
        st = status()
        if args.json:
            print(json.dumps(st, indent=1))
        else:
            for a, s in st.items():
                state = "running " + s["uri"] if s["running"] else ("extracted" if s["extracted"] else
                                                                    ("cached" if s["cached"] else "absent"))
                print(f"{a}: {state}" + (f" (mounted: {', '.join(s['mounts'])})" if s["mounts"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
