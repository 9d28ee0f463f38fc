"""``edgecv evaluate`` and the precision chooser on trained models, against evaluation loops written here.

Two real tasks, nothing downloaded: scikit-learn's digits (10 classes, written as a folder of PNGs, one
sub-folder per class) and patches of scikit-image's sample photos (6 classes: which photo a patch comes from,
passed as a .npz of uint8 pixels). Small models are trained once per session (a few epochs of MobileNet 0.25 at
32 px) and converted with edgecv. The independent loops decode the PNGs with Pillow, normalize by hand, run Keras
in this process and the .tflite in LiteRT here, and compute top-1/top-5/agreement/drop with plain numpy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("sklearn")
pytest.importorskip("skimage")
pytest.importorskip("tensorflow")

from helpers import digits as D  # noqa: E402
from helpers.litert import run_tflite  # noqa: E402

from edgecv.cli import cli  # noqa: E402

MODEL = "mobilenet_v1_0.25_224"  # built at 32 px: ~0.2 M parameters, input (x - 127.5) / 127.5
EPOCHS = 8
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")


# --- trained models, cached for the session ---------------------------------------------------------------

@pytest.fixture(scope="session")
def digits_setup(tmp_path_factory):
    from PIL import Image

    from edgecv.conversion import quantize

    root = tmp_path_factory.mktemp("evaluate_digits")
    data = D.load_digits()
    tr = D.train(MODEL, data, epochs=EPOCHS)
    keras_path = root / "digits.keras"
    tr.model.save(keras_path)
    calib = D.save_calibration(root / "calib.npy", tr.preprocessing, data.x_train[:200])
    val = root / "val"
    for i, (x, y) in enumerate(zip(data.x_test, data.y_test)):
        (val / f"digit{y}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(x).astype(np.uint8)).save(val / f"digit{y}" / f"{i:04d}.png")
    int8 = quantize(str(keras_path), "int8", calib=str(calib), output=str(root / "art")).path
    return {"root": root, "keras": keras_path, "model": tr.model, "int8": Path(int8), "val": val, "calib": calib}


def _photo_patches(n_per_class: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random square patches (25-60 % of the short side) of each photo, resized to ``size``: the class is
    the photo."""
    from PIL import Image
    from skimage import data as skdata

    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for c, name in enumerate(PHOTOS):
        im = Image.fromarray(np.asarray(getattr(skdata, name)())[..., :3].astype(np.uint8))
        w, h = im.size
        for _ in range(n_per_class):
            side = int(min(w, h) * rng.uniform(0.25, 0.6))
            x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
            xs.append(np.asarray(im.crop((x0, y0, x0 + side, y0 + side)).resize((size, size), Image.BILINEAR)))
            ys.append(c)
    return np.stack(xs).astype(np.uint8), np.asarray(ys, np.int64)


@pytest.fixture(scope="session")
def photos_setup(tmp_path_factory):
    from edgecv.conversion import quantize

    root = tmp_path_factory.mktemp("evaluate_photos")
    xtr, ytr = _photo_patches(120, 32, seed=1)
    xte, yte = _photo_patches(40, 32, seed=2)
    data = D.Digits(xtr.astype(np.float32), ytr, xte.astype(np.float32), yte, 32, 0)
    tr = D.train(MODEL, data, epochs=6, max_shift=0)
    keras_path = root / "photos.keras"
    tr.model.save(keras_path)
    calib = D.save_calibration(root / "calib.npy", tr.preprocessing, xtr[::3].astype(np.float32))
    int8 = quantize(str(keras_path), "int8", calib=str(calib), output=str(root / "art")).path
    npz = root / "test.npz"
    np.savez(npz, x=xte, y=yte)
    return {"keras": keras_path, "model": tr.model, "int8": Path(int8), "npz": npz, "x": xte, "y": yte}


# --- the independent evaluation loop ---------------------------------------------------------------------

def _read_folder(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    xs, ys = [], []
    for c, cls in enumerate(sorted(os.listdir(folder))):
        for f in sorted(os.listdir(folder / cls)):
            xs.append(np.asarray(Image.open(folder / cls / f).convert("RGB"), np.float32))
            ys.append(c)
    return np.stack(xs), np.asarray(ys)


def _top5_chance(scores: np.ndarray, label: int) -> float:
    """The chance that ``label`` is in the top 5 when ties are broken at random: its tie group spans the sorted
    positions first..last; count the positions below 5."""
    desc = sorted(scores.tolist(), reverse=True)
    v = scores[label]
    first, last = desc.index(v), len(desc) - 1 - desc[::-1].index(v)
    return sum(1 for pos in range(first, last + 1) if pos < 5) / (last - first + 1)


def _reference_figures(model, tflite: Path, pixels: np.ndarray, y: np.ndarray) -> dict:
    x = (pixels - 127.5) / 127.5  # MobileNet: [-1, 1]
    ref = np.asarray(model.predict(x, batch_size=64, verbose=0))
    art = run_tflite(tflite, x)
    ref_ok, art_ok = ref.argmax(1) == y, art.argmax(1) == y
    top5 = np.mean([_top5_chance(art[k], y[k]) for k in range(len(y))])
    return {"ref_top1": ref_ok.mean(), "top1": art_ok.mean(), "top5": top5,
            "drop": 100 * (ref_ok.mean() - art_ok.mean()), "agreement": np.mean(ref.argmax(1) == art.argmax(1))}


def _figures(ev) -> dict:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in ev.to_dict()["results"]]


# --- evaluate ---------------------------------------------------------------------------------------------

@pytest.mark.slow  # trains the digits model (~130 s for the set): CI's slow run
def test_digits_folder_matches_independent_loop(digits_setup):
    from edgecv.evaluation import evaluate

    s = digits_setup
    pixels, y = _read_folder(s["val"])
    want = _reference_figures(s["model"], s["int8"], pixels, y)
    assert want["ref_top1"] > 0.6, "the digits model did not learn the task"
    ev = evaluate([s["keras"], s["int8"]], s["val"])
    ref, art = ev.results
    n = len(y)
    assert ev.data.samples == n == 450 and len(ev.data.classes) == 10
    assert ref.is_reference and not art.is_reference and ev.reference == str(s["keras"])
    # Keras in a child vs Keras here (different batch sizes): at most one image may flip on a near-tie
    assert abs(ref.top1 - want["ref_top1"]) <= 1 / n + 1e-9
    assert art.top1 == pytest.approx(want["top1"], abs=1e-6)  # same file, same runtime
    assert art.top5 == pytest.approx(want["top5"], abs=1e-6)
    assert abs(art.drop_points - want["drop"]) <= 100 / n + 1e-6
    assert abs(art.agreement - want["agreement"]) <= 1 / n + 1e-9
    lo, hi = art.drop_ci95_points
    assert lo <= art.drop_points <= hi and hi - lo < 10
    for c in art.worst_classes:  # a class that loses is one where the artifact is right less often
        k = int(c.name.removeprefix("digit"))
        assert c.drop_points > 0 and c.samples == int((y == k).sum())


@pytest.mark.slow  # trains the digits model (~130 s for the set): CI's slow run
def test_accuracy_is_reproducible(digits_setup):
    from edgecv.evaluation import evaluate

    s = digits_setup
    a = evaluate([s["keras"], s["int8"]], s["val"], batch=7)
    b = evaluate([s["keras"], s["int8"]], s["val"], batch=64)
    assert _figures(a) == _figures(b)


@pytest.mark.slow  # trains the digits model (~130 s for the set): CI's slow run
def test_photos_npz_matches_independent_loop(photos_setup):
    from edgecv.evaluation import evaluate

    s = photos_setup
    want = _reference_figures(s["model"], s["int8"], s["x"].astype(np.float32), s["y"])
    assert want["ref_top1"] > 0.5, "the photo-patch model did not learn the task (chance 1/6)"
    ev = evaluate([s["keras"], s["int8"]], s["npz"])
    ref, art = ev.results
    assert ev.data.kind == "npz" and ev.data.samples == len(s["y"]) and len(ev.data.classes) == 6
    assert abs(ref.top1 - want["ref_top1"]) <= 1 / len(s["y"]) + 1e-9
    assert art.top1 == pytest.approx(want["top1"], abs=1e-6)
    assert art.top5 == pytest.approx(want["top5"], abs=1e-6)  # 6 classes: top-5 is reported
    assert abs(art.drop_points - want["drop"]) <= 100 / len(s["y"]) + 1e-6


@pytest.mark.slow  # trains the digits model (~130 s for the set): CI's slow run
def test_cli_json_and_csv(digits_setup, tmp_path):
    s = digits_setup
    out = tmp_path / "acc.csv"
    r = CliRunner().invoke(cli, ["evaluate", str(s["int8"]), str(s["keras"]), "--data", str(s["val"]),
                                 "--reference", str(s["keras"]), "--json", "--csv", str(out)])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert [x["is_reference"] for x in d["results"]] == [False, True]
    assert d["data"]["samples"] == 450
    rows = out.read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("path,format,precision")


def _run(args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "edgecv", *args], capture_output=True, text=True, timeout=600)


def test_bad_folders_one_line(digits_setup, tmp_path):
    s = digits_setup
    (tmp_path / "empty").mkdir()
    one = tmp_path / "one" / "cat"
    one.mkdir(parents=True)
    (one / "a.png").write_bytes((s["val"] / "digit0" / sorted(os.listdir(s["val"] / "digit0"))[0]).read_bytes())
    bad = tmp_path / "bad"  # the 10 classes, one good image each, and one file that is not a PNG
    for c in sorted(os.listdir(s["val"])):
        (bad / c).mkdir(parents=True)
        f = sorted(os.listdir(s["val"] / c))[0]
        (bad / c / f).write_bytes((s["val"] / c / f).read_bytes())
    (bad / "digit4" / "broken.png").write_bytes(b"not a png")
    few = tmp_path / "few"  # 2 classes for a 10-output model
    for c in ("digit0", "digit1"):
        (few / c).mkdir(parents=True)
        for f in sorted(os.listdir(s["val"] / c))[:2]:
            (few / c / f).write_bytes((s["val"] / c / f).read_bytes())
    cases = {"missing": (tmp_path / "nope", "no such file"), "empty": (tmp_path / "empty", "no class sub-folders"),
             "one class": (tmp_path / "one", "only one class"), "unreadable": (bad, "broken.png"),
             "label count": (few, "10 outputs")}
    for what, (folder, msg) in cases.items():
        r = _run(["evaluate", str(s["int8"]), "--data", str(folder)])
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2, (what, r.stderr)
        assert len(lines) == 1 and msg in lines[0] and "Traceback" not in r.stderr, (what, r.stderr)


# --- the precision chooser -------------------------------------------------------------------------------

def _int8_drop_here(s) -> float:
    pixels, y = _read_folder(s["val"])
    return _reference_figures(s["model"], s["int8"], pixels, y)["drop"]


@pytest.mark.slow  # trains the digits model (~130 s for the set): CI's slow run
def test_chooser_keeps_int8_within_budget(digits_setup):
    """A budget above int8's measured drop: int8 holds it and is the fastest predicted on a Pi 4."""
    from edgecv.evaluation.choose import choose_precision

    s = digits_setup
    budget = max(0.0, _int8_drop_here(s)) + 3.0
    c = choose_precision(str(s["keras"]), max_drop=budget, eval_data=s["val"], calib=s["calib"], device="rpi4",
                         output=s["root"] / "choose_wide")
    int8 = next(x for x in c.candidates if x.label == "int8")
    assert int8.holds_budget and c.winner is not None and c.winner.label == "int8"
    assert "none among" in c.overlap and c.data.samples == 450
    side = json.loads(Path(f"{c.winner.path}.json").read_text())
    assert [x["label"] for x in side["precision_choice"]["candidates"]][:1] == ["int8"]
    assert side["path"] == c.winner.path and side["file_bytes"] == Path(c.winner.path).stat().st_size
    kept = [Path(x.path) for x in c.candidates if x.path]
    assert kept and all(p.is_file() and Path(f"{p}.json").is_file() for p in kept)
    assert not [p for p in (s["root"] / "choose_wide").rglob("*") if ".part" in p.name]


@pytest.mark.slow  # trains the digits model (~130 s for the set): CI's slow run
def test_chooser_refuses_int8_over_budget(digits_setup):
    """A budget below int8's measured drop (computed here): the chooser must return something else."""
    from edgecv.evaluation.choose import choose_precision

    s = digits_setup
    drop = _int8_drop_here(s)
    if drop <= 0.25:
        pytest.skip(f"int8 loses only {drop:.2f} points on this machine: no budget below it to test")
    c = choose_precision(str(s["keras"]), max_drop=drop / 2, eval_data=s["val"], calib=s["calib"], device="rpi4",
                         output=s["root"] / "choose_tight")
    assert c.winner is not None and c.winner.label != "int8"
    assert c.winner.drop_points <= drop / 2
    assert not next(x for x in c.candidates if x.label == "int8").holds_budget


@pytest.mark.slow  # trains the digits model (~130 s for the set): CI's slow run
def test_chooser_refuses_overlapping_split(digits_setup, tmp_path):
    """Evaluation images that are calibration images are refused (content hash)."""
    from PIL import Image

    s = digits_setup
    calib = tmp_path / "calib"
    calib.mkdir()
    for f in sorted(os.listdir(s["val"] / "digit3"))[:5]:
        Image.open(s["val"] / "digit3" / f).save(calib / f)
    r = _run(["quantize", str(s["keras"]), "--max-drop", "1", "--eval-data", str(s["val"]), "--calib", str(calib),
              "-o", str(tmp_path / "out")])
    assert r.returncode == 2, r.stderr
    assert "also calibration samples" in r.stderr


@pytest.mark.slow
def test_chooser_b0_half_point_budget(tmp_path):
    """EfficientNet-B0 trained on digits, a 0.5-point budget priced on a Pi 4: the chooser's int8 drop equals the
    one computed here (Keras and LiteRT in this process), and it returns int8 only if that drop is within the
    budget. (The int8 drop of B0 on these 450 images depends on the calibration draw: tools/bench_quality.py
    measured 1.1 points with its draw; it lies inside the paired 95% interval, about +-2 points.)"""
    from edgecv.evaluation.choose import choose_precision

    data = D.load_digits()
    tr = D.train("efficientnet_b0", data, epochs=15, learning_rate=3e-3)
    path = tmp_path / "b0.keras"
    tr.model.save(path)
    calib = D.save_calibration(tmp_path / "calib.npy", tr.preprocessing, data.x_train[:200])
    pixels = np.round(data.x_test).astype(np.uint8)
    np.savez(tmp_path / "test.npz", x=pixels, y=data.y_test)
    c = choose_precision(str(path), max_drop=0.5, eval_data=tmp_path / "test.npz", calib=calib, device="rpi4",
                         output=tmp_path / "out")
    int8 = next(x for x in c.candidates if x.label == "int8")
    x = pixels.astype(np.float32)  # EfficientNet normalizes inside the model: raw pixels
    ref_ok = np.asarray(tr.model.predict(x, batch_size=64, verbose=0)).argmax(1) == data.y_test
    art_ok = run_tflite(Path(int8.path), x).argmax(1) == data.y_test
    drop = 100 * (ref_ok.mean() - art_ok.mean())
    assert abs(int8.drop_points - drop) <= 100 / len(x) + 1e-6
    lo, hi = int8.drop_ci95_points
    assert lo <= int8.drop_points <= hi
    assert c.winner is not None and c.winner.drop_points <= 0.5
    if drop > 0.5 + 100 / len(x):
        assert c.winner.label != "int8"
    print(f"B0 int8 drop on digits here: {drop:+.2f} points (95% interval [{lo:+.2f}, {hi:+.2f}]); "
          f"chosen: {c.winner.label}")


# --- sweeps and recommend with measured accuracy -----------------------------------------------------------

@pytest.mark.slow
def test_sweep_eval_data_and_recommend_rank_by_measured(tmp_path):
    """A sweep measures top-1 per artifact on --eval-data (figures equal to a LiteRT loop here), the report gets
    the measured plot, and recommend --from-sweep ranks by the measured figure."""
    from edgecv.conversion.calibration import sample_images
    from edgecv.sweep.recommend import recommend

    out = tmp_path / "sw"
    base = ["sweep", "--family", "mobilenet", "--alpha", "0.25", "--resolution", "128", "--precision",
            "float32,int8", "--device", "rpi4", "-o", str(out), "-q"]
    r = _run(base)
    assert r.returncode == 0, r.stderr
    rows = json.loads((out / "results.json").read_text())["rows"]
    arts = {row["precision"]: row["artifact"] for row in rows}
    # labels: the float32 artifact's own classes, computed here in LiteRT (so its top-1 must be 100 %)
    pixels = np.round(sample_images(40, 128, seed=7)).astype(np.uint8)
    x = (pixels.astype(np.float32) - 127.5) / 127.5
    y = run_tflite(arts["float32"], x).argmax(1)
    want_int8 = 100.0 * float(np.mean(run_tflite(arts["int8"], x).argmax(1) == y))
    np.savez(tmp_path / "eval.npz", x=pixels, y=y)
    r = _run(base + ["--eval-data", str(tmp_path / "eval.npz")])
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "results.json").read_text())
    got = {row["precision"]: row["measured_top1"] for row in res["rows"]}
    assert got["float32"] == pytest.approx(100.0) and got["int8"] == pytest.approx(want_int8, abs=1e-3)
    assert all(row["measured_samples"] == 40 for row in res["rows"])
    assert 'id="plot-measured-top1-latency"' in (out / "report.html").read_text()
    rec = recommend("rpi4", 1000.0, from_sweep=str(out))
    assert rec.ranked_by == "measured"
    order = [(c.measured_top1, -c.latency_ms) for c in rec.fits]
    assert order == sorted(order, reverse=True)
    if want_int8 < 100.0:
        assert rec.fits[0].precision == "float32"


def test_sweep_measure_caches_per_artifact_and_data_and_remeasures_what_changed(tmp_path, monkeypatch):
    """``sweep --eval-data``'s measurement: the figure of evaluate(), cached until the artifact or the data change;
    a damaged cache file is measured again."""
    import keras

    import edgecv.evaluation.api as ev_api
    from edgecv.conversion import quantize
    from edgecv.evaluation.sweep import MeasuredTop1, measure

    keras.utils.set_random_seed(3)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu")(inp))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x), name="m")
    art = quantize(model, "float32", verify=False, output=str(tmp_path / "m.tflite")).path
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "eval.npz", x=rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8),
             y=rng.integers(0, 3, 12))
    want = ev_api.evaluate([art], tmp_path / "eval.npz").results[0]
    cache = tmp_path / "stages"
    got = measure({"m.json": art}, tmp_path / "eval.npz", cache)["m.json"]
    assert isinstance(got, MeasuredTop1) and got.samples == 12
    assert got.top1 == pytest.approx(100.0 * want.top1, abs=1e-3)
    calls = []
    real = ev_api.evaluate
    monkeypatch.setattr(ev_api, "evaluate", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert measure({"m.json": art}, tmp_path / "eval.npz", cache)["m.json"] == got and calls == []
    os.utime(art, ns=(0, 0))  # the artifact changed (its mtime)
    measure({"m.json": art}, tmp_path / "eval.npz", cache)
    assert len(calls) == 1
    (f,) = cache.glob("m.evaluate-*.json")
    f.write_text('["not", "a", "record"]')
    assert measure({"m.json": art}, tmp_path / "eval.npz", cache)["m.json"] == got and len(calls) == 2
    np.savez(tmp_path / "eval.npz", x=rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8), y=np.arange(5) % 3)
    assert measure({"m.json": art}, tmp_path / "eval.npz", cache)["m.json"].samples == 5 and len(calls) == 3
