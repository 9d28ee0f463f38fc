"""``edgecv build`` and ``edgecv models``."""

from __future__ import annotations

import click

from edgecv.cli.options import (RegistryHelpCommand, RegistryHelpOption, output_dir_option, output_options, print_json,
                                progress_status, stdout_console)


class _Number(click.ParamType):
    """A finite float > 0 with a keras-style message: ``Expected alpha > 0. Received: alpha='abc'``."""

    name = "number"

    def __init__(self, what: str):
        self.what = what

    def convert(self, value, param, ctx):
        import math

        try:
            v = float(value)
        except (TypeError, ValueError):
            self.fail(f"expected a number > 0. Received: {self.what}={value!r}", param, ctx)
        if not math.isfinite(v) or v <= 0:
            self.fail(f"expected a number > 0. Received: {self.what}={value!r}", param, ctx)
        return v


class _Resolution(click.ParamType):
    name = "pixels"

    def convert(self, value, param, ctx):
        try:
            return int(value)
        except (TypeError, ValueError):
            self.fail(f"expected an integer number of pixels. Received: resolution={value!r}", param, ctx)


@click.command(cls=RegistryHelpCommand)
@click.argument("family")
@click.option("--alpha", type=_Number("alpha"), help="Width multiplier (MobileNets); any value > 0.")
@click.option("--variant", cls=RegistryHelpOption, help="Named variant ({variants}).")
@click.option("--width", type=_Number("width"), help="EfficientNet width coefficient (custom point).")
@click.option("--depth", type=_Number("depth"), help="EfficientNet depth coefficient (custom point).")
@click.option("--resolution", type=_Resolution(), help="Input size in pixels (MobileNets: a multiple of 32).")
@click.option("--depth-multiplier", type=int, default=1, show_default=True, help="MobileNetV1 depthwise multiplier.")
@click.option("--dropout", type=float, help="Dropout before the classifier (default: the paper's).")
@click.option("--classes", type=int, default=1000, show_default=True, help="Number of output classes.")
@click.option("--no-top", is_flag=True, help="Feature extractor: no classifier.")
@click.option("--pooling", type=click.Choice(["avg", "max", "none"]), default="none", show_default=True,
              help="Global pooling of a --no-top model.")
@click.option("--input-channels", type=int, default=3, show_default=True, help="Channels of the input image.")
@click.option("--weights", type=click.Path(dir_okay=False), help="Keras weights file, loaded by layer name.")
@output_dir_option("edgecv_out", "the .keras file")
@output_options
def build(family, alpha, variant, width, depth, resolution, depth_multiplier, dropout, classes, no_top, pooling,
          input_channels, weights, output_dir, as_json, quiet):
    """Build a model and save it as <output-dir>/<name>.keras.

    FAMILY is {families}.
    Example: edgecv build mobilenet --alpha 0.5
    """
    from edgecv.builders.api import build as build_model
    from edgecv.builders.registry import config_for
    from edgecv.fileio import check_output_dir

    cfg = config_for(family, alpha=alpha, variant=variant, width=width, depth=depth, resolution=resolution,
                     depth_multiplier=depth_multiplier, dropout=dropout, classes=classes, include_top=not no_top,
                     pooling=None if pooling == "none" else pooling, input_channels=input_channels)
    check_output_dir(output_dir)  # fail before the slow TensorFlow import
    if weights is not None:
        import os

        if not os.path.isfile(weights):
            raise click.BadParameter(f"no such file. Received: {weights!r}", param_hint="--weights")
    with progress_status(f"building [bold]{cfg.name}[/bold] ...", quiet=quiet or as_json):
        res = build_model(cfg, output_dir=output_dir, weights=weights)
    if as_json:
        print_json(res)
        return
    from rich.table import Table

    t = Table(show_header=False, box=None)
    for k, v in (("model", res.name), ("input shape", "x".join(map(str, res.input_shape))),
                 ("parameters", f"{res.params:,} (deployed, BatchNorm folded: {res.params_deployed:,})"),
                 ("MACs", f"{res.macs / 1e6:,.1f} M"), ("file", f"{res.path} ({res.file_bytes / 2**20:.2f} MiB)")):
        t.add_row(k, v)
    stdout_console().print(t)


@click.command()
@click.option("--pattern", "-p", help="Shell-style filter, e.g. 'efficientnet_b*'.")
@click.option("--rebuild", is_flag=True,
              help="Build the listed models and recompute the costs cached in the package (needs TensorFlow).")
@output_options
def models(pattern, rebuild, as_json, quiet):
    """List the registered models with their parameters and MACs (from costs cached in the package)."""
    from edgecv.builders.registry import list_models
    from edgecv.sweep.registry_features import cached_costs, refresh

    names = list_models(pattern)
    costs = dict(cached_costs())
    todo = names if rebuild else [n for n in names if n not in costs]
    if todo:  # --rebuild (rewrites the package's cache), or models not in it (user families: built, not cached)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from edgecv.cli.options import stderr_console

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=stderr_console(), disable=quiet or as_json, transient=False) as bar:
            task = bar.add_task("building", total=len(todo))

            def step(name):
                if bar.tasks[task].description != "building":
                    bar.advance(task)
                bar.update(task, description=f"building {name}")

            if rebuild:
                refresh(names=todo, progress=step)
                costs = dict(cached_costs())
            else:
                from edgecv.devices.features import build_entry

                for n in todo:
                    step(n)
                    costs[n] = build_entry(n)["cost"]
            bar.update(task, completed=len(todo), description="built")
    rows = [{"name": n, "input_shape": list(costs[n]["input_shape"]), "params": costs[n]["params"],
             "params_deployed": costs[n]["params_deployed"], "macs": costs[n]["macs"]} for n in names]
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    t = Table("model", "input", "params", "MACs (M)")
    for r in rows:
        t.add_row(r["name"], "x".join(map(str, r["input_shape"])), f"{r['params']:,}", f"{r['macs'] / 1e6:,.1f}")
    stdout_console().print(t)
