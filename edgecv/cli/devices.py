"""``edgecv devices``: list the device profiles, or show one (``edgecv devices show rpi4``)."""

from __future__ import annotations

import click

from edgecv.cli.options import output_options, print_json, stdout_console


def _row(p) -> dict:
    c = p.prediction
    return {"id": p.id, "name": p.name, "kind": p.kind, "soc": p.soc, "cores": p.cores,
            "clusters": " + ".join(f"{cl.count}x {cl.core} @{cl.freq_ghz:g} GHz" for cl in p.clusters),
            "dotprod": p.dotprod, "fp16_arith": p.fp16_arith,
            "peak_fp32_gflops": round(2 * p.peak_gmacs("float32"), 1), "ram_gib": list(p.memory.ram_gib),
            "method": c.method, "anchors": c.anchors_fitted, "band": c.loo_mdape, "path": p.path}


@click.group(invoke_without_command=True)
@output_options
@click.pass_context
def devices(ctx, as_json, quiet):
    """List the device profiles that `edgecv profile MODEL --device ID` can predict for.

    `edgecv devices show rpi4` prints one profile with its sources and fitted coefficients.
    """
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"as_json": as_json}
        return
    from edgecv.devices.profile import load_all

    rows = [_row(p) for p in load_all()]
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    t = Table("id", "name", "CPU", "fp32 GFLOPS", "RAM GiB", "coefficients", "band")
    for r in rows:
        how = f"fitted on {r['anchors']} anchors" if r["method"] == "nnls" else "spec-only (priors)"
        t.add_row(r["id"], r["name"], r["clusters"], f"{r['peak_fp32_gflops']:g}",
                  "/".join(f"{x:g}" for x in r["ram_gib"]), how, f"±{r['band']:.0%}")
    stdout_console().print(t)


@devices.command()
@click.argument("device")
@output_options
@click.pass_context
def show(ctx, device, as_json, quiet):
    """Print one device profile: CPU clusters, memory, power, prediction coefficients, anchors, sources."""
    from edgecv.devices.profile import load_profile

    prof = load_profile(device)
    as_json = as_json or bool((ctx.obj or {}).get("as_json"))
    if as_json:
        print_json(prof.to_dict())
        return
    from rich.table import Table

    con = stdout_console()
    d = prof.to_dict()
    con.print(f"[bold]{prof.id}[/bold]: {prof.name} ({prof.kind}, {prof.soc}), confidence {prof.confidence}")
    con.print(f"profile: {prof.path}")
    t = Table("core", "count", "GHz", "features", "fp32 FLOP/cyc", "fp16 FLOP/cyc", "int8 op/cyc", "L2 KiB", "source",
              title="CPU clusters")
    for c in prof.clusters:
        t.add_row(c.core, str(c.count), f"{c.freq_ghz:g}", ",".join(c.features), f"{c.fp32_flop_per_cycle:g}",
                  f"{c.fp16_flop_per_cycle:g}", f"{c.int8_op_per_cycle:g}", str(c.l2_kib), c.source)
    con.print(t)
    der = d["derived"]
    con.print(f"peak: {der['peak_fp32_gflops']:g} GFLOPS fp32, {der['peak_fp16_gflops']:g} GFLOPS fp16, "
              f"{der['peak_int8_gops']:g} GOPS int8; dot product: {'yes' if der['dotprod'] else 'no'}; "
              f"fp16 arithmetic: {'yes' if der['fp16_arith'] else 'no'}")
    m = prof.memory
    con.print(f"memory: {m.type}, {m.bandwidth_gbs:g} GB/s ({m.bandwidth_kind}), RAM "
              f"{'/'.join(f'{x:g}' for x in m.ram_gib)} GiB, L3 {m.l3_kib} KiB; source: {m.source}")
    pw = prof.power
    if pw.idle_w is not None or pw.active_w is not None:
        con.print(f"power: idle {pw.idle_w if pw.idle_w is not None else '?'} W, active "
                  f"{pw.active_w if pw.active_w is not None else '?'} W; source: {pw.source}")
    c = prof.prediction
    t = Table("coefficient", "value", title=f"prediction ({c.method}, runtime {c.runtime})")
    for k in ("conv_fp32_peak_fraction", "dw_fp32_peak_fraction", "conv_int8_peak_fraction", "dw_int8_peak_fraction",
              "elementwise_bytes_per_cycle", "overhead_us_per_op", "thread_efficiency", "loo_mdape", "anchors_fitted"):
        t.add_row(k, f"{getattr(c, k):g}")
    con.print(t)
    con.print(f"coefficients source: {c.source}")
    if prof.anchors:
        t = Table("model", "precision", "threads", "runtime", "ms", "source", title="anchors (published measurements)")
        for a in prof.anchors:
            t.add_row(a.model, a.precision, str(a.threads), a.runtime, f"{a.latency_ms:g}", a.source)
        con.print(t)
    if prof.sources:
        t = Table("id", "source", title="sources")
        for k, v in prof.sources.items():
            t.add_row(k, v)
        con.print(t)
