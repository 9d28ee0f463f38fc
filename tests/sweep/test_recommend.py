"""edgecv recommend: constraints met, best published accuracy first, the binding constraint named."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "EDGECV_DEBUG": ""}


def edgecv(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgecv", *args], capture_output=True, text=True, env=ENV,
                          timeout=300)


def paper_top1() -> dict[str, float]:
    """Registry name -> published top-1, read straight from the CSV (independent of edgecv.report)."""
    out = {}
    with open(REPO / "models" / "paper_figures.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            if r["family"] == "efficientnet":
                name = f"efficientnet_{r['variant']}"
            else:
                name = f"{r['family']}_{float(r['width']):.2f}_{int(r['resolution'])}"
            out[name] = float(r["imagenet_top1"])
    return out


def run_json(*args: str) -> tuple[int, dict]:
    """The Python API with the CLI's options (in-process: the CLI itself is tested below)."""
    from edgecv.cli.options import to_jsonable
    from edgecv.sweep.recommend import recommend

    kw = dict(zip(args[::2], args[1::2]))
    rec = recommend(kw["--device"], float(kw["--budget-ms"]),
                    max_memory_mb=float(kw["--max-memory-mb"]) if "--max-memory-mb" in kw else None,
                    min_top1=float(kw["--min-top1"]) if "--min-top1" in kw else None,
                    precision=kw.get("--precision"))
    return (0 if rec.fits else 1), to_jsonable(rec)


def test_cli_json_is_the_api_result():
    r = edgecv("recommend", "--device", "rpi4", "--budget-ms", "20", "--precision", "int8", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == run_json("--device", "rpi4", "--budget-ms", "20", "--precision", "int8")[1]


def test_fits_meet_the_budget_best_published_accuracy_first():
    code, rec = run_json("--device", "rpi4", "--budget-ms", "30")
    assert code == 0 and rec["fits"]
    pub = paper_top1()
    top1 = []
    for c in rec["fits"]:
        assert c["latency_ms"] <= 30
        assert c["fits_ram"]
        assert c["published_top1"] == pub.get(c["model"])  # only exact reference architectures get a figure
        top1.append(-1 if c["published_top1"] is None else c["published_top1"])
    assert top1 == sorted(top1, reverse=True)
    # int8 of a model is never predicted slower than its float32 on the Cortex-A72 (XNNPACK int8 kernels)
    lat = {(c["model"], c["precision"]): c["latency_ms"] for c in rec["fits"]}
    for (m, p), v in lat.items():
        if p == "float32" and (m, "int8") in lat:
            assert lat[(m, "int8")] < v
    # a bigger budget admits a superset
    _, wide = run_json("--device", "rpi4", "--budget-ms", "60")
    assert {(c["model"], c["precision"]) for c in rec["fits"]} < {(c["model"], c["precision"]) for c in wide["fits"]}


def test_precision_and_memory_and_top1_filters():
    _, rec = run_json("--device", "pixel4", "--budget-ms", "50", "--precision", "int8", "--max-memory-mb", "60",
                      "--min-top1", "0.70")
    assert rec["fits"]
    for c in rec["fits"]:
        assert c["precision"] == "int8" and c["latency_ms"] <= 50
        assert c["peak_memory_bytes"] <= 60e6
        assert c["published_top1"] >= 70.0


@pytest.mark.parametrize("args, binding", [
    (["--budget-ms", "0.5"], "--budget-ms"),
    (["--budget-ms", "30", "--min-top1", "0.95"], "--min-top1"),
    (["--budget-ms", "30", "--max-memory-mb", "5"], "--max-memory-mb"),
])
def test_none_fits_names_the_binding_constraint(args, binding):
    code, rec = run_json("--device", "rpi4", *args)
    assert rec["explanation"].startswith("no variant fits on rpi4")
    assert f"{binding} " in rec["explanation"] and "binding" in rec["explanation"]
    assert code == 1 and rec["fits"] == [] and rec["binding"] == [binding]


def test_budget_binding_reports_the_fastest_candidate():
    _, everything = run_json("--device", "rpi4", "--budget-ms", "100000")
    fastest = min(everything["fits"], key=lambda c: c["latency_ms"])
    r = edgecv("recommend", "--device", "rpi4", "--budget-ms", "0.5")
    assert r.returncode == 1, r.stderr  # nothing fits: exit code 1, the explanation on stdout
    assert r.stdout.startswith("no variant fits on rpi4: --budget-ms 0.5 is binding")
    assert f"{fastest['model']} {fastest['precision']}" in r.stdout
    assert f"{fastest['latency_ms']:.1f} ms" in r.stdout


@pytest.mark.slow  # three 224-px sweeps (~40 s): CI's slow run
def test_from_sweep_published_top1_only_for_the_imagenet_model(tmp_path):
    """`recommend --from-sweep` shows the paper's ImageNet top-1 for a sweep row of the reference architecture
    and none for the same architecture with a user's head (--classes 10), in the JSON and the table, as the
    sweep's own rows do; a 1000-class model given a --weights file (here the first sweep's own weights, as one
    loads keras.applications' ImageNet file) keeps the figure (docs/evaluate.md)."""
    import zipfile

    base = ["sweep", "--family", "mobilenet", "--alpha", "0.25", "--resolution", "224", "--precision", "float32",
            "--samples", "4", "--verify-samples", "2", "-q", "--no-report"]
    plain, head, own = tmp_path / "plain", tmp_path / "c10", tmp_path / "own"
    r = edgecv(*base, "-o", str(plain))
    assert r.returncode == 0, r.stderr
    (keras_file,) = (plain / "work" / "models").glob("*.keras")
    weights = tmp_path / "mine.weights.h5"
    with zipfile.ZipFile(keras_file) as zf:  # a .keras archive holds the model's weights file
        weights.write_bytes(zf.read("model.weights.h5"))
    for out, extra in ((head, ["--classes", "10"]), (own, ["--weights", str(weights)])):
        r = edgecv(*base, *extra, "-o", str(out))
        assert r.returncode == 0, r.stderr
    want = paper_top1()["mobilenet_v1_0.25_224"]  # MobileNets Table 6: 50.6
    for out, model, top1 in ((plain, "mobilenet_v1_0.25_224", want), (head, "mobilenet_v1_0.25_224_c10", None),
                             (own, "mobilenet_v1_0.25_224", want)):
        r = edgecv("recommend", "--device", "rpi4", "--budget-ms", "1000", "--from-sweep", str(out), "--json")
        assert r.returncode == 0, r.stderr
        (c,) = json.loads(r.stdout)["fits"]
        assert (c["model"], c["published_top1"]) == (model, top1), out.name
        (row,) = json.loads((out / "results.json").read_text())["rows"]
        assert row["published_top1"] == top1, out.name
        r = edgecv("recommend", "--device", "rpi4", "--budget-ms", "1000", "--from-sweep", str(out))
        assert r.returncode == 0, r.stderr
        shown = re.search(r"(?<![\d.])50\.6(?![\d.]| ?ms)", r.stdout)  # the top-1 column, not a latency
        assert bool(shown) == (top1 is not None), (out.name, r.stdout)


@pytest.mark.parametrize("args, needle", [
    (["--device", "rpi9", "--budget-ms", "30"], "unknown device 'rpi9'"),
    (["--device", "rpi4", "--budget-ms", "-3"], "--budget-ms"),
    (["--device", "rpi4", "--budget-ms", "30", "--min-top1", "70"], "--min-top1"),
    (["--device", "rpi4", "--budget-ms", "30", "--max-memory-mb", "0"], "--max-memory-mb"),
    (["--device", "rpi4", "--budget-ms", "30", "--from-sweep", "/nonexistent"], "--from-sweep"),
])
def test_bad_input(args, needle):
    r = edgecv("recommend", *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("edgecv: error:")


@pytest.mark.slow
def test_shipped_registry_features_match_a_fresh_build():
    """The cached deployed ops recommend predicts from equal those of a model built now (Keras builder)."""
    from edgecv.devices.features import build_entry
    from edgecv.sweep.registry_features import _cache

    name = "mobilenet_v2_0.35_96"
    shipped = _cache()[name]
    fresh = build_entry(name)
    assert shipped["macs"] == fresh["macs"] and shipped["peak_activation_elems"] == fresh["peak_activation_elems"]
    # Layers keras names automatically ("global_average_pooling2d") get a suffix that depends on how many
    # were built before in the process ("global_average_pooling2d_57"): compare their base names.
    import re

    def canon(rows):
        return [[re.sub(r"_\d+$", "", v) if i == 2 else v for i, v in enumerate(r)] for r in rows]

    assert canon(shipped["ops"]) == canon(json.loads(json.dumps(fresh["ops"])))
    # and the MACs agree with the published figure (slim README: 11 M at 0.35-96; docs/benchmarks.md's note: 11.9 M)
    assert abs(fresh["macs"] - 11.93e6) / 11.93e6 < 0.01


def test_every_registered_variant_has_features():
    from edgecv.builders.registry import list_models
    from edgecv.sweep.registry_features import available

    assert available() == list_models()
