#!/usr/bin/env python3
"""Where does EfficientNet-B0's int8 loss sit? Keep groups of layers in float and measure what comes back.

Trains the quality benchmark's EfficientNet-B0 (digits, 32 px, seed 0: the same model as
``tools/bench_quality.py``), converts it to full-integer int8 TFLite with the benchmark's calibration, and
again with each group of Keras layers kept in float (``--float-layers``): the debug report's worst layers,
layer families (squeeze-excite convolutions, activations, depthwise / project / expand convolutions), single
blocks, the stem and head, whole ranges of blocks, the residual path, every layer, and every layer but the
squeeze-excite multiplies or the residual adds; then int16x8 (16-bit activations, the same int8 weights).
Each artifact runs on the 450 test images
(LiteRT); printed and written as JSON: test accuracy, drop from float and output SQNR. Also: 1000
calibration images instead of 200. Layers that have no op of their own in the converted graph (dropout,
padding, reshapes: folded or identities) are left out of a group.

    python tools/b0_float_layers.py [--out tools/results]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _digits  # noqa: E402
import _machine  # noqa: E402
import bench_quality as bq  # noqa: E402


def groups(model, debug_order: list[str]) -> dict[str, list[str]]:
    names = [layer.name for layer in model.layers]
    weighted = [layer.name for layer in model.layers if layer.weights or layer.name.endswith("activation")]

    def block(n: str) -> int | None:
        m = re.match(r"block(\d)", n)
        return int(m.group(1)) if m else None

    g = {f"debug report top {k}": debug_order[:k] for k in (3, 6, 10)}
    g["squeeze-excite convs"] = [n for n in names if n.endswith(("_se_reduce", "_se_expand"))]
    g["activations"] = [n for n in names if n.endswith("activation")]
    for suffix in ("_dwconv", "_project_conv", "_expand_conv"):
        g[f"all *{suffix}"] = [n for n in names if n.endswith(suffix)]
    for b in sorted({m.group(1) for n in names for m in [re.match(r"(block\d[a-z])_", n)] if m}):
        g[f"block {b}"] = [n for n in weighted if n.startswith(b + "_")]
    g["stem"] = [n for n in weighted if n.startswith("stem")]
    g["head (top conv, pool, classifier)"] = ["top_conv", "avg_pool", "predictions"]
    for lo, hi in ((1, 3), (4, 5), (6, 7), (2, 7)):
        g[f"blocks {lo}-{hi}"] = [n for n in weighted if block(n) is not None and lo <= block(n) <= hi]
    g["residual path (project convs, adds, expand convs)"] = [
        n for n in names if n.endswith(("_project_conv", "_add", "_expand_conv"))]
    g["every layer with weights or an activation"] = [n for n in weighted if n != "normalization"]
    every = [n for n in names if n != "input_layer"]
    # The converse: everything in float except one family, so only that family's tensors are int8
    for family, suffix in (("squeeze-excite multiplies", "_se_excite"), ("residual adds", "_add")):
        g[f"every layer but the {family} (only they int8)"] = [n for n in every if not n.endswith(suffix)]
    g["every layer"] = every
    return g


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgecv-b0-") as tmp:
        out = _experiments(Path(tmp))
    out["wall_seconds"] = round(time.perf_counter() - t0, 1)
    path = Path(args.out) / f"b0_float_layers_{_machine.machine_tag()}.json"
    part = path.with_suffix(".json.part")
    part.write_text(json.dumps(out, indent=2))
    part.replace(path)
    print(f"wrote {path} ({out['wall_seconds']:.0f} s)")
    return 0


def _experiments(work: Path) -> dict:
    digits = _digits.load_digits(32, seed=0)
    spec = bq.MODELS["b0"]
    tr = _digits.train(spec.registry, digits, epochs=spec.epochs, learning_rate=spec.learning_rate, seed=0)
    model = tr.model
    model.name = tr.name
    x_test = tr.preprocessing.apply(digits.x_test)
    data = {"x": x_test, "y": digits.y_test, "ref": _digits.keras_predict(model, x_test)}
    calib = _digits.save_calibration(work / "calib.npy", tr.preprocessing, digits.x_train)
    rows = []

    def run(key: str, layers: list[str] = (), **kw) -> dict:
        layers = list(layers)
        while True:
            try:
                r = bq.convert_and_eval(model, "tflite", "int8", calib, work / "artifact", data, tr.float_accuracy,
                                        float_layers=layers, **kw)
                break
            except Exception as exc:  # noqa: BLE001 - a layer without an op of its own: leave it out
                m = re.search(r"layer '([^']+)' has no op of its own", str(exc))
                if not m:
                    raise
                layers.remove(m.group(1))
        row = {"group": key, "float_layers": len(layers), "test_accuracy": r["test_accuracy"],
               "drop_points": r["drop_points"], "sqnr_db": r["sqnr_db"]}
        rows.append(row)
        print(f"{key:45s} {len(layers):4d} layers  {100 * r['test_accuracy']:.1f}%  drop {r['drop_points']:+.2f}  "
              f"SQNR {r['sqnr_db']:.1f} dB", flush=True)
        return r

    print(f"float test accuracy {100 * tr.float_accuracy:.1f}%", flush=True)
    base = run("int8 as converted", debug_layers=True)
    order = list(dict.fromkeys(e["layer"] for e in base.get("debug_layers", ())))
    for key, layers in groups(model, order).items():
        run(key, layers)
    r = bq.convert_and_eval(model, "tflite", "int16x8", calib, work / "artifact", data, tr.float_accuracy)
    rows.append({"group": "int16x8 (16-bit activations, the same int8 weights)", "float_layers": 0,
                 "test_accuracy": r["test_accuracy"], "drop_points": r["drop_points"], "sqnr_db": r["sqnr_db"]})
    print(f"{rows[-1]['group']:45s}    0 layers  {100 * r['test_accuracy']:.1f}%  drop {r['drop_points']:+.2f}  "
          f"SQNR {r['sqnr_db']:.1f} dB", flush=True)
    saved = bq.CALIB_SAMPLES
    bq.CALIB_SAMPLES = 1000
    try:
        run("int8, 1000 calibration images")
    finally:
        bq.CALIB_SAMPLES = saved
    return {"benchmark": "b0_float_layers", "model": tr.name, "float_test_accuracy": round(tr.float_accuracy, 4),
            "debug_report": base.get("debug_layers"), "rows": rows, "environment": _machine.environment()}


if __name__ == "__main__":
    sys.exit(main())
