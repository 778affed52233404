"""The one rich Console of the CLI's tables: never truncate a number or a name.

In a terminal the console is as wide as the terminal and tables drop low-priority columns (with a
note) rather than cut cells (`print_table`). When stdout is not a terminal (piped, redirected,
CliRunner) the console is wide enough for every table at its natural width, so nothing wraps
mid-number; `COLUMNS` still sets the width of prose.
"""
from __future__ import annotations

import os
import sys
from typing import Sequence

from rich.console import Console
from rich.table import Table

PIPED_TABLE_WIDTH = 400   # piped tables print at their natural width, up to this


def make_console(file=None) -> Console:
    out = file or sys.stdout
    tty = hasattr(out, "isatty") and out.isatty()
    width = None if tty else int(os.environ.get("COLUMNS") or 100)
    return Console(file=out, width=width, force_terminal=tty or None, no_color=not tty or None,
                   highlight=tty, soft_wrap=False)


def keep_whole(table: Table) -> Table:
    """Every column at least as wide as its widest cell (no ellipsis, no number cut across lines);
    headers may wrap at spaces."""
    for col in table.columns:
        cells = [str(c) for c in col._cells]
        col.min_width = max([len(_plain(c)) for c in cells] + [max(len(w) for w in str(col.header).split() or [""])])
        col.overflow = "fold"
        col.no_wrap = False
    return table


def _plain(text: str) -> int | str:
    from rich.text import Text

    return Text.from_markup(text).plain


def print_table(console: Console, table: Table, drop_order: Sequence[str] = (), note: str | None = None) -> None:
    """Print `table` without truncating any cell: piped, at its natural width; in a terminal, drop
    the columns named in `drop_order` (first named, first dropped) until it fits, and say which."""
    keep_whole(table)
    if not console.is_terminal:
        width = min(max(console.width, console.measure(table).maximum), PIPED_TABLE_WIDTH)
        console.print(table, width=width)
        return
    dropped = []
    for name in drop_order:
        if console.measure(table).minimum <= console.width:
            break
        idx = next((i for i, c in enumerate(table.columns) if str(c.header) == name), None)
        if idx is not None:
            table.columns.pop(idx)
            dropped.append(name)
    console.print(table)
    if dropped:
        console.print(f"[dim]({', '.join(dropped)} left out to fit {console.width} columns; "
                      f"{note or 'widen the terminal or use --json'})[/]")
