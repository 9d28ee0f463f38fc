#!/usr/bin/env python
"""Refit device profiles' latency coefficients on measurements and print leave-one-out error per device.

    python tools/calibrate_devices.py                       # fit on tests/data/published_latency.csv
    python tools/calibrate_devices.py --csv my_pi4.csv --device rpi4 --write
    python tools/calibrate_devices.py --json-out edgecv_out/calibration.json

The CSV has published_latency.csv's columns (device, runtime, model, width, resolution, precision,
threads, latency_ms, note, source; optional ``arith`` = float16 for runtimes computing in fp16). Rows for
devices without a profile are ignored. ``--spec-only-csv`` adds published figures for devices without
anchors (checked, never fitted). ``--write`` rewrites each profile's [prediction] table and anchors
atomically. Exit code 2 on bad input, 1 if a device with >= 4 anchors has a LOO median APE > 20 %.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgecv.errors import EdgecvError  # noqa: E402

MAX_LOO_MDAPE = 0.20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", default=str(REPO / "tests" / "data" / "published_latency.csv"),
                    help="measurements to fit (published_latency.csv format)")
    ap.add_argument("--spec-only-csv", default=str(REPO / "tests" / "data" / "spec_only_latency.csv"),
                    help="published figures for devices without anchors, to check (use '' to skip)")
    ap.add_argument("--device", action="append", help="only report/write these device ids (repeatable)")
    ap.add_argument("--profiles-dir", help="folder of device TOML files (default: the packaged device_profiles)")
    ap.add_argument("--json-out", default="edgecv_out/calibration.json", help="where the JSON report goes")
    ap.add_argument("--write", action="store_true", help="update the profiles' [prediction] tables")
    ap.add_argument("--refresh-features", action="store_true",
                    help="rebuild edgecv/devices/anchor_features.json with the Keras builder (needs TensorFlow)")
    args = ap.parse_args(argv)
    try:
        return run(args)
    except BrokenPipeError:  # output piped into `head`: the files are already written
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except EdgecvError as exc:
        print(f"calibrate_devices: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


def run(args) -> int:
    from edgecv.devices.calibrate import MIN_LOO_ANCHORS, load_rows, report, write_profiles
    from edgecv.devices.profile import load_all, profiles_dir
    from edgecv.fileio import write_json_atomic

    pdir = Path(args.profiles_dir) if args.profiles_dir else profiles_dir()
    if not pdir.is_dir():
        raise EdgecvError(f"--profiles-dir: not a directory: {str(pdir)!r}")
    profiles = load_all(pdir)
    known = {p.id for p in profiles}
    for d in args.device or []:
        if d not in known:
            from edgecv.errors import suggest

            raise EdgecvError(f"--device: unknown device {d!r}.{suggest(d, known)}")
    rows = load_rows(args.csv)
    spec_rows = load_rows(args.spec_only_csv) if args.spec_only_csv else []
    if args.refresh_features:
        from edgecv.devices.features import refresh_cache

        refresh_cache(sorted({m.model for m in rows + spec_rows}))
    rep, fits = report(profiles, rows, spec_rows)
    rep["csv"] = str(args.csv)
    # write first: the printing below may be cut short (a closed pipe)
    out = Path(args.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, rep)
    written = []
    if args.write:
        written = write_profiles(profiles, fits, Path(args.csv).name, set(args.device) if args.device else None)
    show = [d for d in rep["devices"] if not args.device or d in args.device]
    print(f"{'device':20s} {'method':6s} {'anchors':>7s} {'LOO MdAPE':>10s} {'LOO max':>8s} {'prior-only':>10s} "
          f"{'band':>6s}")
    failed = []
    for d in show:
        r = rep["devices"][d]
        pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"  # noqa: E731
        flag = ""
        if r["anchors"] >= MIN_LOO_ANCHORS and r["loo_mdape"] is not None and r["loo_mdape"] > MAX_LOO_MDAPE:
            failed.append(d)
            flag = "  FAIL (> 20%)"
        print(f"{d:20s} {r['method']:6s} {r['anchors']:7d} {pct(r['loo_mdape']):>10s} {pct(r['loo_max_ape']):>8s} "
              f"{pct(r['prior_only_mdape']):>10s} {pct(r['band']):>6s}{flag}")
    print(f"spec-only band (leave-device-out median APE of the priors): {100 * rep['spec_only_band']:.1f}%")
    checks = [s for s in rep["spec_only_checks"] if not args.device or s["device"] in args.device]
    if checks:
        print("\npublished figures for devices never fitted (predicted / measured):")
        for s in checks:
            tag = "" if 0.5 <= s["ratio"] <= 2.0 else "  outside factor 2"
            print(f"  {s['device']:20s} {s['model']:24s} {s['arith']:8s} {s['threads']:>2d} thr  "
                  f"{s['measured_ms']:8.1f} ms  predicted {s['predicted_ms']:8.1f} ms  x{s['ratio']:.2f}{tag}")
    print(f"\nJSON report: {out}")
    for p in written:
        print(f"updated {p}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
