"""``quantize()``: the Python API behind ``edgecv quantize``.

One call converts one model to one precision and format, verifies the artifact in its own runtime
against the Keras model, writes the artifact and its sidecar JSON atomically, and returns a
:class:`ConversionResult`. A gate that is not met (``min_sqnr_db``, ``min_top1_agreement``) keeps the
artifact, marks the sidecar ``"status": "failed"`` and raises :class:`edgecv.errors.GateFailed`
(exit code 3) carrying the result as ``.result``.

The steps, each in its own place: the options (:mod:`edgecv.conversion.options`), loading the model
(:mod:`edgecv.conversion.loading`), the calibration and verification samples (:mod:`edgecv.conversion.calibration`),
the conversion (:mod:`edgecv.conversion.tflite`, :mod:`edgecv.conversion.onnx_export`), the run against Keras
(:mod:`edgecv.conversion.verify`), the records written (:mod:`edgecv.conversion.records`) and the
``--debug-layers`` diagnosis (:mod:`edgecv.conversion.diagnosis`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgecv.conversion.calibration import CalibrationData, CalibrationSummary, load_calibration
from edgecv.conversion.loading import (LoadedModel, check_keras_file, load_model, preprocessing_dict,
                                      preprocessing_warning, probe_keras_file, resolve_preprocessing)
from edgecv.conversion.onnx_export import int8_kernels_saturate
from edgecv.conversion.options import CheckedOptions, QuantizeOptions, check_float_layers, resolve_output
from edgecv.conversion.preprocess import InputPreprocessing
from edgecv.conversion.progress import Reporter
from edgecv.conversion.records import ConversionResult, Diagnosis, Verification, versions
from edgecv.conversion.verify import (Metrics, TensorInfo, compare, float_ops, inspect_io, outputs_barely_vary,
                                      run_artifact, tflite_ops)
from edgecv.errors import EdgecvError, GateFailed, exception_line
from edgecv.fileio import atomic_path, write_sidecar
from edgecv.formats import FORMATS, PRECISIONS
from edgecv.native import native_output_silenced

__all__ = ["quantize", "QuantizeOptions", "ConversionResult", "Verification", "Diagnosis", "LoadedModel",
           "load_model", "check_keras_file", "probe_keras_file", "versions", "resolve_output", "FORMATS",
           "PRECISIONS", "TensorInfo"]


def quantize(model: Any, precision: str = "int8", *, format: str = "tflite", calib: str | os.PathLike | None = None,
             samples: int = 100, output: str | os.PathLike = "edgecv_out", io: str | None = None, opset: int = 17,
             allow_float_fallback: bool = False, float_layers: tuple[str, ...] | list[str] = (),
             debug_layers: bool = False, verify: bool = True, verify_samples: int = 16,
             min_sqnr_db: float | None = None, min_top1_agreement: float | None = None, seed: int = 0,
             reduce_range: bool = False, reporter: Reporter | None = None,
             isolate_load: bool = True, preprocess: str | InputPreprocessing | None = None,
             options: QuantizeOptions | None = None) -> ConversionResult:
    """Convert ``model`` (registry name, .keras path or keras.Model) to ``precision`` in ``format``.

    Writes ``<output>/<model>_<precision>.<tflite|onnx>`` (or the file ``output``) and ``<artifact>.json``.
    int8 and int16x8 need ``calib`` (a folder of images, a .npy/.npz array, or ``"synthetic"``). ``reduce_range``
    (ONNX int8 only) quantizes weights to 7 bits, for x86 targets without VNNI. ``preprocess`` (``none``,
    ``tf``, ``torch``, ``caffe`` or ``"mean=..;std=.."``, see :mod:`edgecv.conversion.preprocess`) says how
    pixels become the model's input; default: the family's for edgecv models, ``none`` for a model that
    normalizes its own input, else ``tf`` with a warning. It is recorded in the sidecar.

    The keywords are the fields of :class:`QuantizeOptions`; ``options=QuantizeOptions(...)`` passes them as one
    record instead (then no other option keyword may be given).
    """
    given = QuantizeOptions(
        precision=precision, format=format, calib=calib, samples=samples, output=output, io=io, opset=opset,
        allow_float_fallback=allow_float_fallback, float_layers=float_layers, debug_layers=debug_layers,
        verify=verify, verify_samples=verify_samples, min_sqnr_db=min_sqnr_db,
        min_top1_agreement=min_top1_agreement, seed=seed, reduce_range=reduce_range, isolate_load=isolate_load,
        preprocess=preprocess)
    if options is None:
        options = given
    elif given != QuantizeOptions():
        raise TypeError("quantize(): give the options either as keywords or as options=QuantizeOptions(...), "
                        "not both")
    return _quantize(model, options, reporter or Reporter())


def _quantize(model: Any, opts: QuantizeOptions, reporter: Reporter) -> ConversionResult:
    """load -> calibrate -> convert -> verify -> write."""
    t_start = time.perf_counter()
    checked = opts.check()
    # load
    with reporter.task("loading model"):
        loaded = load_model(model, isolate=opts.isolate_load)
    pre_warning = preprocessing_warning(loaded, opts.preprocess)
    loaded = dataclasses.replace(loaded, preprocessing=resolve_preprocessing(loaded, opts.preprocess))
    km = loaded.keras_model
    check_float_layers(km, loaded.name, opts.float_layers)
    final = checked.artifact(loaded.name, opts)
    # calibrate
    data, data_note = _samples(loaded, opts, reporter)
    # convert
    t_conv = time.perf_counter()
    content = _convert(km, opts, checked, data, reporter)
    convert_s = time.perf_counter() - t_conv
    graph, fops = _inspect(content, opts, final, km, reporter)
    # verify: the artifact stays a temporary file until it has run and its inputs and outputs are checked
    verification, ref = None, None
    with atomic_path(final) as tmp:
        tmp.write_bytes(content)
        if opts.verify:
            assert data is not None
            verification, ref, inputs, outputs = _verify(tmp, km, data, data_note, opts, reporter)
        else:  # no run: read the I/O in-process (no child process start-up cost)
            inputs, outputs = inspect_io(content, opts.format)
        _check_io(inputs, outputs, opts, checked, final)
        # The old sidecar describes the old artifact: remove it before the new artifact takes its place, so a
        # run killed between the two writes leaves the new artifact without a sidecar, never with a wrong one.
        Path(f"{final}.json").unlink(missing_ok=True)
    layer_report: tuple = ()
    diagnosis = None
    if opts.debug_layers:
        from edgecv.conversion.diagnosis import debug_report

        assert data is not None
        layer_report, diagnosis = debug_report(km, data, ref, verification, checked.io_type, opts, reporter)
    # write
    if pre_warning:
        reporter.warn(pre_warning)
    result = ConversionResult(
        model=loaded.name, source=loaded.source, format=opts.format, precision=opts.precision, path=str(final),
        sidecar=str(final) + ".json", status="ok" if verification is None or verification.passed else "failed",
        file_bytes=len(content), inputs=inputs, outputs=outputs,
        preprocessing=preprocessing_dict(loaded.preprocessing, tuple(km.input_shape[1:])),
        calibration=data.summary if (opts.calibrated and data is not None) else None,
        verification=verification, convert_seconds=round(convert_s, 3),
        total_seconds=round(time.perf_counter() - t_start, 3), float_ops=tuple(fops),
        float_layers=opts.float_layers, debug_layers=layer_report, diagnosis=diagnosis, graph=graph,
        versions=versions(), warnings=tuple(reporter.warnings),
    )
    return _write(result, final, content, checked.io_type)


def _samples(loaded: LoadedModel, opts: QuantizeOptions, reporter: Reporter) -> tuple[CalibrationData | None, str]:
    """The calibration and held-out verification samples, and a note on where the held-out ones come from."""
    if not (opts.calibrated or opts.verify):
        return None, ""
    from edgecv.validate import check_sample_memory

    input_shape = tuple(loaded.keras_model.input_shape[1:])
    verify_samples = opts.verify_samples
    spec = opts.calib
    if spec is None:
        try:
            import skimage  # noqa: F401
        except ImportError:
            spec = "synthetic-verify"
    if spec == "synthetic-verify":
        check_sample_memory(verify_samples, input_shape, f"--verify-samples {verify_samples}")
        rng = np.random.default_rng(opts.seed)
        px = rng.uniform(0, 255, (verify_samples, *input_shape)).astype(np.float32)
        x = loaded.preprocessing.apply(px)
        data = CalibrationData(x[:0], x, CalibrationSummary("synthetic", "synthetic", 0, len(x), opts.seed,
                                                              input_shape, "uniform noise pixels"))
    else:
        data = load_calibration(spec, input_shape=input_shape, preprocessing=loaded.preprocessing,
                                samples=opts.samples if opts.calibrated else 1,
                                holdout=verify_samples if opts.verify else 0, seed=opts.seed,
                                reporter=reporter, warn_few=opts.calibrated)
    note = {"dir": "held-out images from --calib", "npy": "held-out rows of --calib",
            "npz": "held-out rows of --calib", "synthetic": "random noise pixels",
            "builtin": "scikit-image sample photos (crops/flips)"}.get(data.summary.kind, data.summary.kind)
    return data, note


def _convert(km, opts: QuantizeOptions, checked: CheckedOptions, data: CalibrationData | None,
             reporter: Reporter) -> bytes:
    """The artifact's bytes, converted in this process (TensorFlow's and ONNX's native output silenced)."""
    calib = data.calib if (opts.calibrated and data is not None) else None
    fmt, precision = opts.format, opts.precision
    with reporter.task(f"converting to {fmt} {precision}" + (f" (calibrating on {len(calib)})"
                                                            if calib is not None else ""),
                       total=len(calib) if calib is not None else None) as advance:
        with native_output_silenced():
            if fmt == "tflite":
                return _convert_tflite(km, opts, checked.io_type, calib, advance)
            from edgecv.conversion import onnx_export

            try:
                f32 = onnx_export.export_float(km, opts.opset)
                return f32 if precision == "float32" else onnx_export.quantize_int8(f32, calib, advance,
                                                                                    opts.reduce_range)
            except Exception as exc:  # noqa: BLE001
                raise EdgecvError(f"ONNX {precision} conversion failed: {exception_line(exc)}") from None


def _convert_tflite(km, opts: QuantizeOptions, io_type: str, calib: np.ndarray | None, advance) -> bytes:
    from edgecv.conversion import tflite

    precision, allow_float = opts.precision, opts.allow_float_fallback
    try:
        frozen = tflite.freeze(km)  # tracing fails on names TensorFlow refuses (e.g. a model named "a\\b")
        return tflite.convert(frozen, precision, calib, io_type, allow_float, opts.float_layers,
                              [layer.name for layer in km.layers], advance)
    except EdgecvError:
        raise
    except Exception as exc:  # noqa: BLE001 - converter errors: one line naming what failed
        op = re.search(r"not (?:yet )?supported for op:? '?([A-Za-z0-9_]+)", str(exc))
        if op and opts.calibrated:
            hint = ("" if allow_float else "Use --allow-float-fallback to keep it in float, or ") + \
                ("--precision int8 or float16" if precision == "int16x8" else "--precision dynamic")
            raise EdgecvError(f"{precision}: op {op.group(1)} cannot be quantized to {precision} (no "
                              f"{precision} kernel). {hint[0].upper()}{hint[1:]}") from None
        raise EdgecvError(f"TFLite {precision} conversion failed: {exception_line(exc)}") from None


def _inspect(content: bytes, opts: QuantizeOptions, final: Path, km,
             reporter: Reporter) -> tuple[dict[str, Any], list[str]]:
    """The converted graph's summary and, for full-integer TFLite, its ops left in float (refused unless
    ``allow_float_fallback``)."""
    fops: list[str] = []
    if opts.format != "tflite":
        from edgecv.conversion.onnx_export import qdq_summary

        return qdq_summary(content), fops
    precision = opts.precision
    _check_prepares(content, precision, final)
    ops = tflite_ops(content)
    counts: dict[str, int] = {}
    for op in ops:
        counts[op.type] = counts.get(op.type, 0) + 1
    graph = {"ops": len(ops), "op_counts": counts}
    if opts.calibrated:
        from edgecv.conversion.tflite import layers_in_name

        names = [layer.name for layer in km.layers]
        for op in float_ops(ops):
            lays = layers_in_name(op.output_name, names)
            if set(lays) & set(opts.float_layers):
                continue
            fops.append(f"{op.type} ({', '.join(lays) or op.output_name})")
        if fops and not opts.allow_float_fallback:
            raise EdgecvError(
                f"{precision}: op {fops[0]} cannot be quantized to {precision} (no {precision} kernel)"
                + (f"; {len(fops) - 1} more" if len(fops) > 1 else "")
                + ". Use --allow-float-fallback to keep it in float, or --precision dynamic")
        if fops:
            reporter.warn(f"{precision}: {len(fops)} op(s) left in float: {', '.join(fops[:5])}")
    return graph, fops


def _verify(tmp: Path, km, data: CalibrationData, data_note: str, opts: QuantizeOptions, reporter: Reporter):
    """Run the artifact in its runtime on the held-out samples against Keras: (verification, Keras outputs,
    inputs, outputs)."""
    with reporter.task(f"verifying in {FORMATS[opts.format].runtime} ({len(data.holdout)} samples)"):
        host_run = None
        if (opts.format, opts.precision) == ("onnx", "int8") and not opts.reduce_range and int8_kernels_saturate():
            host_run = run_artifact(tmp, data.holdout)
            run = run_artifact(tmp, data.holdout, qdq_reference=True)
        else:
            run = run_artifact(tmp, data.holdout)
        with native_output_silenced():
            ref = _keras_predict(km, data.holdout)
    if outputs_barely_vary(ref):
        reporter.warn(f"verification: the Keras model gives (nearly) the same output for all "
                      f"{len(ref)} samples (untrained weights?), so matching it proves little; "
                      f"verify a trained model or one with BatchNorm statistics from real images")
    m = compare(ref, run.output)
    verification = _gate(m, data_note, run.runtime, opts)
    if host_run is not None:
        h = compare(ref, host_run.output)
        verification = dataclasses.replace(verification, host_kernels_sqnr_db=h.sqnr_db,
                                           host_kernels_top1_agreement=h.top1_agreement)
        reporter.warn(f"onnx int8: verified as a QDQ reference ({m.sqnr_db:.1f} dB), the arithmetic of Arm "
                      f"and VNNI CPUs; this x86 CPU has no VNNI and ONNX Runtime's int8 kernels here "
                      f"saturate ({h.sqnr_db:.1f} dB): for x86 targets without VNNI use --reduce-range")
    return verification, ref, run.inputs, run.outputs


def _write(result: ConversionResult, final: Path, content: bytes, io_type: str) -> ConversionResult:
    """The sidecar beside its artifact; a failed gate raises GateFailed carrying the result."""
    side = result.to_dict()
    side["io"] = io_type
    write_sidecar(final, content, result.sidecar, side)  # not written if a concurrent writer's artifact took its place
    if result.status != "ok":
        verification = result.verification
        assert verification is not None
        err = GateFailed(f"verification gate failed for {final.name}: {'; '.join(verification.failed_gates)} "
                         f"(artifact kept, marked failed in {Path(result.sidecar).name})")
        err.result = result  # type: ignore[attr-defined]
        raise err
    return result


def _check_prepares(content: bytes, precision: str, final: Path) -> None:
    """LiteRT must be able to allocate the converted model (checked in this process: the converter's own output,
    before anything is written), else one line naming the op. int16x8 fails here when calibration leaves a layer's
    output range at zero: its symmetric 16-bit scale is then too small for the fused activation's bounds."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        with native_output_silenced():  # LiteRT's "Created TensorFlow Lite XNNPACK delegate" line
            Interpreter(model_content=content).allocate_tensors()
    except Exception as exc:  # noqa: BLE001 - the kernel's check, one line
        msg = exception_line(exc).rstrip(".")
        hint = ("; a layer's calibrated output range is zero (an untrained model, or calibration data that never "
                "activates it): calibrate on real images" if "no_integer_overflow_from_quantization" in msg else "")
        raise EdgecvError(f"{final.name}: LiteRT cannot prepare the converted {precision} model: {msg}{hint}") from None


def _keras_predict(km, x: np.ndarray, batch: int = 16) -> np.ndarray:
    outs = [np.asarray(km(x[i:i + batch], training=False)) for i in range(0, len(x), batch)]
    return np.concatenate(outs).astype(np.float32)


def _gate(m: Metrics, data_note: str, runtime: str, opts: QuantizeOptions) -> Verification:
    min_sqnr_db, min_top1 = opts.min_sqnr_db, opts.min_top1_agreement
    failed = []
    if min_sqnr_db is not None and m.sqnr_db < min_sqnr_db:
        failed.append(f"SQNR {m.sqnr_db:.2f} dB < --min-sqnr {min_sqnr_db:g}")
    if min_top1 is not None:
        if m.top1_agreement is None:
            failed.append("top-1 agreement is undefined for this output (not a class vector)")
        elif m.top1_agreement < min_top1:
            failed.append(f"top-1 agreement {m.top1_agreement:.3f} < --min-top1-agreement {min_top1:g}")
    return Verification(sqnr_db=m.sqnr_db, top1_agreement=m.top1_agreement, max_abs_error=m.max_abs_error,
                        samples=m.samples, data=data_note, runtime=runtime, passed=not failed,
                        failed_gates=tuple(failed), min_sqnr_db=min_sqnr_db, min_top1_agreement=min_top1)


def _check_io(inputs, outputs, opts: QuantizeOptions, checked: CheckedOptions, final: Path) -> None:
    want = checked.io_type if (opts.format == "tflite" and opts.calibrated) else "float32"
    got = {t.dtype for t in (*inputs, *outputs)}
    if got != {want}:
        raise EdgecvError(f"{final.name}: expected {want} inputs and outputs, the converter produced "
                          f"{sorted(got)}")
