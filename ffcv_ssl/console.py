"""One rich console for progress, tables and errors (stderr for errors, stdout for results)."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def error_line(message: str) -> None:
    """Print one red line on stderr: the whole of what a user sees of a ``UserError``.

    The message is escaped: paths and lists such as ``[/data/x]`` or ``[ENOSPC]`` are text, not rich markup
    (unescaped, a closing-tag look-alike made rich raise instead of printing the error)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)


def warning_line(message: str) -> None:
    """Print one yellow line on stderr: something the run can go on without, but the user must know about."""
    err_console.print(f"[bold yellow]warning:[/] {escape(message)}", markup=True, soft_wrap=True)


def progress_enabled() -> bool:
    """Live bars only when someone watches: not in pytest captures, CI logs or SLURM output files."""
    return sys.stderr.isatty() and os.environ.get("FFCV_SSL_NO_PROGRESS", "") == ""


@contextmanager
def progress_bar(*fields: str) -> Iterator[Progress]:
    """A rich progress bar with rate fields; ``fields`` name extra task fields shown after the bar."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("<"), TimeRemainingColumn()]
    columns += [TextColumn(f"{{task.fields[{f}]}}") for f in fields]
    with Progress(*columns, console=err_console, disable=not progress_enabled(), transient=False) as bar:
        yield bar
