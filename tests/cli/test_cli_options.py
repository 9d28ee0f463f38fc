"""Shared CLI options: the same option name means the same thing in every command (edgecv.cli.options)."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from edgecv.cli import COMMANDS


def _commands() -> dict[str, click.Command]:
    out = {}
    for name, target in COMMANDS.items():
        module, attr = target.split(":")
        out[name] = getattr(importlib.import_module(module), attr)
    return out


def _options(cmd: click.Command) -> dict[str, click.Option]:
    return {o: p for p in cmd.params if isinstance(p, click.Option) for o in p.opts}


# option -> (default, every spelling it must have wherever it appears)
SHARED = {
    "--samples": (100, {"--samples"}),
    "--verify-samples": (16, {"--verify-samples"}),
    "--calib": (None, {"--calib"}),
    "--threads": (None, {"--threads"}),
    "--output-dir": (None, {"-o", "--output-dir"}),
    "-o": (None, {"-o", "--output-dir"}),
}


def test_shared_options_mean_the_same_everywhere():
    seen: dict[str, list[tuple[str, click.Option]]] = {}
    for name, cmd in _commands().items():
        for opt, p in _options(cmd).items():
            if opt in SHARED:
                seen.setdefault(opt, []).append((name, p))
    for opt, (default, spellings) in SHARED.items():
        assert opt in seen, opt
        for name, p in seen[opt]:
            assert spellings <= set(p.opts), (name, opt, p.opts)
            if default is not None:
                assert p.default == default, (name, opt, p.default)
        # one type and one help stem per option (the help may add the command's own default in brackets)
        types = {type(p.type) for _, p in seen[opt]}
        stems = {re.split(r"[\[(]", p.help or "")[0].strip() for _, p in seen[opt]}
        assert len(types) == 1 and len(stems) == 1, (opt, types, stems)
    # every command that writes files takes -o/--output-dir
    for name in ("build", "quantize", "sweep", "demo"):
        assert "--output-dir" in _options(_commands()[name]), name
    # calibration and verification where conversions happen
    for name in ("quantize", "sweep", "demo"):
        assert {"--samples", "--verify-samples"} <= set(_options(_commands()[name])), name


def _edgecv(*args: str) -> subprocess.CompletedProcess:
    code = "import sys; from edgecv.cli import main; sys.argv[0] = 'edgecv'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


@pytest.mark.parametrize("spelling", ["-o", "--output-dir", "--output"])
def test_quantize_output_spellings(tmp_path: Path, spelling: str):
    """``--output`` (the old spelling of ``edgecv quantize``) still works beside ``-o/--output-dir``."""
    out = tmp_path / "out"
    p = _edgecv("quantize", "mobilenet_v1_0.25_32", "--precision", "float32", "--no-verify", "-q", spelling, str(out))
    assert p.returncode == 0, p.stderr
    assert sorted(f.name for f in out.iterdir()) == ["mobilenet_v1_0.25_32_float32.tflite",
                                                     "mobilenet_v1_0.25_32_float32.tflite.json"]


def test_bad_value_names_the_option(tmp_path: Path):
    p = _edgecv("sweep", "--verify-samples", "0", "-o", str(tmp_path / "s"))
    assert p.returncode == 2 and "--verify-samples" in p.stderr and "0" in p.stderr, p.stderr
    assert len([ln for ln in p.stderr.splitlines() if ln.strip()]) == 1 and not (tmp_path / "s").exists()
