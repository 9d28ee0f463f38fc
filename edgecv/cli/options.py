"""Options shared by several commands, and the JSON/table output helpers."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from edgecv.records import jsonable


# One default per option, whichever command declares it (see the option decorators below).
CALIB_SAMPLES = 100
# 16, not 8: top-1 agreement over N held-out samples moves in steps of 1/N, so a --min-top1-agreement gate of
# 0.9 could not be passed with a single disagreement among 8 (0.875); 16 is also the Python API's default
# (edgecv.conversion.api.quantize) and verifying 8 more samples costs milliseconds next to a conversion.
VERIFY_SAMPLES = 16


def registry_help(text: str) -> str:
    """``text`` with ``{families}`` (the CLI names of the registered families, "a, b or c") and
    ``{variants}`` ("efficientnet: b0..b7; ...") filled from the architecture tables (``models/*.toml`` and
    ``EDGECV_MODELS_PATH``), read when the help is shown: a family added as a TOML file is listed with no code."""
    if "{families}" not in text and "{variants}" not in text:
        return text
    from edgecv.builders.arch import families

    fams = list(families().values())
    names = [f.cli for f in fams]
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    variants = "; ".join(f"{f.cli}: {f.published_variants[0]}..{f.published_variants[-1]}"
                         for f in fams if f.has_named_variants)
    return text.replace("{families}", listed).replace("{variants}", variants)


class RegistryHelpCommand(click.Command):
    """A command whose help text may name the registered families (see :func:`registry_help`)."""

    def format_help_text(self, ctx, formatter):
        import inspect

        text = registry_help(inspect.cleandoc(self.help or "").partition("\f")[0])
        if text:
            formatter.write_paragraph()
            with formatter.indentation():
                formatter.write_text(text)


class RegistryHelpOption(click.Option):
    """An option whose help may name the registered families (see :func:`registry_help`)."""

    def get_help_record(self, ctx):
        rec = super().get_help_record(ctx)
        return None if rec is None else (rec[0], registry_help(rec[1]))


def _stack(f, *decorators):
    """Apply ``decorators`` so that --help lists them in the order given."""
    for d in reversed(decorators):
        f = d(f)
    return f


def output_dir_option(default: str, contents: str, *aliases: str):
    """``-o/--output-dir``: the folder a command writes its files to (every command spells it so);
    ``contents`` says what goes there.

    ``aliases``: older spellings still accepted (``--output`` of ``edgecv quantize``).
    """
    return click.option("-o", "--output-dir", *aliases, "output_dir", default=default, show_default=True,
                        type=click.Path(), help=f"Output folder ({contents}).")


def threads_option(default_note: str):
    """``--threads``: the number of CPU threads the model runs with; ``default_note`` says what None means."""
    return click.option("--threads", type=int, callback=positive_int("--threads"),
                        help=f"CPU threads the model runs with [default: {default_note}].")


def calibration_options(calib_default: str | None = None, *, seed: bool = False):
    """int8/int16x8 calibration: ``--calib`` (the data; ``calib_default`` says what the command uses without
    it, None: no ``--calib`` option), ``--samples`` (how many are drawn, default :data:`CALIB_SAMPLES`) and,
    with ``seed``, ``--seed`` (the seed of the draw)."""
    opts = []
    if calib_default is not None:
        opts.append(click.option("--calib", help="Calibration data: a folder of JPEG/PNG images, a preprocessed "
                                                 ".npy/.npz (N,H,W,C), or 'synthetic' (noise; poor scales) "
                                                 f"[default: {calib_default}]."))
    opts.append(click.option("--samples", type=int, default=CALIB_SAMPLES, show_default=True,
                             callback=positive_int("--samples"), help="Calibration samples (a seeded draw)."))
    if seed:
        opts.append(click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sample draw."))

    def decorate(f):
        return _stack(f, *opts)

    return decorate


def verification_options(*, gates: bool = False):
    """Verification of an artifact against its Keras model: ``--verify-samples`` (held-out samples, default
    :data:`VERIFY_SAMPLES`) and, with ``gates``, ``--no-verify``, ``--min-sqnr`` and ``--min-top1-agreement``."""
    opts = [click.option("--verify-samples", type=int, default=VERIFY_SAMPLES, show_default=True,
                         callback=positive_int("--verify-samples"),
                         help="Held-out samples to verify each artifact against Keras.")]
    if gates:
        opts += [
            click.option("--no-verify", is_flag=True, help="Skip running the artifact against the Keras model."),
            click.option("--min-sqnr", type=float, help="Gate: fail (exit 3) below this output SQNR in dB."),
            click.option("--min-top1-agreement", type=float, callback=fraction("--min-top1-agreement"),
                         help="Gate: fail (exit 3) below this top-1 agreement with Keras (0..1)."),
        ]

    def decorate(f):
        return _stack(f, *opts)

    return decorate


def output_options(f):
    """--json (result object on stdout only), --quiet (no progress on stderr)."""
    f = click.option("--quiet", "-q", is_flag=True, help="No progress or summary on stderr.")(f)
    f = click.option("--json", "as_json", is_flag=True, help="Print only the result as JSON on stdout.")(f)
    return f


to_jsonable = jsonable  # the one JSON converter (edgecv.records.jsonable)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(obj), indent=2) + "\n")


def stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def stdout_console():
    from rich.console import Console

    return Console()


def int_at_least(minimum: int, opt: str):
    """A click callback: an integer >= ``minimum``, else one-line error naming the option and the value."""

    def check(ctx, param, value):
        if value is not None and value < minimum:
            raise click.BadParameter(f"expected an integer >= {minimum}. Received: {value!r}", param_hint=opt)
        return value

    return check


def positive_int(opt: str):
    """A click callback: an integer >= 1."""
    return int_at_least(1, opt)


def fraction(opt: str):
    """A click callback: a number from 0 to 1."""

    def check(ctx, param, value):
        if value is not None and not 0.0 <= value <= 1.0:
            raise click.BadParameter(f"expected a fraction from 0 to 1. Received: {value!r}", param_hint=opt)
        return value

    return check


def progress_status(message: str, quiet: bool = False):
    """A transient spinner on stderr while a slow step runs (nothing when quiet or stderr is not a
    terminal), so that an error stays the only line on stderr."""
    import contextlib

    if quiet:
        return contextlib.nullcontext()
    return stderr_console().status(message)
