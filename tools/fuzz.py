"""A longer fuzzing run of edgecv's readers of untrusted files (the suite runs a short one: tests/core/test_fuzz.py).

    python tools/fuzz.py --cases 2000 --seconds 300 [--seed N] [--kinds keras,h5,npy,npz,tflite,onnx]

Each kind gets up to ``--cases`` mutants of a valid seed file (made here: a small Keras model, its TFLite and
ONNX conversions, a legacy .h5 weights file, .npy/.npz arrays), stopping when ``--seconds`` have passed.
Outcomes: ok, refused (one-line error), contained (the HDF5 library hung or crashed in the child process edgecv
reads weights in) or a finding (another exception, a multi-line message, a crash, a hang);
the mutants behind findings are kept in ``--keep DIR``. Writes ``tools/results/fuzz_<machine>.json`` (or
``-o FILE``) with the machine, the date, the counts and every finding; exit code 1 when there are findings.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import _machine  # noqa: E402
from helpers import fuzz  # noqa: E402  (shared with the tests)

KINDS = ("keras", "h5", "npy", "npz", "npz_labelled", "tflite", "onnx")


def model_seeds(folder: Path) -> dict[str, bytes]:
    """A small Keras model as .keras, .tflite and .onnx (imports TensorFlow)."""
    from edgecv.native import import_tensorflow

    tf = import_tensorflow()
    import keras
    import tf2onnx

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(inp)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.Conv2D(16, 1, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(10, activation="softmax")(x), name="fuzzseed")
    model.save(folder / "seed.keras")
    tfl = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    spec = (tf.TensorSpec((1, 32, 32, 3), tf.float32, name="input"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=13)
    return {"keras": (folder / "seed.keras").read_bytes(), "tflite": bytes(tfl), "onnx": proto.SerializeToString()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=2000, help="mutants per kind (at most)")
    ap.add_argument("--seconds", type=float, default=300.0, help="time budget of the whole run")
    ap.add_argument("--seed", type=int, default=20261202)
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated subset of {','.join(KINDS)}")
    ap.add_argument("--keep", type=Path, help="copy the mutants behind findings here")
    ap.add_argument("-o", "--output", type=Path, help="result file (default: tools/results/fuzz_<machine>.json)")
    args = ap.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds or args.cases < 1 or args.seconds <= 0:
        ap.error(f"--kinds: expected some of {', '.join(KINDS)}; --cases >= 1; --seconds > 0")

    env = _machine.environment()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="edgecv-fuzz-") as tmp:
        work = Path(tmp)
        seeds: dict[str, bytes] = {}
        if {"keras", "tflite", "onnx"} & set(kinds):
            seeds.update(model_seeds(work))
        if "h5" in kinds:
            seeds["h5"] = fuzz.h5_seed(work)
        if {"npy", "npz", "npz_labelled"} & set(kinds):
            seeds.update(fuzz.seed_arrays(work))
        seeds = {k: seeds[k] for k in kinds}
        cases = work / "cases"
        cases.mkdir()
        n = [0]

        def progress(o: fuzz.Outcome) -> None:
            n[0] += 1
            if o.outcome in ("finding", "contained"):
                print(f"{o.outcome}: {o.kind} case {o.case} ({o.mutation}): {o.detail}", file=sys.stderr)
            elif n[0] % 500 == 0:
                print(f"{n[0]} cases", file=sys.stderr)

        # the in-process readers first (thousands of cases a minute), then the models (a child process each)
        t0 = time.monotonic()
        groups = [[k for k in kinds if k not in ("tflite", "onnx")], [k for k in kinds if k in ("tflite", "onnx")]]
        rep = fuzz.Report(seed=args.seed, kinds=kinds, budget_s=args.seconds)
        for group in (g for g in groups if g):
            left = args.seconds - (time.monotonic() - t0)
            if left <= 0:
                break
            part = fuzz.run({k: seeds[k] for k in group}, cases, cases_per_kind=args.cases, seed=args.seed,
                            budget_s=left, on_case=progress)
            rep.cases += part.cases
            rep.by_kind.update(part.by_kind)
            rep.findings += part.findings
            rep.contained += part.contained
        rep.seconds = round(time.monotonic() - t0, 1)
        if args.keep and (rep.findings or rep.contained):
            args.keep.mkdir(parents=True, exist_ok=True)
            for f in rep.findings + rep.contained:
                for p in cases.glob(f"{f['kind']}_{f['case']}.*"):
                    shutil.copy2(p, args.keep / p.name)
    out = {"tool": "tools/fuzz.py", "started": started, "machine": _machine.machine_tag(), "environment": env,
           "options": {"cases_per_kind": args.cases, "seconds": args.seconds, "seed": args.seed, "kinds": kinds},
           **rep.to_dict()}
    path = args.output or Path(__file__).resolve().parent / "results" / f"fuzz_{_machine.machine_tag()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_suffix(".json.part")
    tmp_path.write_text(json.dumps(out, indent=2) + "\n")
    tmp_path.replace(path)
    print(json.dumps({"cases": rep.cases, "seconds": rep.seconds, "by_kind": rep.by_kind,
                      "findings": len(rep.findings), "contained": len(rep.contained), "result": str(path)}, indent=2))
    return 1 if rep.findings else 0


if __name__ == "__main__":
    sys.exit(main())
