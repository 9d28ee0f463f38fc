"""``edgecv profile``: static counts and a host measurement (or a device prediction, or a target run)."""

from __future__ import annotations

import csv
import io
import sys

import click

from edgecv.cli.options import (int_at_least, output_options, positive_int, print_json, stderr_console, stdout_console,
                                threads_option)
from edgecv.errors import EdgecvError
from edgecv.validate import click_callback, non_negative_float, positive_float

SUMMARY_FIELDS = (
    "model", "format", "precision", "mode", "device", "runtime", "threads", "latency_p50_ms", "latency_mean_ms",
    "latency_std_ms", "latency_min_ms", "latency_p90_ms", "latency_p99_ms", "runs", "init_ms",
    "first_inference_ms", "peak_rss_bytes", "rss_growth_bytes", "macs", "params", "weights_bytes", "file_bytes",
    "peak_activation_bytes", "cpu_model",
)
OP_FIELDS = ("index", "type", "op_class", "dtype", "output_shape", "macs", "params", "weight_bytes",
             "activation_bytes", "input_bytes", "name")


def _lazy(module: str, attr: str, option: str):
    """Import ``module.attr`` on demand; a one-line error if that part of edgecv is not installed yet."""
    import importlib

    try:
        return getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == module or module.startswith(exc.name + ".")):
            raise EdgecvError(f"{option} is not available in this edgecv install ({module} is missing)") from None
        raise
    except AttributeError:
        raise EdgecvError(f"{option} is not available in this edgecv install ({module}.{attr} is missing)") from None


@click.command()
@click.argument("path", type=click.Path(dir_okay=True, path_type=str))
@click.option("--runtime", type=click.Choice(["litert", "onnxruntime"]),
              help="Runtime (default: litert for .tflite/.keras, onnxruntime for .onnx).")
@threads_option("all host cores; the device profile's with --device; the runner's with --target")
@click.option("--warmup-runs", type=int, default=5, show_default=True, callback=int_at_least(0, "--warmup-runs"),
              help="Untimed runs after the first inference.")
@click.option("--runs", type=int, default=50, show_default=True, callback=positive_int("--runs"),
              help="Minimum number of timed runs.")
@click.option("--min-time-s", type=float, default=1.0, show_default=True,
              callback=click_callback(non_negative_float, "--min-time-s"), help="Keep running until this much time has passed.")
@click.option("--cpus", help="Pin the measurement to these CPUs, e.g. 0-3 or 2,3.")
@click.option("--static", "static_only", is_flag=True, help="Static counts only: no measurement.")
@click.option("--ops", "show_ops", is_flag=True, help="Print the per-op table (with --csv: one row per op).")
@click.option("--timeout-s", type=float, default=600.0, show_default=True, callback=click_callback(positive_float, "--timeout-s"),
              help="Kill the measurement after this long (a hung runtime).")
@click.option("--device", help="Predict for a device profile (e.g. rpi4) instead of measuring on the host.")
@click.option("--budget-ms", type=float, callback=click_callback(positive_float, "--budget-ms"),
              help="Latency budget: the prediction says whether the model meets it.")
@click.option("--target", help="Measure on a target instead of the host, e.g. ssh://pi@raspberrypi.local.")
@click.option("--compare-device", help="With --target: compare the measurement with this device's prediction.")
@click.option("--save-anchor", type=click.Path(dir_okay=False), help="With --target: save the measurement as an anchor.")
@click.option("--benchmark-binary", type=click.Path(), help="With --target: a benchmark_model binary to use.")
@click.option("--verify", "verify", type=int, is_flag=False, flag_value=16, default=None,
              callback=int_at_least(1, "--verify"), metavar="[N]",
              help="With --target ssh://: run N (default 16) sample images on the target and compare with the host.")
@click.option("--verify-reference", type=click.Path(dir_okay=False),
              help="With --verify: also compare with this model run on the host (default: the sidecar's source).")
@click.option("--duration", "duration", help="With --target ssh://: a sustained run this long (90s, 10m, 1h): "
              "p50/p90, temperature, frequency and throttling per interval.")
@click.option("--interval", "interval", help="With --duration: the length of one interval (default: a tenth, "
              "1 s to 60 s).")
@click.option("--force", is_flag=True, help="With --save-anchor: save even if the target's core is not the "
              "anchor device's.")
@click.option("--csv", "as_csv", is_flag=True, help="Print a CSV summary row (with --ops: the per-op rows).")
@output_options
def profile(path, runtime, threads, warmup_runs, runs, min_time_s, cpus, static_only, show_ops, timeout_s, device,
            budget_ms, target, compare_device, save_anchor, benchmark_binary, verify, verify_reference, duration,
            interval, force, as_csv, as_json, quiet):
    """Profile a .tflite, .onnx or .keras model: MACs, parameters, activation memory, latency, memory.

    Static counts are read from the graph; the model is then run on this host in a child process
    (first inference, warm-up, timed runs). Profiling .tflite/.onnx never imports TensorFlow.

    Example: edgecv profile mobilenet_v2.tflite --threads 4 --json
    """
    from edgecv.profiling.api import check_model_path

    if as_json and as_csv:
        raise click.UsageError("--json and --csv are exclusive")
    if device and target:
        raise click.UsageError("--device (predict) and --target (measure on a target) are exclusive")
    for opt, val in (("--compare-device", compare_device), ("--save-anchor", save_anchor),
                     ("--benchmark-binary", benchmark_binary), ("--verify", verify), ("--duration", duration)):
        if val is not None and not target:
            raise click.UsageError(f"{opt} needs --target. Received: {opt} {val!r}")
    if verify_reference is not None and verify is None:
        raise click.UsageError(f"--verify-reference needs --verify. Received: --verify-reference {verify_reference!r}")
    if interval is not None and duration is None:
        raise click.UsageError(f"--interval needs --duration. Received: --interval {interval!r}")
    if force and not save_anchor:
        raise click.UsageError("--force needs --save-anchor")
    duration_s = parse_duration(duration, "--duration") if duration is not None else None
    interval_s = parse_duration(interval, "--interval") if interval is not None else None
    if budget_ms is not None and not (device or compare_device):
        raise click.UsageError("--budget-ms needs --device or --compare-device")
    if cpus is not None:
        from edgecv.profiling.runner import parse_cpus

        try:
            parse_cpus(cpus)
        except ValueError:
            raise click.BadParameter(f"expected a list like 0-3 or 2,3. Received: {cpus!r}", param_hint="--cpus")
    check_model_path(path)
    from rich.markup import escape

    err = stderr_console()
    say = ((lambda msg: None) if (quiet or as_json or as_csv or not err.is_terminal)  # progress is for humans only
           else (lambda msg: err.print(msg, soft_wrap=True)))

    if device:
        predict_profile = _lazy("edgecv.devices.predict", "predict_profile", "--device")
        from edgecv.profiling.api import static_profile

        from edgecv.devices.profile import load_profile

        load_profile(device)  # a mistyped device fails now, before the model is read
        say(f"reading [bold]{escape(path)}[/bold] ...")
        res = predict_profile(static_profile(path), device, threads, budget_ms)
    elif target:
        profile_target = _lazy("edgecv.targets", "profile_target", "--target")
        say(f"profiling [bold]{escape(path)}[/bold] on {escape(target)} ...")
        if compare_device:
            from edgecv.devices.profile import load_profile

            load_profile(compare_device)
        res = profile_target(path, target, threads, warmup_runs, runs, min_time_s, compare_device=compare_device,
                             save_anchor=save_anchor, benchmark_binary=benchmark_binary, cpus=cpus,
                             runtime=runtime, timeout_s=timeout_s, budget_ms=budget_ms, verify=verify,
                             verify_reference=verify_reference, duration_s=duration_s, interval_s=interval_s,
                             op_timings=show_ops, force=force)
    else:
        from edgecv.profiling.api import profile as run_profile

        say(f"profiling [bold]{escape(path)}[/bold] on this host ..." if not static_only
            else f"reading [bold]{escape(path)}[/bold] ...")
        res = run_profile(path, runtime=runtime, threads=threads, warmup_runs=warmup_runs, runs=runs,
                          min_time_s=min_time_s, measure=not static_only, cpus=cpus, timeout_s=timeout_s)
    if as_json:
        print_json(res.to_dict())
    elif as_csv:
        sys.stdout.write(ops_csv(res) if show_ops else summary_csv(res))
    else:
        render(res, show_ops)


def sustained_rows(sus) -> list[tuple[str, str]]:
    """Text rows for a sustained run (``ProfileResult.target.sustained``, a ``SustainedRun``)."""
    rows = [("sustained", f"{sus.duration_s:.0f} s in {len(sus.intervals)} intervals of {sus.interval_s:g} s: "
                          f"burst p50 {sus.burst_p50_ms:.2f} ms, steady p50 {sus.steady_p50_ms:.2f} ms "
                          f"({sus.slowdown_pct:+.1f}%)")]
    for iv in sus.intervals:
        temp = "-" if not iv.temp_c else ", ".join(f"{v:g} C" for v in iv.temp_c.values())
        rows.append((f"  t={iv.t_s:.0f}s", f"p50 {iv.p50_ms:.2f} ms, p90 {iv.p90_ms:.2f} ms ({iv.runs} runs); "
                                           f"{temp}; {iv.cpu_mhz or '-'} MHz; throttled {iv.throttled or '-'}"))
    if sus.unavailable:
        rows.append(("  unavailable", "; ".join(sus.unavailable)))
    return rows


def parse_duration(text: str, opt: str) -> float:
    """``90``, ``90s``, ``10m``, ``1.5h`` -> seconds (click.BadParameter naming ``opt`` otherwise)."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|m|min|h)?\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise click.BadParameter(f"expected a length like 90s, 10m or 1h. Received: {text!r}", param_hint=opt)
    value = float(m.group(1)) * {"s": 1, "sec": 1, None: 1, "m": 60, "min": 60, "h": 3600}[m.group(2)]
    if value > 7 * 86400:
        raise click.BadParameter(f"expected at most 7 days. Received: {text!r}", param_hint=opt)
    return value


# ---- rendering (pure functions of a ProfileResult) ---------------------------------------------

def summary_row(res) -> dict:
    def lat(key):
        return None if res.latency_ms is None else getattr(res.latency_ms, key)

    row = {
        "model": res.model, "format": res.format, "precision": res.precision, "mode": res.mode, "device": res.device,
        "runtime": res.runtime.name, "threads": res.runtime.threads,
        "latency_p50_ms": lat("p50"), "latency_mean_ms": lat("mean"),
        "latency_std_ms": lat("std"), "latency_min_ms": lat("min"),
        "latency_p90_ms": lat("p90"), "latency_p99_ms": lat("p99"),
        "runs": lat("runs"), "init_ms": res.init_ms, "first_inference_ms": res.first_inference_ms,
        "peak_rss_bytes": res.peak_rss_bytes, "rss_growth_bytes": res.rss_growth_bytes, "macs": res.macs,
        "params": res.params, "weights_bytes": res.weights_bytes, "file_bytes": res.file_bytes,
        "peak_activation_bytes": res.peak_activation_bytes, "cpu_model": res.env.cpu_model,
    }
    return {k: ("" if v is None else v) for k, v in row.items()}


def summary_csv(res) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerow(summary_row(res))
    return buf.getvalue()


def ops_csv(res) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(OP_FIELDS)
    for op in res.ops:
        w.writerow([op.index, op.type, op.op_class, op.dtype, "x".join(map(str, op.output_shape)), op.macs, op.params,
                    op.weight_bytes, op.activation_bytes, op.input_bytes, op.name])
    return buf.getvalue()


def _mib(n) -> str:
    return "-" if n is None else f"{n / 2**20:,.2f} MiB"


def render(res, show_ops: bool = False) -> None:
    from rich.markup import escape
    from rich.table import Column, Table

    con = stdout_console()
    if not con.is_terminal:  # piped: do not squeeze op names into 80 columns
        con.width = max(con.width, 160)
    t = Table(show_header=False, box=None, title=f"[bold]{escape(res.model)}[/bold]", title_justify="left")
    rt = res.runtime
    where = f"{res.mode} on {res.device}"
    if rt.name:
        where += f" with {rt.name} {rt.version or ''} ({rt.delegate or ''}, {rt.threads} threads)"
    t.add_row("model", f"{res.format} {res.precision}")
    t.add_row("latency", where)
    lat = res.latency_ms
    g = (lambda k: getattr(lat, k))  # noqa: E731
    if lat is not None and g("runs"):  # predicted results carry no runs: their rows come from the prediction
        def ms(k):  # benchmark_model (ADB) prints no p90/p99, and older releases no median: "-"
            return "-" if g(k) is None else f"{g(k):.2f}"

        head = (f"[bold]{ms('p50')} ms[/bold]" if g("p50") is not None
                else f"- (not reported; mean [bold]{ms('mean')} ms[/bold])")
        t.add_row("  median", f"{head}  (mean {ms('mean')} ± {ms('std')}, min {ms('min')}, p90 {ms('p90')}, "
                              f"p99 {ms('p99')}; {g('runs')} runs)")
    if res.init_ms is not None:
        t.add_row("  init / first run", f"{res.init_ms:.1f} ms / {res.first_inference_ms or 0:.1f} ms")
    if res.peak_rss_bytes is not None:
        t.add_row("  peak RSS", f"{_mib(res.peak_rss_bytes)} (growth while loading and running "
                                f"{_mib(res.rss_growth_bytes)})")
    t.add_row("MACs", f"{res.macs / 1e6:,.1f} M")
    t.add_row("parameters", f"{res.params:,}")
    t.add_row("weights", f"{_mib(res.weights_bytes)} (file {_mib(res.file_bytes)})")
    t.add_row("peak activations", f"{_mib(res.peak_activation_bytes)} ({res.peak_activation_bytes:,} B, by liveness)")
    for line in res.notes or []:  # unknown op types (named) and control flow counted approximately
        t.add_row("note", escape(line))
    if res.prediction is not None:
        from edgecv.devices.predict import prediction_rows

        for label, text in prediction_rows(res.prediction):
            t.add_row(label, escape(text))
    if res.comparison is not None:  # a target measurement compared with a device's prediction
        from edgecv.targets.anchor import format_comparison

        t.add_row("compared", escape(format_comparison(res)))
    env = res.env
    if env:
        from edgecv.profiling.cpu_probe import describe

        t.add_row("host" if res.device in ("host", "none") else "target",
                  escape(f"{describe(env.to_dict(), env.cores)}, {env.os or ''}, Python {env.python or ''}"))
    extra = res.target
    if extra.verify is not None:
        from edgecv.targets.numerics import format_verify

        for label, text in format_verify(extra.verify):
            t.add_row(label, escape(text))
    if extra.sustained is not None:
        for label, text in sustained_rows(extra.sustained):
            t.add_row(label, escape(text))
    con.print(t)
    ot = extra.op_timings
    if ot is not None and not ot.available:
        con.print(f"per-op times: not available ({escape(ot.reason or '')})")
    elif ot is not None:
        pred = ot.predicted_by_class_ms or {}
        total = sum(ot.by_class_ms.values()) or 1.0
        c = Table("op class", "measured ms", "measured %", *(
            [f"predicted ms ({ot.predicted_device})"] if pred else []),
            title=f"measured per-op time by class ({ot.mapped}/{ot.measured} measured ops mapped to the "
                  f"{ot.static_ops} static ops; {escape(str(ot.source or ''))})", title_justify="left")
        for cls in list(ot.by_class_ms) + [k for k in pred if k not in ot.by_class_ms]:
            v = ot.by_class_ms.get(cls)
            c.add_row(cls, "-" if v is None else f"{v:.3f}", "-" if v is None else f"{100 * v / total:.1f}",
                      *([f"{pred[cls]:.3f}" if cls in pred else "-"] if pred else []))
        con.print(c)
    if res.ops:
        by = {}
        for op in res.ops:
            c = by.setdefault(op.op_class, [0, 0, 0])
            c[0] += 1
            c[1] += op.macs
            c[2] += op.params
        s = Table("op class", "ops", "MACs (M)", "MACs %", "params", title="by op class", title_justify="left")
        for cls, (n, macs, params) in sorted(by.items(), key=lambda kv: -kv[1][1]):
            s.add_row(cls, str(n), f"{macs / 1e6:,.1f}", f"{100 * macs / max(res.macs, 1):.1f}", f"{params:,}")
        con.print(s)
    if show_ops and res.ops:
        o = Table("#", Column("type", no_wrap=True), "class", "dtype", "output", "MACs", "params", "weights B", "activations B",
                  title="ops in execution order", title_justify="left")
        for op in res.ops:
            o.add_row(str(op.index), op.type, op.op_class, op.dtype, "x".join(map(str, op.output_shape)),
                      f"{op.macs:,}", f"{op.params:,}", f"{op.weight_bytes:,}", f"{op.activation_bytes:,}")
        con.print(o)
