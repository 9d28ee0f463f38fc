"""``edgecv demo``: the end-to-end loop on one model, offline, in a few minutes.

Builds MobileNetV1 0.5 (224 px), converts it to int8 TFLite (calibrated on sample photos that ship with
scikit-image) and float16 TFLite, exports float32 ONNX, verifies each against Keras, measures each on this
host, predicts the TFLite files on a Raspberry Pi 4 and a Pixel 4, and writes report.html. It is a
three-point sweep (``edgecv.sweep``), so running it again is instant.
"""

from __future__ import annotations

import click

from edgecv.cli.options import (calibration_options, output_dir_option, output_options, print_json,
                                stderr_console, stdout_console, verification_options)
from edgecv.validate import click_callback, worker_count

DEMO_MODEL = dict(family="mobilenet", alpha="0.5", resolution="224")
DEMO_COMBOS = (("int8", "tflite"), ("float16", "tflite"), ("float32", "onnx"))
DEMO_DEVICES = "rpi4,pixel4"


@click.command()
@output_dir_option("edgecv_demo", "the artifacts, results and report.html")
@calibration_options()  # --samples: crops of scikit-image's photos
@verification_options()
@click.option("-j", "--jobs", type=int, default=2, show_default=True, callback=click_callback(worker_count, "-j/--jobs"),
              help="Worker processes for the conversions.")
@click.option("--force", is_flag=True, help="Redo every step, even if a previous run finished it.")
@output_options
def demo(output_dir, samples, verify_samples, jobs, force, as_json, quiet):
    """Build MobileNetV1 0.5, quantize it (int8, float16), export ONNX, profile, predict rpi4 and pixel4, report.

    Offline; a few minutes on 2 cores. Example: edgecv demo
    """
    from edgecv.sweep.api import run_sweep
    from edgecv.sweep.grid import build_spec

    spec = build_spec(DEMO_MODEL["family"], alpha=DEMO_MODEL["alpha"], resolution=DEMO_MODEL["resolution"],
                      combos=DEMO_COMBOS, device=DEMO_DEVICES, samples=samples, verify_samples=verify_samples,
                      measure_host=True)
    from edgecv.fileio import check_output_dir

    check_output_dir(output_dir, option="-o")  # fail before any output
    progress = None
    con = stderr_console()
    if not quiet and not as_json:
        from edgecv.sweep.progress import RichProgress

        con.print(f"demo: {spec.models[0]} -> int8 TFLite, float16 TFLite, float32 ONNX; measured on this host, "
                  f"predicted on {', '.join(spec.devices)}", highlight=False)
        progress = RichProgress(con)
    res = run_sweep(spec, output_dir, jobs=jobs, force=force, progress=progress, report=True)
    if as_json:
        print_json({"report": res.report, "results_csv": res.results_csv, "results_json": res.results_json,
                    "rows": res.rows})
        return
    from rich.table import Column, Table

    t = Table(Column("artifact", no_wrap=True), "device", "latency (ms)", "MiB", "SQNR vs Keras (dB)",
              title=f"{spec.models[0]}")
    for r in res.rows:
        lat = r.get("latency_ms.mean")
        how = "measured" if r.get("mode") == "measured" else "predicted"
        t.add_row(f"{r['precision']} {r['format']}", f"{r['device']} ({how})",
                  "-" if lat is None else f"{lat:.2f}", f"{(r.get('file_bytes') or 0) / 2**20:.2f}",
                  "-" if r.get("sqnr_db") is None else f"{r['sqnr_db']:.1f}")
    if not quiet:
        stdout_console().print(t)
        low = [r for r in res.rows if r.get("precision") == "int8" and (r.get("sqnr_db") or 0) < 10]
        if low:
            con.print("note: the demo model is untrained (random weights, BatchNorm statistics set on photos), so its "
                      "softmax is nearly uniform, below int8's output step of 1/256: the int8 SQNR says nothing "
                      "about a trained model's int8 accuracy. Latency and size do not depend on the weights.",
                      highlight=False)
        con.print(f"{res.points} points ({res.cached} cached, {res.computed} computed) in {res.seconds:.1f} s",
                  highlight=False)
    click.echo(f"report: {res.report}")
