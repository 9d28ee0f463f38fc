"""``edgecv quantize MODEL --max-drop POINTS --eval-data DIR [--device ID]``: the precision chooser's options.

:func:`choose_options` adds the options to the quantize command and, when ``--max-drop`` is given, runs
:func:`edgecv.evaluation.choose.choose_precision` instead of a single conversion.
"""

from __future__ import annotations

import functools
import sys

import click

from edgecv.cli.options import CALIB_SAMPLES, VERIFY_SAMPLES, print_json, stdout_console


def _points(ctx, param, value):
    if value is not None and not (value >= 0 and value != float("inf")):
        raise click.BadParameter(f"expected a number of top-1 points >= 0. Received: {value!r}",
                                 param_hint="--max-drop")
    return value


def choose_options(f):
    @click.option("--max-drop", type=float, callback=_points, metavar="POINTS",
                  help="Choose the precision: the fastest whose top-1 drop on --eval-data is at most POINTS "
                       "(tries int8, int8 with the diagnosed layers in float, int16x8, float16, dynamic, float32).")
    @click.option("--eval-data", metavar="DIR|FILE.npz",
                  help="With --max-drop: labelled images (one sub-folder per class, or .npz with x and y), "
                       "disjoint from --calib.")
    @click.option("--labels", "eval_labels", metavar="FILE",
                  help="With --max-drop: class names one a line, in the model's output order.")
    @click.option("--device", metavar="ID",
                  help="With --max-drop: price the candidates on this device profile (predicted) "
                       "[default: measure on this host].")
    @functools.wraps(f)
    def wrapper(*args, max_drop, eval_data, eval_labels, device, **kw):
        if max_drop is None:
            for opt, v in (("--eval-data", eval_data), ("--labels", eval_labels), ("--device", device)):
                if v is not None:
                    raise click.UsageError(f"{opt} applies with --max-drop only")
            return f(*args, **kw)
        if eval_data is None:
            raise click.UsageError("--max-drop needs --eval-data DIR (labelled images held out from --calib)")
        if kw.get("fmt", "tflite") != "tflite":
            raise click.UsageError("--max-drop chooses among TFLite precisions: drop --format onnx")
        return run_choice(kw["model"], max_drop, eval_data, eval_labels, device, kw)

    return wrapper


def run_choice(model, max_drop, eval_data, eval_labels, device, kw) -> None:
    from edgecv.conversion.progress import Reporter, RichReporter
    from edgecv.evaluation.choose import choose_precision

    quiet = kw.get("quiet", False)
    reporter = Reporter() if quiet else RichReporter(show_progress=sys.stderr.isatty())
    extra = {"preprocess": kw["preprocess"]} if kw.get("preprocess") is not None else {}
    try:
        choice = choose_precision(model, max_drop=max_drop, eval_data=eval_data, calib=kw.get("calib"),
                                  labels=eval_labels, device=device, samples=kw.get("samples", CALIB_SAMPLES),
                                  verify_samples=kw.get("verify_samples", VERIFY_SAMPLES),
                                  output=kw.get("output_dir") or kw.get("output") or "edgecv_out",
                                  seed=kw.get("seed", 0), reporter=reporter,
                                  **extra)
    finally:
        if hasattr(reporter, "close"):
            reporter.close()
    if kw.get("as_json"):
        print_json(choice.to_dict())
    else:
        print_choice(choice)
    if choice.winner is None:
        raise click.exceptions.Exit(3)


def print_choice(c) -> None:
    from rich.table import Table

    n = c.data.samples
    con = stdout_console()
    t = Table(title=f"{c.model}: precisions tried on {n} images ({c.data.source}); reference (Keras) top-1 "
                    f"{100 * c.reference_top1:.2f}%, budget {c.max_drop_points:g} points", title_justify="left")
    for col in ("precision", "top-1 %", "drop", "95% interval", "latency ms", "size MiB", "holds", "note"):
        t.add_column(col, justify="right" if col not in ("precision", "note", "holds") else "left",
                     overflow="fold")
    for x in c.candidates:
        win = c.winner is not None and x.label == c.winner.label
        t.add_row(("* " if win else "") + x.label + (f" ({', '.join(x.float_layers)} float)" if x.float_layers else ""),
                  "-" if x.top1 is None else f"{100 * x.top1:.2f}",
                  "-" if x.drop_points is None else f"{x.drop_points:+.2f}",
                  "-" if x.drop_ci95_points is None else f"[{x.drop_ci95_points[0]:+.2f}, {x.drop_ci95_points[1]:+.2f}]",
                  "-" if x.latency_ms is None else f"{x.latency_ms:.3g}",
                  "-" if x.file_bytes is None else f"{x.file_bytes / 2**20:.2f}",
                  "yes" if x.holds_budget else "no", x.note)
    con.print(t)
    src = next((x.latency_source for x in c.candidates if x.latency_source), "")
    if src:
        con.print(f"latency: {src}", soft_wrap=True)
    con.print(c.overlap, soft_wrap=True)
    con.print(f"chosen: {c.reason}", soft_wrap=True)
    if c.winner is not None:
        con.print(f"artifact: {c.winner.path} (sidecar keeps this table); all candidates in "
                  f"{c.candidates[0].path.rsplit('/', 1)[0] if c.candidates[0].path else 'candidates/'}",
                  soft_wrap=True)
