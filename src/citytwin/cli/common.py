"""Shared CLI helpers: workspace option, error reporting, progress bars, JSON output.

Kept light on purpose: importing this module (and so building the command tree for
``citytwin --help``) must not import pandas, DuckDB, GeoPandas, numba or FastAPI; the command
functions import what they use (``tests/workflows/test_layering.py`` checks it).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

# typer >= 0.29 carries its own copy of Click (typer._click): its usage errors are these classes
from typer._click import ClickException, Context, Parameter
from typer._click.exceptions import NoSuchOption, UsageError
from typer.core import TyperGroup

from citytwin.foundation.errors import CitytwinError

if TYPE_CHECKING:
    from citytwin.foundation.workspace import Workspace

# the same names as citytwin.foundation.workspace.ENV_WORKSPACE / ENV_USER (a test checks it); not
# imported from there because that module imports DuckDB, pandas and GeoPandas
ENV_WORKSPACE = "CITYTWIN_WORKSPACE"
ENV_USER = "CITYTWIN_USER"

console = Console(width=None if sys.stdout.isatty() else 130)
err_console = Console(stderr=True)

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", envvar=ENV_WORKSPACE, help="Workspace folder (or $CITYTWIN_WORKSPACE)."),
]
UserOpt = Annotated[
    str | None, typer.Option("--user", "-u", envvar=ENV_USER, help="Act as this user (or $CITYTWIN_USER).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DaskOpt = Annotated[str | None, typer.Option(
    "--dask", help="Run on Dask: local:N (N worker processes here) or tcp://HOST:PORT (a running scheduler).")]
"""The one ``--dask`` option (:mod:`citytwin.foundation.scaleout`)."""
"""The one ``--json`` option; a command that takes it must name its parameter ``as_json`` (errors are
then printed as JSON too, see :func:`handle_errors`)."""

F = TypeVar("F", bound=Callable[..., Any])


def error_record(exc: CitytwinError) -> dict[str, Any]:
    """A citytwin error as a JSON-ready record: ``error`` (the message), ``hint``, ``type`` and, for an
    input error, ``file``, ``row`` and ``field``."""
    rec: dict[str, Any] = {"error": exc.message, "hint": exc.hint, "type": type(exc).__name__}
    for key in ("file", "row", "field"):
        if hasattr(exc, key):
            rec[key] = getattr(exc, key)
    return rec


def handle_errors(func: F) -> F:
    """Turn citytwin errors into a red message and exit code 2 (no traceback).

    When the command was called with ``--json`` (its ``as_json`` parameter), the error is printed to
    stdout as one JSON object (:func:`error_record`) instead, so that the output stays valid JSON.
    """

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (CitytwinError, ValueError, KeyError, OSError) as exc:
            # unreadable input that a library reports as ValueError/KeyError/OSError is said the same way
            rec = error_record(exc) if isinstance(exc, CitytwinError) else {
                "error": f"{type(exc).__name__}: {exc}", "hint": None, "type": type(exc).__name__}
            if kwargs.get("as_json"):
                print_json(rec)
                raise typer.Exit(2) from None
            # soft_wrap: never wrapped at the terminal's width (a message is one line to grep, whatever the width)
            err_console.print(f"[bold red]error:[/] {rec['error']}", highlight=False, soft_wrap=True)
            if rec["hint"]:
                err_console.print(f"[yellow]hint:[/] {rec['hint']}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def usage_error_record(exc: ClickException) -> dict[str, Any]:
    """A usage error of Click (a missing or unknown option, a bad value, an unknown command) as a
    JSON-ready record in :func:`handle_errors`' shape, plus ``command`` (the command line's command
    path) and ``parameter`` (the option or argument at fault, None when the error names none).

    Examples
    --------
    >>> from typer._click.exceptions import NoSuchOption
    >>> usage_error_record(NoSuchOption("--bogus"))["parameter"]
    '--bogus'
    """
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else None
    parameter: str | None = None
    param = getattr(exc, "param", None)
    if isinstance(exc, NoSuchOption):
        parameter = exc.option_name
    elif isinstance(param, Parameter) and param.param_type_name == "option" and param.opts:
        parameter = max(param.opts, key=lambda o: (o.startswith("--"), len(o)))
    elif isinstance(param, Parameter):  # an argument: its name, as the message says it
        parameter = param.name
    elif getattr(exc, "param_hint", None):
        hint = exc.param_hint  # type: ignore[attr-defined]
        parameter = hint if isinstance(hint, str) else " / ".join(hint)
    return {"error": exc.format_message(), "hint": f"see `{command or 'citytwin'} --help`",
            "type": type(exc).__name__, "command": command, "parameter": parameter}


def _wants_json(args: list[str]) -> bool:
    """Whether ``--json`` is among a command line's options (not after ``--``)."""
    return "--json" in (args[:args.index("--")] if "--" in args else args)


_JSON_META = "citytwin.json"


class JsonUsageGroup(TyperGroup):
    """The root command group: a Click usage error (missing, unknown or bad option or argument, unknown
    command) on a command line that holds ``--json`` is printed as one JSON object
    (:func:`usage_error_record`) on stdout, exit code 2; without ``--json`` Click's own message.

    Once, for every command: the root parses its own options in :meth:`make_context` and every
    subcommand's inside :meth:`invoke` (where a command's own ``typer.BadParameter`` also arrives).
    """

    def make_context(self, info_name: str | None, args: list[str], parent: Context | None = None,
                     **extra: Any) -> Context:
        as_json = _wants_json(list(args))
        try:
            ctx = super().make_context(info_name, args, parent=parent, **extra)
        except ClickException as exc:
            if as_json:
                _usage_json_exit(exc)
            raise
        ctx.meta[_JSON_META] = as_json
        return ctx

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except ClickException as exc:
            if ctx.meta.get(_JSON_META):
                _usage_json_exit(exc)
            raise


def _usage_json_exit(exc: ClickException) -> None:
    print_json(usage_error_record(exc))
    raise typer.Exit(exc.exit_code if isinstance(exc, UsageError) else 2) from None


def open_workspace(workspace: Path | None, user: str | None = None) -> Workspace:
    """The workspace at ``workspace`` as ``user``; a clear error when no folder was given."""
    if workspace is None:
        raise CitytwinError("no workspace given", hint="pass --workspace DIR or set CITYTWIN_WORKSPACE")
    from citytwin.foundation.workspace import Workspace

    return Workspace.open(workspace, user=user)


def jsonable(obj: Any) -> Any:
    """``obj`` with what JSON cannot hold made plain: NaN, infinities, NaT and NA become ``None``,
    numpy scalars Python numbers; containers are walked (dict keys become strings)."""
    if isinstance(obj, dict):
        return {k if isinstance(k, str) else str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, str | int | bool):
        return obj
    name = type(obj).__name__
    if name in ("NaTType", "NAType"):
        return None
    mod = type(obj).__module__
    if mod == "numpy" and hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        return jsonable(obj.item())
    if mod == "numpy" and hasattr(obj, "tolist"):
        return jsonable(obj.tolist())
    return obj


def print_json(obj: Any) -> None:
    """Print ``obj`` as strict JSON (no bare NaN: see :func:`jsonable`); other objects as ``str``."""
    sys.stdout.write(json.dumps(jsonable(obj), ensure_ascii=False, indent=2, default=str, allow_nan=False) + "\n")


def out_console(as_json: bool) -> Console:
    """Where a command's side messages go: stderr when stdout carries JSON, else stdout."""
    return err_console if as_json else console


@contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Callable[..., None]]:
    """A rich progress bar; yields ``advance(n, total=None)`` (``total`` sets the bar's length). Silent when
    stdout is not a terminal."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn(),
        MofNCompleteColumn(), TimeElapsedColumn(), console=err_console, transient=True,
        disable=not err_console.is_terminal,
    ) as bar:
        task = bar.add_task(description, total=total)

        def advance(n: int, total: int | None = None) -> None:
            if total is not None:
                bar.update(task, total=total)
            bar.advance(task, n)

        yield advance


@contextmanager
def task_progress(description: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A progress bar fed by ``progress(done, total)`` calls (Dask tasks finished, see ``--dask``); a
    callback that does nothing when not ``enabled``."""
    if not enabled:
        yield lambda _done, _total: None
        return
    with progress(description) as advance:
        last = [0]

        def update(done: int, total: int) -> None:
            advance(done - last[0], total=total)
            last[0] = done

        yield update
