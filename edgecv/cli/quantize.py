"""``edgecv quantize``: a thin layer over :func:`edgecv.conversion.api.quantize`."""

from __future__ import annotations

import click

from edgecv.formats import FORMATS, IO_TYPES, PRECISIONS

from edgecv.cli.choose import choose_options
from edgecv.cli.options import (calibration_options, output_dir_option, output_options, print_json, stdout_console,
                                verification_options)


def _float_list(ctx, param, value):
    if not value:
        return ()
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    if not names:
        raise click.BadParameter(f"expected NAME[,NAME...]. Received: {value!r}", param_hint="--float-layers")
    return names


@click.command()
@choose_options
@click.argument("model")
@click.option("--precision", type=click.Choice(PRECISIONS),
              default="int8", show_default=True,
              help="Weights/activations precision (int16x8: TFLite, 16-bit activations, 8-bit weights).")
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="tflite", show_default=True,
              help="tflite (all precisions) or onnx (float32, int8 QDQ).")
@calibration_options("none; required for int8, int16x8", seed=True)
@output_dir_option("edgecv_out", "the artifact and its sidecar; or a file path ending in .tflite/.onnx", "--output")
@click.option("--io", "io_type", type=click.Choice(IO_TYPES),
              help="Full-integer TFLite input/output type  [default: int8; int16x8: int16].")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset (13 and up).")
@click.option("--reduce-range", is_flag=True,
              help="ONNX int8: 7-bit weights, for x86 targets without VNNI (their int8 kernels saturate).")
@click.option("--allow-float-fallback", is_flag=True,
              help="int8, int16x8: keep ops without an integer kernel in float.")
@click.option("--float-layers", callback=_float_list, metavar="NAME,...",
              help="int8 TFLite: keep these Keras layers in float (selective quantization).")
@click.option("--debug-layers", is_flag=True, help="int8 TFLite: per-layer error report (worst layers).")
@click.option("--preprocess", metavar="none|tf|torch|caffe|mean=M,..;std=S,..",
              help="How pixels (0..255) become the model input: none (raw), tf ([-1, 1]), torch (ImageNet "
                   "mean/std on [0, 1]), caffe (BGR, mean subtracted) or per-channel mean/std in pixel units  "
                   "[default: the family's for edgecv models; none for a model with a Rescaling/Normalization "
                   "input layer; else tf, with a warning].")
@verification_options(gates=True)
@output_options
def quantize(model, precision, fmt, calib, samples, verify_samples, seed, output_dir, io_type, opset,
             reduce_range, allow_float_fallback, float_layers, debug_layers, preprocess, no_verify, min_sqnr,
             min_top1_agreement, as_json, quiet):
    """Convert MODEL to a quantized TFLite or ONNX file, verified against Keras.

    MODEL is a .keras file or a registry name (see `edgecv models`). The artifact is written as
    <output-dir>/<model>_<precision>.<tflite|onnx> with a sidecar <artifact>.json.

    Example: edgecv quantize mobilenet_v1_0.50_224 --precision int8 --calib photos/
    """
    from edgecv.conversion.api import quantize as run
    from edgecv.conversion.progress import RichReporter
    from edgecv.errors import GateFailed

    reporter = RichReporter(show_progress=not quiet)
    try:
        res = run(model, precision, format=fmt, calib=calib, samples=samples, output=output_dir, io=io_type,
                  opset=opset, allow_float_fallback=allow_float_fallback, float_layers=float_layers,
                  debug_layers=debug_layers, verify=not no_verify, verify_samples=verify_samples,
                  min_sqnr_db=min_sqnr, min_top1_agreement=min_top1_agreement, seed=seed, reduce_range=reduce_range,
                  reporter=reporter, preprocess=preprocess)
    except GateFailed as exc:
        res = getattr(exc, "result", None)
        if res is not None:
            print_json(res.to_dict()) if as_json else _summary(res)
        raise
    finally:
        reporter.close()
    if as_json:
        print_json(res.to_dict())
        return
    _summary(res)


def _summary(res) -> None:
    from rich.table import Table

    t = Table(show_header=False, box=None)
    io = ", ".join(f"{x.dtype}" + (f" (scale {x.scale:.4g}, zero point {x.zero_point})" if x.scale else "")
                   for x in res.inputs)
    t.add_row("artifact", f"{res.path} ({res.file_bytes / 2**20:.2f} MiB)")
    t.add_row("status", "[green]ok[/green]" if res.status == "ok" else "[red]FAILED (gate)[/red]")
    t.add_row("input", io)
    t.add_row("output", ", ".join(x.dtype for x in res.outputs))
    if res.calibration:
        c = res.calibration
        t.add_row("calibration", f"{c.samples} samples from {c.source} (seed {c.seed})")
    v = res.verification
    if v:
        top1 = "n/a" if v.top1_agreement is None else f"{v.top1_agreement:.3f}"
        t.add_row("verification", f"SQNR {v.sqnr_db:.2f} dB, top-1 agreement {top1}, max abs error "
                                  f"{v.max_abs_error:.3g} ({v.samples} samples, {v.runtime})")
        if v.host_kernels_sqnr_db is not None:
            top1 = "n/a" if v.host_kernels_top1_agreement is None else f"{v.host_kernels_top1_agreement:.3f}"
            t.add_row("", f"this CPU's int8 kernels (no VNNI): SQNR {v.host_kernels_sqnr_db:.2f} dB, "
                          f"top-1 agreement {top1}")
        for g in v.failed_gates:
            t.add_row("", f"[red]{g}[/red]")
    else:
        t.add_row("verification", "skipped (--no-verify)")
    if res.float_ops:
        t.add_row("float ops", ", ".join(res.float_ops[:6]))
    t.add_row("sidecar", res.sidecar)
    console = stdout_console()
    console.print(t)
    if res.debug_layers:
        base = f" (output SQNR as converted: {v.sqnr_db:.1f} dB)" if v is not None else ""
        d = Table("Keras layer", "op", "RMSE / scale", "max abs error", "output SQNR if float (dB)",
                  title=f"worst int8 layers{base}")
        for e in res.debug_layers:
            d.add_row(e.layer, e.op, f"{e.rmse_over_scale:.3f}", f"{e.max_abs_error:.3g}",
                      "" if e.output_sqnr_db_if_float is None else f"{e.output_sqnr_db_if_float:.1f}")
        console.print(d)
        if res.diagnosis is not None:
            console.print(f"diagnosis ({res.diagnosis.culprit}): {res.diagnosis.advice}", soft_wrap=True)
