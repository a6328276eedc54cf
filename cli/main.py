"""The ``medxai`` entry point and the one error boundary: MedxaiError -> one stderr line + exit code."""
from __future__ import annotations

import logging
import os
import signal
import sys
import traceback

import typer

from medxai import __version__
from medxai.errors import MedxaiError

from . import console

app = typer.Typer(
    name="medxai",
    help="Explain 3D medical-imaging models: attribution heatmaps on the scan's own grid, scored and reported.",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"medxai {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="More diagnostics on stderr."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors on stderr; no progress bars."),
) -> None:
    """medxai command-line workbench."""
    console.settings.verbose = verbose
    console.settings.quiet = quiet
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING
    logging.basicConfig(stream=sys.stderr, level=level, format="medxai: %(levelname)s: %(message)s", force=True)


def _register_commands() -> None:
    """Each command module is light to import; heavy libraries load inside the commands."""
    from . import run as run_commands  # the module cli/run.py (not this file's run() entry point)
    from . import radiomics as radiomics_commands
    from . import demo as demo_commands
    from . import report as report_commands
    from . import explain as explain_commands
    from . import export_dicom as export_dicom_commands
    from . import models as model_commands
    from . import patch_cohort as patch_cohort_commands
    from . import sample_data, scan
    from . import score as score_commands
    from . import segment as segment_commands

    explain_commands.register(app)
    export_dicom_commands.register(app)
    model_commands.register(app)
    patch_cohort_commands.register(app)
    radiomics_commands.register(app)
    demo_commands.register(app)
    report_commands.register(app)
    run_commands.register(app)
    sample_data.register(app)
    scan.register(app)
    score_commands.register(app)
    segment_commands.register(app)


_register_commands()


def _fail(message: str, code: int) -> None:
    if os.environ.get("MEDXAI_DEBUG") == "1":
        traceback.print_exc(file=sys.stderr)
    sys.stderr.write(f"medxai: error: {message}\n")
    sys.exit(code)


_INTERRUPTED: list[int] = []
# Older spellings kept for scripts written against earlier versions; hidden from --help (Click has no hidden
# alias of one option, so they are rewritten to the documented spelling before parsing).
HIDDEN_ALIASES = {"--output": "--out"}


def canonical_args(args: list[str]) -> list[str]:
    """``args`` with every hidden alias (``--output`` or ``--output=X``) in its documented spelling; values
    after ``--`` are left alone."""
    canonical: list[str] = []
    for position, arg in enumerate(args):
        if arg == "--":
            return canonical + args[position:]
        name, equals, value = arg.partition("=")
        canonical.append(HIDDEN_ALIASES[name] + equals + value if name in HIDDEN_ALIASES else arg)
    return canonical


def _note_interrupt(signum: int, frame: object) -> None:
    """Ctrl-C: remember it, then interrupt as Python does (Typer turns the KeyboardInterrupt into a silent
    exit code 130, which the boundary then reports as one line)."""
    _INTERRUPTED.append(signum)
    signal.default_int_handler(signum, frame)


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app and map every failure to one line and an exit code."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when Ctrl-C is ignored (nohup, &)
        signal.signal(signal.SIGINT, _note_interrupt)
    try:
        result = app(args=canonical_args(sys.argv[1:] if argv is None else list(argv)), standalone_mode=False,
                     prog_name="medxai")
    except typer.Exit as done:  # Typer >= 0.29 bundles its own click: catch its public exception types
        sys.exit(done.exit_code)
    except typer.Abort:
        _fail("interrupted", 130)
    except typer.TyperException as usage:  # usage errors (unknown option, bad value): Click's own message
        show = getattr(usage, "show", None)
        if callable(show):
            show(file=sys.stderr)
        else:
            sys.stderr.write(f"medxai: error: {usage.format_message()}\n")
        sys.exit(usage.exit_code)
    except MedxaiError as error:
        _fail(" ".join(str(error).split()), error.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except MemoryError as error:  # a pre-flight refusal (memory.check_fits) or a real one: not a bug, not bad input
        _fail(f"out of memory: {' '.join(str(error).split()) or 'allocation failed'}", 1)
    except Exception as error:  # the one blanket boundary: anything unexpected is an internal failure
        _fail(f"internal error: {type(error).__name__}: {error} (set MEDXAI_DEBUG=1 for the traceback)", 1)
    if _INTERRUPTED and result == 130:
        _fail("interrupted", 130)
    sys.exit(result if isinstance(result, int) else 0)
