"""``edgecv evaluate``: a thin layer over :func:`edgecv.evaluation.evaluate`."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import click

from edgecv.cli.options import output_options, positive_int, print_json, stdout_console

CSV_FIELDS = ("path", "format", "precision", "runtime", "samples", "top1", "top5", "is_reference", "drop_points",
              "drop_ci95_low", "drop_ci95_high", "agreement", "worst_classes", "file_bytes", "seconds")


def csv_text(ev) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for r in ev.results:
        w.writerow([r.path, r.format, r.precision, r.runtime, r.samples, r.top1, "" if r.top5 is None else r.top5,
                    int(r.is_reference), r.drop_points, r.drop_ci95_points[0], r.drop_ci95_points[1], r.agreement,
                    "; ".join(f"{c.name} -{c.drop_points:g}" for c in r.worst_classes), r.file_bytes, r.seconds])
    return buf.getvalue()


@click.command()
@click.argument("artifacts", nargs=-1, required=True, metavar="ARTIFACT...")
@click.option("--data", required=True, metavar="DIR|FILE.npz",
              help="Labelled images: one sub-folder per class (JPEG/PNG), or a .npz with x (N,H,W,C) and y (N,).")
@click.option("--labels", metavar="FILE", help="Class names one a line, in the model's output order "
                                              "[default: the sub-folders in alphabetical order].")
@click.option("--reference", metavar="MODEL", help="The float model the drops are measured from "
                                                   "[default: the first .keras or float32 artifact].")
@click.option("--batch", type=int, default=32, show_default=True, callback=positive_int("--batch"),
              help="Images per runtime call.")
@click.option("--csv", "csv_path", metavar="FILE", help="Also write one CSV row per artifact to FILE.")
@output_options
def evaluate(artifacts, data, labels, reference, batch, csv_path, as_json, quiet):
    """Measure the accuracy of ARTIFACT... (.keras, .tflite, .onnx) on labelled data.

    Each artifact runs in its own runtime (Keras, LiteRT, ONNX Runtime) in a child process, with the
    preprocessing its sidecar records. Reported: top-1, top-5 (more than 5 classes), the drop from the float
    reference in points with a 95% paired bootstrap interval, top-1 agreement and the classes that lose most.

    Example: edgecv evaluate model.keras out/model_int8.tflite --data val/
    """
    from edgecv.conversion.progress import Reporter, RichReporter
    from edgecv.evaluation import evaluate as run
    from edgecv.fileio import write_text_atomic

    if csv_path is not None:
        parent = Path(csv_path).parent
        if Path(csv_path).is_dir() or not parent.is_dir():
            raise click.BadParameter(f"expected a file in an existing folder. Received: {csv_path!r}",
                                     param_hint="--csv")
    reporter = Reporter() if quiet else RichReporter(show_progress=sys.stderr.isatty())
    try:
        ev = run(list(artifacts), data, labels=labels, reference=reference, batch=batch, reporter=reporter)
    finally:
        if hasattr(reporter, "close"):
            reporter.close()
    if csv_path is not None:
        write_text_atomic(csv_path, csv_text(ev))
    if as_json:
        print_json(ev.to_dict())
        return
    print_table(ev)


def print_table(ev) -> None:
    from rich.table import Table

    d = ev.data
    n = d.samples
    console = stdout_console()
    t = Table(title=f"{n} images, {len(d.classes)} classes ({d.source}); drop = reference minus artifact, top-1 "
                    f"points, with its 95% interval (paired bootstrap over the {n} images)", title_justify="left")
    t.add_column("artifact", overflow="fold")
    t.add_column("precision")
    for col in ("top-1 %", "top-5 %", "drop", "95% interval", "agree %"):
        t.add_column(col, justify="right", no_wrap=True)
    for r in ev.results:
        lo, hi = r.drop_ci95_points
        ref = r.is_reference
        t.add_row(Path(r.path).name + (" (reference)" if ref else ""), r.precision, f"{100 * r.top1:.2f}",
                  "-" if r.top5 is None else f"{100 * r.top5:.2f}", "-" if ref else f"{r.drop_points:+.2f}",
                  "-" if ref else f"[{lo:+.2f}, {hi:+.2f}]", "-" if ref else f"{100 * r.agreement:.1f}")
    console.print(t)
    for r in ev.results:
        if r.worst_classes:
            worst = ", ".join(f"{c.name} {100 * c.reference_top1:.0f}->{100 * c.top1:.0f}% ({c.samples} images)"
                              for c in r.worst_classes)
            console.print(f"{Path(r.path).name}: classes that lose most: {worst}", soft_wrap=True)
