"""``edgecv recommend``: a thin layer over :func:`edgecv.sweep.recommend.recommend`."""

from __future__ import annotations

import sys

import click

from edgecv.formats import PREDICTED

from edgecv.cli.options import output_options, positive_int, print_json, stderr_console, stdout_console, threads_option


@click.command()
@click.option("--device", required=True, help="Device profile id, e.g. rpi4 (see `edgecv devices`).")
@click.option("--budget-ms", type=float, required=True, help="Latency budget per inference, in ms.")
@click.option("--max-memory-mb", type=float, help="Peak memory limit (MB = 10^6 bytes).")
@click.option("--min-top1", type=float, help="Minimum published ImageNet top-1, as a fraction (0.70 = 70%).")
@click.option("--precision", type=click.Choice(PREDICTED),
              help="Only this precision [default: all three].")
@click.option("--from-sweep", type=click.Path(), metavar="DIR",
              help="Candidates from a finished sweep's folder instead of the registry.")
@threads_option("the device profile's")
@click.option("--top", type=int, default=10, show_default=True, callback=positive_int("--top"),
              help="Show at most this many variants.")
@output_options
def recommend(device, budget_ms, max_memory_mb, min_top1, precision, from_sweep, threads, top, as_json, quiet):
    """The variants that meet a latency budget on a device, best published accuracy first.

    Exit code 1 when nothing fits (the binding constraint is named). Latency and memory are predicted from the device profile; accuracy is the ImageNet top-1 published
    for the reference architecture (paper tables). Example: edgecv recommend --device rpi4 --budget-ms 30
    """
    from edgecv.sweep.recommend import recommend as run

    rec = run(device, budget_ms, max_memory_mb=max_memory_mb, min_top1=min_top1, precision=precision,
              from_sweep=from_sweep, threads=threads)
    if as_json:
        print_json(rec)
        if not rec.fits:
            sys.exit(1)  # (ctx.exit's code is dropped by edgecv.cli.main under standalone_mode=False)
        return
    if not rec.fits:
        click.echo(rec.explanation)
        sys.exit(1)
    from rich.table import Column, Table

    measured = getattr(rec, "ranked_by", "published") == "measured"
    t = Table(Column("model", no_wrap=True), "precision", "latency (ms)", "band (ms)", "peak memory (MB)", "MACs (M)",
              *(["measured top-1 (%)"] if measured else []), "published top-1 (%)*", title=f"{len(rec.fits)} of {rec.considered} variants fit {rec.device} "
                                            f"within {rec.budget_ms:g} ms")
    for c in rec.fits[:top]:
        t.add_row(c.model, c.precision, f"{c.latency_ms:.1f}", f"{c.band_low_ms:.1f}-{c.band_high_ms:.1f}",
                  f"{c.peak_memory_bytes / 1e6:.1f}", f"{c.macs / 1e6:.0f}",
                  *(["-" if c.measured_top1 is None else f"{c.measured_top1:.2f}"] if measured else []),
                  "-" if c.published_top1 is None else f"{c.published_top1:.1f}")
    stdout_console().print(t)
    if not quiet:
        stderr_console().print("* published ImageNet top-1 of the trained reference architecture (paper tables); "
                               "predicted latency and memory from the device profile.", highlight=False)
