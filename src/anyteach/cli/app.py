"""The `anyteach` command: a thin layer over the Python API (every verb has an API twin).

User errors (`AnyteachError`) are printed as one line and exit with status 2; `--debug` shows the
traceback instead. Under torchrun (`torchrun --nproc-per-node N -m anyteach transfer ...`) the
`transfer` command joins the launch's process group and trains with DDP; rank 0 alone prints.
"""

from __future__ import annotations

import functools
import inspect
import json
import signal
import sys
import threading
import typing
import warnings
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

from ..core import process_group as distributed
from ..core.errors import AnyteachError, AnyteachWarning, os_error_message
from ..core.terminal import SafeConsole
from .spellings import CommandGroup

app = typer.Typer(
    cls=CommandGroup,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="General knowledge transfer between any two pretrained classifiers.",
)
zoo_app = typer.Typer(no_args_is_help=True, help="Build and list the built-in model zoos.")
app.add_typer(zoo_app, name="zoo")
data_app = typer.Typer(no_args_is_help=True, help="Generated datasets: export them as image folders.")
app.add_typer(data_app, name="data")

LOG_WIDTH = 160
"""Columns of the output when it is not a terminal (a log, a pipe, a batch job): wide enough that no
table cell is cut to "+0.…" as at rich's default of 80."""


def output_console(stderr: bool = False) -> Console:
    """A rich console: the terminal's width in a terminal, `LOG_WIDTH` and no colours in a log."""
    probe = SafeConsole(stderr=stderr)
    return probe if probe.is_terminal else SafeConsole(stderr=stderr, width=LOG_WIDTH, no_color=True)


console = output_console()
err_console = output_console(stderr=True)
_state: dict[str, Any] = {"debug": False}


def with_option_flags(*tables: dict, exclude: tuple[str, ...] = ()):
    """Decorator: add one flag per declared option (`options.Option`) to a command.

    The flags, their types and help texts come from the declarations; the command receives the
    options the user gave (not None) as one dict argument `options`.
    """

    def flag_parameter(option) -> inspect.Parameter:
        flag = option.flag
        default = "" if option.default is None else f" (default {option.default})"
        help_text = option.help[0].upper() + option.help[1:] + default + "."
        decls = [f"{flag}/--no-{flag[2:]}"] if option.type is bool else [flag]
        return inspect.Parameter(
            option.name,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Optional[option.type],
            default=typer.Option(None, *decls, help=help_text, show_default=False),
        )

    def wrap(fn):
        hints = typing.get_type_hints(fn)
        base = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in inspect.signature(fn).parameters.values()
            if p.name != "options"
        ]
        taken = {p.name for p in base}
        flags = [
            flag_parameter(o)
            for table in tables
            for o in table.values()
            if o.name not in exclude and o.name not in taken
        ]

        @functools.wraps(fn)
        def command(**kwargs):
            given = {p.name: kwargs.pop(p.name) for p in flags}
            return fn(**kwargs, options={k: v for k, v in given.items() if v is not None})

        command.__signature__ = inspect.Signature(base + flags)
        command.__annotations__ = {p.name: p.annotation for p in base + flags}
        return command

    return wrap


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        print(f"anyteach {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of user errors."),
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    _state["debug"] = debug


def _print_json(obj) -> None:
    from ..core.io import json_ready

    print(json.dumps(json_ready(obj), indent=2, allow_nan=False))


FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg", ".gif", ".webp")
"""File name endings of a figure: a `--plots` directory may not be named like one."""


def plots_directory(path: Optional[Path], option: str = "--plots") -> Optional[Path]:
    """`path` checked as a directory for several figures: not a file, not named like an image file.

    Raises:
        AnyteachError: `x.png` (a directory named like a figure is surely a mistake) or an existing file.
    """
    if path is None:
        return None
    if path.suffix.lower() in FIGURE_SUFFIXES:
        raise AnyteachError(
            f"{option} {path} names a directory for several PNG figures, but it is named like an image file; "
            "give a directory (e.g. figures/)"
        )
    if path.exists() and not path.is_dir():
        raise AnyteachError(f"{option} {path} is a file; give a directory for the figures")
    return path


def _csv(text: Optional[str]) -> Optional[list[str]]:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def with_input_size(reference: str, size: str) -> str:
    """A model reference with `input_size` after its `?` (unless it gives its own): `--input-size`."""
    _, mark, query = reference.partition("?")
    if "input_size=" in query:
        return reference
    return f"{reference}{'&' if mark else '?'}input_size={size}"


def _click_errors() -> tuple[Any, Any]:
    """Click's exception base and its "no arguments: show the help" error, as the click that typer
    runs on defines them (typer 0.29 vendors its own copy of click)."""
    base = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    no_args = getattr(sys.modules[base.__module__], "NoArgsIsHelpError", None) or type("_Never", (Exception,), {})
    return base, no_args


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """anyteach's own warnings as one line on stderr (`warning: ...`); others as Python shows them."""
    if issubclass(category, AnyteachWarning):
        if distributed.is_main():
            err_console.print(f"[yellow]warning:[/yellow] {escape(str(message))}", highlight=False, soft_wrap=True)
        return
    _python_showwarning(message, category, filename, lineno, file, line)


_python_showwarning = warnings.showwarning


INTERRUPTED = 130
"""The exit status of a command stopped by Ctrl-C (128 + SIGINT); SIGTERM exits with 143 (128 + SIGTERM)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a `kill`, a job scheduler's stop), raised where the process is so that it stops as on Ctrl-C:
    every file is written atomically, so what was finished stays and the same command resumes."""


def _terminate(signum, frame) -> None:
    _state["terminated"] = True
    raise Terminated()


def on_interrupt(hint: str) -> None:
    """What the one line printed on Ctrl-C or SIGTERM says after `interrupted:` (a command sets it once it
    knows where its results go)."""
    _state["resume"] = hint


def _interrupted() -> None:
    """One line on Ctrl-C or SIGTERM: what was interrupted and how to resume; exit 130 (SIGINT) or 143 (SIGTERM)."""
    terminated = bool(_state.get("terminated"))
    hint = _state.get("resume") or "run the same command again to resume where it stopped"
    if distributed.is_main():
        err_console.print(
            f"[yellow]interrupted[/yellow]{' (SIGTERM)' if terminated else ''}: {hint}",
            highlight=False,
            soft_wrap=True,
        )
    sys.exit(143 if terminated else 130)


def main() -> None:
    warnings.showwarning = _show_warning
    _state.pop("resume", None)
    _state.pop("terminated", None)
    previous = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    if previous is not None:
        signal.signal(signal.SIGTERM, _terminate)
    try:
        _main()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main() -> None:
    click_error, no_args = _click_errors()
    try:
        code = app(
            standalone_mode=False, prog_name="anyteach"
        )  # click's own errors (a flag's value, an unknown flag) come here
        if code == INTERRUPTED:  # typer turns Ctrl-C (and our SIGTERM) into exit status 130
            _interrupted()
        if isinstance(code, int) and code:
            sys.exit(code)
    except no_args as e:  # `anyteach` or a group alone: its help, as click shows it
        e.show()
        sys.exit(e.exit_code)
    except click_error as e:  # one line like every other error: the message and where the help is
        context = getattr(e, "ctx", None)
        where = f" (see `{context.command_path} --help`)" if context is not None else ""
        _fail(" ".join(e.format_message().split()) + where, e.exit_code)
    except KeyboardInterrupt:  # outside a command (while the command line is read)
        _interrupted()
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(1)
    except SystemExit as e:
        if distributed.active():
            _leave_process_group(e.code if isinstance(e.code, int) else int(e.code is not None))
        raise
    except AnyteachError as e:
        if _state["debug"]:
            raise
        _fail(str(e), e.exit_code)
    except OSError as e:  # a path the user gave: unwritable, a file where a directory belongs, a full disk
        if _state["debug"] or e.errno is None:
            raise
        _fail(*os_error_message(e))


def _fail(message: str, code: int) -> None:
    if distributed.is_main():  # under torchrun every rank raises the same error: print it once
        err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    if distributed.active():
        _leave_process_group(code)
    sys.exit(code)


def _leave_process_group(code: int) -> None:
    """End a torchrun rank: wait for the others (after success), flush, and exit without tearing the
    process group down. Every file is written (atomically) by now; torch's gloo teardown, in
    destroy_process_group or at interpreter exit, aborts a process now and then (seen in about 1 of
    8 launches of a script of four DDP runs), which would turn a finished run into a failed launch."""
    import os

    if code == 0:
        distributed.barrier()
    elif not distributed.is_main():
        # the main rank prints the error: a rank that failed first would make torchrun stop the main rank
        # before it printed, leaving a failed launch without its reason
        import time

        time.sleep(2.0)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
