#!/usr/bin/env python3
"""Static analysis against the builder's cost pass for every registered model, TFLite and ONNX.

For each name in ``list_models()`` (smallest first): build it, give it trained-looking BatchNorm statistics
and biases, convert it with ``TFLiteConverter.from_keras_model`` and tf2onnx (opset 13), and compare
``edgecv.profiling.static.analyze`` of both files with ``edgecv.builders.cost.model_cost``: MACs within 1%,
parameters equal to the deployed count (BatchNorm folded). The test suite runs the same check
(``tests/profiling/test_profiling_static.py``) on seven representative models; converting all of them takes longer.
Writes ``tools/results/counts_<machine>.json`` after every model (atomically), so a stopped run keeps what it did;
rows of other models from an earlier run are kept (``--models efficientnet_b7`` adds or replaces one row).

    python tools/check_counts.py [--models NAME,...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))

import _machine  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from helpers.static_models import convert_both  # the suite's own conversion step (one definition)

    from edgecv.builders.registry import get_config, list_models
    from edgecv.profiling.static import analyze

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="", help="comma-separated registry names (default: all)")
    ap.add_argument("--out", default=str(ROOT / "tools" / "results"))
    args = ap.parse_args(argv)
    names = [n for n in args.models.split(",") if n] or list(list_models())
    names.sort(key=lambda n: get_config(n).resolution)
    path = Path(args.out) / f"counts_{_machine.machine_tag()}.json"
    # Rows of an earlier run for other models are kept: a large model can be run alone in a fresh process (one
    # process converting all 59 grows past 24 GB by EfficientNet-B7: TensorFlow keeps what it traced).
    earlier = json.loads(path.read_text())["rows"] if path.exists() else []
    rows, t0 = [r for r in earlier if r["model"] not in names], time.perf_counter()
    for name in names:
        t = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            cost, tfl, onx = convert_both(name, tmp)
            row = {"model": name, "builder_macs": cost.macs, "builder_params_deployed": cost.params_deployed,
                   "keras_params": cost.params}
            ok = True
            for fmt, f in (("tflite", tfl), ("onnx", onx)):
                sa = analyze(f)
                err = (sa.macs - cost.macs) / cost.macs
                row[fmt] = {"macs": sa.macs, "macs_rel_error": round(err, 6), "params": sa.params}
                ok &= abs(err) <= 0.01 and sa.params == cost.params_deployed
        row["ok"], row["seconds"] = bool(ok), round(time.perf_counter() - t, 1)
        rows.append(row)
        print(f"{name:28s} {'ok  ' if ok else 'FAIL'} MACs {cost.macs / 1e6:9.1f}M  tflite {row['tflite']['macs_rel_error']:+.2%}"
              f" onnx {row['onnx']['macs_rel_error']:+.2%}  params {cost.params_deployed:,} = "
              f"{row['tflite']['params']:,} / {row['onnx']['params']:,}  ({row['seconds']:.0f} s)", flush=True)
        out = {"benchmark": "counts", "models": len(rows), "all_ok": all(r["ok"] for r in rows), "rows": rows,
               "wall_seconds": round(time.perf_counter() - t0, 1), "environment": _machine.environment()}
        part = path.with_suffix(".json.part")
        part.write_text(json.dumps(out, indent=2))
        part.replace(path)
    print(f"{sum(r['ok'] for r in rows)}/{len(rows)} models agree; wrote {path}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
