"""``edgecv devices``: list the device profiles, or show one (``edgecv devices show rpi4``)."""

from __future__ import annotations

import click

from edgecv.cli.options import output_options, print_json, stdout_console


def _short(core: str) -> str:
    """``kryo-385-gold (cortex-a75)`` -> ``A75``; ``cortex-a72`` -> ``A72``."""
    import re

    m = re.search(r"cortex-([a-z]\d+)", core.lower())
    return m.group(1).upper() if m else core


def _row(p) -> dict:
    c = p.prediction
    return {"id": p.id, "name": p.name, "kind": p.kind, "soc": p.soc, "cores": p.cores,
            "clusters": " + ".join(f"{cl.count}x {cl.core} @{cl.freq_ghz:g} GHz" for cl in p.clusters),
            "short": " + ".join(f"{cl.count}x {_short(cl.core)} @{cl.freq_ghz:g}" for cl in p.clusters),
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

    from rich.table import Column

    t = Table(Column("id", no_wrap=True), "CPU", "GFLOPS fp32", "RAM GiB",
              "coefficients", Column("band", no_wrap=True))
    for r in rows:
        how = f"{r['anchors']} anchors" if r["method"] == "nnls" else "spec-only"
        t.add_row(r["id"], r["short"], f"{r['peak_fp32_gflops']:g}",
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
    d = prof.to_dict()
    out: list[str] = [f"{prof.id}: {prof.name} ({prof.kind}, {prof.soc}), confidence {prof.confidence}",
                      f"  profile: {prof.path}", "CPU clusters:"]
    for c in prof.clusters:
        out.append(f"  {c.count}x {c.core} @{c.freq_ghz:g} GHz [{', '.join(c.features) or 'no SIMD flags'}]: "
                   f"{c.fp32_flop_per_cycle:g} fp32 FLOP/cycle, {c.fp16_flop_per_cycle:g} fp16 FLOP/cycle, "
                   f"{c.int8_op_per_cycle:g} int8 op/cycle; L1d {c.l1d_kib} KiB, L2 {c.l2_kib} KiB")
        out.append(f"    source: {c.source}")
    der = d["derived"]
    out.append(f"peak: {der['peak_fp32_gflops']:g} GFLOPS fp32, {der['peak_fp16_gflops']:g} GFLOPS fp16, "
               f"{der['peak_int8_gops']:g} GOPS int8; dot product: {'yes' if der['dotprod'] else 'no'}; "
               f"fp16 arithmetic: {'yes' if der['fp16_arith'] else 'no'}")
    m = prof.memory
    out.append(f"memory: {m.type}, {m.bandwidth_gbs:g} GB/s ({m.bandwidth_kind}), RAM "
               f"{'/'.join(f'{x:g}' for x in m.ram_gib)} GiB ({m.os_reserved_mib:g} MiB kept by the OS), "
               f"L3 {m.l3_kib} KiB, runtime baseline {m.runtime_baseline_mib:g} MiB")
    out.append(f"  source: {m.source}")
    pw = prof.power
    if pw.idle_w is not None or pw.active_w is not None:
        fmt = lambda v: "?" if v is None else f"{v:g}"  # noqa: E731
        out.append(f"power: idle {fmt(pw.idle_w)} W, active {fmt(pw.active_w)} W")
        out.append(f"  source: {pw.source}")
    c = prof.prediction
    out.append(f"prediction coefficients ({c.method}, runtime {c.runtime}, {c.anchors_fitted} anchors):")
    for k in ("conv_fp32_peak_fraction", "dw_fp32_peak_fraction", "conv_int8_peak_fraction", "dw_int8_peak_fraction",
              "elementwise_bytes_per_cycle", "overhead_us_per_op", "thread_efficiency", "loo_mdape"):
        out.append(f"  {k} = {getattr(c, k):g}")
    out.append(f"  source: {c.source}")
    if prof.anchors:
        out.append("anchors (published measurements):")
        for a in prof.anchors:
            out.append(f"  {a.model} {a.precision} {a.threads} threads on {a.runtime}: {a.latency_ms:g} ms "
                       f"[{a.source}]{' (' + a.note + ')' if a.note else ''}")
    if prof.sources:
        out.append("sources:")
        out += [f"  {k}: {v}" for k, v in prof.sources.items()]
    click.echo("\n".join(out))
