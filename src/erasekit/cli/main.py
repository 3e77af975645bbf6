"""The ``erasekit`` command: the Typer app, error handling and exit codes.

Errors map to exit codes through the exception hierarchy (``ErasekitError.exit_code``): 2 bad input, 3 missing
weights, 4 resource limit, 1 internal error. Messages are one line; ``--debug`` shows the traceback.

Each verb group is a module of this package with a ``register(app)`` function, wired in :data:`VERB_MODULES`.
Verb modules import torch, diffusers and transformers inside their commands only, so ``erasekit --help``,
``--version`` and ``methods`` start without them (tests/test_cli_startup.py checks it).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Protocol, cast

import typer
from rich.console import Console

from ..types import ErasekitError
from . import bench, core, data, models, osor, refine, serve, train
from .quiet import quiet_libraries
from .usage import use_plain_usage

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Remove objects (and their shadows and reflections) from photos.")
console = Console(stderr=True, soft_wrap=True)  # one-line messages stay one line on narrow terminals
# The verb groups, in the order `erasekit --help` lists them.
VERB_MODULES = (core, refine, models, serve, osor, bench, train, data)
for _verbs in VERB_MODULES:
    _verbs.register(app)
use_plain_usage(app)


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"erasekit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="show tracebacks for errors"),
          verbose: bool = typer.Option(False, "--verbose",
                                       help="show the libraries' logging and loading bars"),
          version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """Declares the global --debug and --verbose flags for --help; main() reads them from the arguments."""


class _UsageError(Protocol):
    """What click's ClickException and typer's vendored copy of it both provide."""

    exit_code: int

    def show(self) -> None: ...


def _usage_error_types() -> tuple[type[Exception], ...]:
    """Click's usage-error classes: recent typer raises its vendored copy of click's (and no longer depends on
    click), older typer click's own. Whichever of the two is importable counts."""
    types: list[type[Exception]] = []
    with contextlib.suppress(ImportError):
        from typer._click.exceptions import ClickException as VendoredClickException

        types.append(VendoredClickException)
    with contextlib.suppress(ImportError):
        import click

        types.append(click.ClickException)
    return tuple(types)


def _closer_suggestions(error: object) -> None:
    """Keep only option suggestions that look like what was typed. Click compares whole names, dashes
    included, so ``--colour`` was offered ``--out``; here the names are compared without their dashes, at
    difflib's 0.7, so ``--mehtod`` still finds ``--method``."""
    typed = getattr(error, "option_name", None)
    offered = getattr(error, "possibilities", None)
    if not isinstance(typed, str) or not offered:
        return
    import difflib

    bare = {name.lstrip("-"): name for name in offered}
    close = difflib.get_close_matches(typed.lstrip("-"), list(bare), n=3, cutoff=0.7)
    error.possibilities = [bare[name] for name in close]  # type: ignore[attr-defined]


@contextlib.contextmanager
def _noting_ctrl_c() -> Iterator[list[int]]:
    """Python's own Ctrl+C (a KeyboardInterrupt), noted in the yielded list so main() can say "interrupted"
    after typer swallowed it. Only in the main thread and over Python's default handler; else untouched."""
    seen: list[int] = []
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield seen
        return

    def note(signum: int, frame: object) -> None:
        seen.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, note)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point. Returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    verbose = "--verbose" in args
    # Global options, also accepted after the sub-command (`erasekit remove ... --debug`).
    flags = [flag for flag, on in (("--debug", debug), ("--verbose", verbose)) if on]
    args = flags + [a for a in args if a not in flags]
    try:
        # Outside standalone mode click returns a command's `typer.Exit(code)` instead of raising it.
        with quiet_libraries(verbose), _noting_ctrl_c() as ctrl_c:
            code = app(args=args, standalone_mode=False)
        if ctrl_c:  # typer answers a Ctrl+C inside a command with a silent exit code 130
            console.print("interrupted")
    except ErasekitError as exc:
        if debug:
            console.print_exception()
        # soft_wrap: the message stays one line whatever the terminal width (scripts grep it).
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):  # click turns a Ctrl+C inside a command into Abort
        console.print("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001  (the last resort: any crash is one line and exit code 1)
        if isinstance(exc, _usage_error_types()):  # click usage errors carry their own message and exit code
            usage = cast(_UsageError, exc)
            _closer_suggestions(usage)
            usage.show()
            return usage.exit_code
        if debug:
            console.print_exception()
        console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {exc} (run with --debug for details)",
            highlight=False,
            soft_wrap=True,
        )
        return 1
    return code if isinstance(code, int) else 0


def run() -> None:
    """The installed ``erasekit`` script."""
    sys.exit(main())


if __name__ == "__main__":
    run()
