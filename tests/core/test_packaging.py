"""The wheel is a real install: it carries the architecture tables and device profiles inside the package."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import REPO


def test_wheel_carries_models_and_device_profiles(tmp_path):
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), REPO],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    (wheel,) = tmp_path.glob("edgecv-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    tables = {p.name for p in Path(REPO, "models").glob("*.toml")}
    assert tables >= {"mobilenet_v1.toml", "mobilenet_v2.toml", "efficientnet.toml", "efficientnet_lite.toml"}
    assert {f"edgecv/models/{t}" for t in tables} <= names
    profiles = {p.name for p in Path(REPO, "device_profiles").glob("*.toml")}
    assert {f"edgecv/device_profiles/{p}" for p in profiles} <= names
    assert "edgecv/cli/__init__.py" in names
    entry = [n for n in names if n.endswith("entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry[0]).decode()
    assert "edgecv = edgecv.cli:main" in text

    # Installed from the wheel (no source tree beside it), the package finds its tables.
    target = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                          str(wheel)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    code = ("import edgecv.fileio as f, edgecv.builders.arch as a; "
            "print(f.data_dir('models')); print(sorted(a.families()))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert res.returncode == 0, res.stderr
    where, fams = res.stdout.splitlines()
    assert where.startswith(str(target))
    assert fams == "['efficientnet', 'efficientnet_lite', 'mobilenet_v1', 'mobilenet_v2']"
