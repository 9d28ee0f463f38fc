"""``edgecv sweep``: a thin layer over :func:`edgecv.sweep.api.run_sweep`."""

from __future__ import annotations

import click

from edgecv.cli.options import (RegistryHelpOption, calibration_options, output_dir_option, output_options,
                                positive_int, print_json, stderr_console, threads_option, verification_options)


@click.command()
@click.option("--model", "model_files", metavar="FILE.keras,...",
              help="Trained models as .keras files, each swept instead of a --family grid (no build stage).")
@click.option("--family", cls=RegistryHelpOption, default="mobilenet", show_default=True, help="{families}.")
@click.option("--alpha", metavar="A,...", help="Width multipliers (MobileNets), e.g. 0.25,0.5,0.75,1.0.")
@click.option("--variant", metavar="V,...", help="Named variants (EfficientNets), e.g. b0,b1 or lite0,lite1.")
@click.option("--resolution", metavar="PX,...", help="Input sizes, e.g. 128,160,192,224 (default: the family's).")
@click.option("--precision", default="float32,float16,int8", show_default=True, metavar="P,...",
              help="float32, float16, int8, dynamic.")
@click.option("--format", "fmt", default="tflite", show_default=True, metavar="F,...",
              help="tflite and/or onnx (onnx: float32, int8).")
@click.option("--classes", type=int, callback=positive_int("--classes"),
              help="Output classes of the --family models [default: 1000].")
@click.option("--weights", type=click.Path(dir_okay=False),
              help="Keras weights file (.weights.h5/.h5) loaded by layer name into the --family model (one "
                   "architecture).")
@click.option("--device", metavar="ID,...", help="Device profiles to predict, e.g. rpi4,pixel4 (see `edgecv devices`).")
@calibration_options("sample photos shipped with scikit-image")
@verification_options()
@click.option("--measure-host", is_flag=True, help="Also measure latency and memory on this machine "
                                                   "(one model at a time, after the conversions).")
@threads_option("each device's for predictions, all cores for host measurements")
@click.option("-j", "--jobs", type=int, default=1, show_default=True, callback=positive_int("-j"),
              help="Local worker processes.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local worker processes, or an existing Ray cluster (pip install 'edgecv[ray]').")
@click.option("--address", help="Ray cluster address (with --executor ray), e.g. auto or ray://head:10001 "
                                "[default: start a local Ray instance].")
@output_dir_option("edgecv_sweep", "results.csv, results.json, report.html and the artifacts")
@click.option("--force", is_flag=True, help="Recompute every point, even those already cached.")
@click.option("--yes", "-y", is_flag=True, help="Run a grid of more than 500 points.")
@click.option("--no-report", is_flag=True, help="Do not write report.html.")
@click.option("--eval-data", metavar="DIR|FILE.npz",
              help="Labelled images (one sub-folder per class, or .npz with x and y): add each artifact's top-1 "
                   "measured on them (the models' outputs must match the classes).")
@click.option("--labels", "eval_labels", metavar="FILE",
              help="With --eval-data: class names one a line, in the models' output order.")
@output_options
def sweep(model_files, family, classes, weights, alpha, variant, resolution, precision, fmt, device, calib, samples, verify_samples, measure_host,
          threads, jobs, executor, address, output_dir, force, yes, no_report, eval_data, eval_labels, as_json, quiet):
    """Build, convert, verify and profile a grid of models; write results.csv, results.json and report.html.

    Each point (model x precision x format) is cached by a hash of its configuration and the tool versions:
    re-running skips finished points, an interrupted sweep resumes where it stopped.

    Example: edgecv sweep --family mobilenet --alpha 0.25,0.5,0.75,1.0 --resolution 128,160,192,224
    --precision float32,float16,int8 --device rpi4,pixel4 -j 2

    Trained models: edgecv sweep --model digits.keras --precision int8,float32 --calib calib.npy
    --eval-data val/ --device rpi4
    """
    from edgecv.errors import EdgecvError
    from edgecv.fileio import check_output_dir
    from edgecv.sweep.api import SweepFailed, run_sweep
    from edgecv.sweep.grid import build_spec, check_size, files_spec

    if address is not None and executor != "ray":
        raise EdgecvError(f"--address applies to --executor ray only. Received: {address!r}")
    if executor == "local":  # a Ray cluster bounds its own workers
        from edgecv.validate import worker_count

        worker_count("-j/--jobs", jobs)
    options = dict(calib=calib, samples=samples, verify_samples=verify_samples, measure_host=measure_host,
                   host_threads=threads, threads=threads)
    if eval_data is not None:  # a bad folder is one line before any work or output
        from edgecv.evaluation.data import open_source

        open_source(eval_data, eval_labels, option="--eval-data")
    if model_files is not None:
        ctx = click.get_current_context()
        mixed = [f"--{n}" for n in ("family", "alpha", "variant", "resolution", "classes", "weights")
                 if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE]
        if mixed:
            raise EdgecvError(f"--model: a sweep of .keras files takes no {'/'.join(mixed)} (grid options of "
                              f"--family models). Received: --model {model_files!r} with {' '.join(mixed)}")
        spec = files_spec(model_files, precision=precision, fmt=fmt, device=device, **options)
    else:
        spec = build_spec(family, alpha=alpha, resolution=resolution, variant=variant, precision=precision,
                          fmt=fmt, device=device, classes=classes, weights=weights, **options)
    check_size(spec, yes)
    if calib is not None and calib != "synthetic":
        from edgecv.conversion.calibration import precheck

        precheck(calib)
    check_output_dir(output_dir, option="-o")
    if eval_labels is not None and eval_data is None:
        raise click.UsageError("--labels applies with --eval-data only")
    progress = None
    con = stderr_console()
    if not quiet and not as_json:
        from edgecv.sweep.progress import RichProgress

        progress = RichProgress(con)
        con.print(f"sweep: {len(spec.models)} model(s) x {len(spec.points) // max(len(spec.models), 1)} "
                  f"precision/format(s) = {len(spec.points)} points"
                  + (f", predicted on {', '.join(spec.devices)}" if spec.devices else "")
                  + (", measured on this host" if measure_host else "") + f" -> {output_dir}", highlight=False)
    try:
        res = run_sweep(spec, output_dir, executor=executor, jobs=jobs, address=address, force=force,
                        progress=progress, report=not no_report, eval_data=eval_data, eval_labels=eval_labels)
    except SweepFailed as exc:
        res = getattr(exc, "result", None)
        if res is not None and not as_json and not quiet:
            for e in res.errors[:10]:
                con.print(f"[red]failed:[/red] {e}", highlight=False, soft_wrap=True)
        raise
    if as_json:
        print_json(res.to_dict() | {"rows": len(res.rows)})
        return
    if not quiet:
        con.print(f"{res.points} points ({res.cached} cached, {res.computed} computed) in {res.seconds:.1f} s",
                  highlight=False)
    click.echo(f"results: {res.results_csv}")
    click.echo(f"         {res.results_json}")
    if res.report:
        click.echo(f"report:  {res.report}")
