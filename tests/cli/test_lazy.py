"""Lazy package attributes (edgecv.lazy): importing a package is light, its lazy names resolve on use."""

from __future__ import annotations

import subprocess
import sys

import pytest

PACKAGES = {
    "edgecv": ["list_models", "create_model", "get_config", "model_cost"],
    "edgecv.conversion": ["quantize", "ConversionResult", "sample_images", "sqnr_db", "run_artifact"],
    "edgecv.report": ["render_report", "write_report", "pareto_front"],
    "edgecv.devices": ["predict_profile"],
}


def test_importing_packages_imports_no_tensorflow():
    code = ("import sys, edgecv, edgecv.conversion, edgecv.report, edgecv.devices; "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_lazy_names_resolve_and_unknown_names_fail(package):
    import importlib

    mod = importlib.import_module(package)
    for name in PACKAGES[package]:
        value = getattr(mod, name)
        assert getattr(value, "__name__", name) == name
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'no_such_name'"):
        mod.no_such_name
    assert not hasattr(mod, "no_such_name")
