"""The ``edgecv`` command: a thin click layer over the Python API.

Subcommands live in their own modules and are imported only when invoked (or listed by --help);
none of them imports TensorFlow at module level, so ``edgecv --help`` is instant.
User errors become one line on stderr and exit code 2; Ctrl-C exits 130, SIGTERM 143, SIGHUP 129.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys

import click

from edgecv import __version__
from edgecv.errors import EdgecvError, one_line

# command name -> "module:function"; each module owns its command.
COMMANDS = {
    "build": "edgecv.cli.build:build",
    "models": "edgecv.cli.build:models",
    "quantize": "edgecv.cli.quantize:quantize",
    "profile": "edgecv.cli.profile:profile",
    "devices": "edgecv.cli.devices:devices",
    "sweep": "edgecv.cli.sweep:sweep",
    "recommend": "edgecv.cli.recommend:recommend",
    "demo": "edgecv.cli.demo:demo",
    "evaluate": "edgecv.cli.evaluate:evaluate",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return [name for name in COMMANDS if self._load(name) is not None]

    def get_command(self, ctx, name):
        return self._load(name)

    @staticmethod
    def _load(name):
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as exc:  # a command whose module has not landed yet
            if exc.name and exc.name.startswith("edgecv"):
                return None
            raise


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgecv")
def cli():
    """edgecv: build, quantize and profile mobile CNNs for edge devices, offline."""


def _leave(code: int, word: str, console: bool) -> None:
    from edgecv.isolation import leaving

    leaving()
    click.echo(f"edgecv: {word}", err=True)
    # Artifacts were cleaned up while the exception unwound. Leave now: a normal interpreter shutdown waits
    # for TensorFlow's and Ray's threads, and a second Ctrl-C there would end the process by signal instead.
    # (Only as the console script: called with ``argv``, from Python, exit through SystemExit as usual.)
    if not console:
        sys.exit(code)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI and map every outcome to an exit code.

    Ctrl-C exits 130, SIGTERM 143, SIGHUP 129 (one line; partial files removed, child processes ended)."""
    from edgecv.isolation import Terminated, install_signal_handlers

    if argv is None:
        install_signal_handlers()
    try:
        rc = cli.main(args=argv, prog_name="edgecv", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        _leave(130, "interrupted", argv is None)
    except Terminated as exc:
        _leave(exc.exit_code, "terminated" if exc.signum == signal.SIGTERM else "hang-up", argv is None)
    except click.ClickException as exc:  # usage errors, bad parameters
        click.echo(f"edgecv: error: {one_line(exc.format_message())}", err=True)
        sys.exit(2)
    except EdgecvError as exc:
        click.echo(f"edgecv: error: {one_line(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(1)
    except Exception as exc:  # a bug in edgecv, not in the user's input
        if os.environ.get("EDGECV_DEBUG"):
            raise
        click.echo(f"edgecv: internal error: {type(exc).__name__}: {one_line(str(exc))} "
                   "(set EDGECV_DEBUG=1 for the traceback)", err=True)
        sys.exit(1)
    # The command is complete (its files are in place): a Ctrl-C during interpreter shutdown must not turn that
    # into an exit by signal.
    if argv is None:
        for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
            if sig is not None:
                signal.signal(sig, signal.SIG_IGN)
    sys.exit(rc if isinstance(rc, int) else 0)
