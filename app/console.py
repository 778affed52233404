"""The rich Console of the CLI's output: never truncate a number or a name.

In a terminal the console is as wide as the terminal; a table that cannot fit drops its
low-priority columns (and says which) rather than cut a cell (`print_table`). When stdout is not a
terminal (piped, redirected, CliRunner) nothing is wrapped or cut: prose lines stay whole (soft
wrap) and tables print at their natural width, so `gpuplan gpus | grep h100` sees whole rows.
"""
from __future__ import annotations

import sys
from typing import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

PIPED_TABLE_WIDTH = 1000   # piped tables print at their natural width, up to this


def make_console(file=None) -> Console:
    out = file if file is not None else sys.stdout
    tty = bool(getattr(out, "isatty", None) and out.isatty())
    if tty:
        return Console(file=out)
    return Console(file=out, soft_wrap=True, no_color=True, highlight=False, width=PIPED_TABLE_WIDTH,
                   force_terminal=False)


def keep_whole(table: Table, wrap: Sequence[str] = ()) -> Table:
    """Every column but those in `wrap` at least as wide as its widest cell: no ellipsis, no number or
    name cut across lines. Columns in `wrap` (prose, lists) wrap at spaces; headers wrap at spaces."""
    for col in table.columns:
        header_words = str(col.header).split() or [""]
        col.no_wrap = False
        col.overflow = "fold"
        if str(col.header) in wrap:
            col.min_width = max(len(w) for w in header_words)
            continue
        cells = [Text.from_markup(c).plain if isinstance(c, str) else str(c) for c in col._cells]
        col.min_width = max([len(c) for c in cells] + [max(len(w) for w in header_words)])
    return table


def print_table(console: Console, table: Table, drop_order: Sequence[str] = (), wrap: Sequence[str] = (),
                note: str = "widen the terminal, pipe the output, or use --json") -> list[str]:
    """Print `table` without truncating any cell. Piped: at its natural width. In a terminal: drop
    the columns of `drop_order` (first named, first dropped) while the table is wider than the
    terminal, and say which; returns the dropped column names."""
    keep_whole(table, wrap)
    if not console.is_terminal:
        console.print(table, width=min(console.measure(table).maximum, PIPED_TABLE_WIDTH), soft_wrap=False)
        return []
    def min_width() -> int:   # unclamped (console.measure clamps to the console's width)
        return console.measure(table, options=console.options.update_width(PIPED_TABLE_WIDTH)).minimum

    dropped: list[str] = []
    for name in drop_order:
        if min_width() <= console.width:
            break
        idx = next((i for i, c in enumerate(table.columns) if str(c.header) == name), None)
        if idx is not None:
            table.columns.pop(idx)
            dropped.append(name)
    console.print(table)
    if dropped:
        console.print(f"[dim]({', '.join(dropped)} left out to fit {console.width} columns: {note})[/]")
    return dropped
