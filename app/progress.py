"""Progress of long CLI work (simulations, matrices): step count and elapsed time on stderr.

    with step_progress(len(cases), "simulating") as advance:
        for case in cases:
            run(case)
            advance(case.name)

In a terminal: a rich progress line (spinner, bar, N/M, elapsed) that stays at the bottom. Piped or
in CI: one plain line per step, `[3/62] 41.2 s elapsed: llama-3.2-1b ...`. Python warnings raised
inside (transformers' FutureWarnings, one per model build) are printed above the progress line,
each distinct message once, instead of being written through it and breaking the display.
"""
from __future__ import annotations

import sys
import time
import warnings
from contextlib import contextmanager
from typing import Callable, Iterator, TextIO

from rich.console import Console


@contextmanager
def warnings_once(console: Console) -> Iterator[None]:
    """Python warnings raised inside print above a live display, each distinct message once."""
    seen: set[str] = set()

    def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
        text = f"{category.__name__}: {message}"
        if text not in seen:
            seen.add(text)
            console.print(f"[yellow]warning[/] {text}", markup=True, highlight=False, soft_wrap=True)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show_warning
        yield


@contextmanager
def step_progress(total: int, label: str, file: TextIO | None = None) -> Iterator[Callable[[str], None]]:
    """Yields advance(detail): call it after each of `total` steps."""
    out = file if file is not None else sys.stderr
    console = Console(file=out, stderr=file is None)
    start = time.monotonic()
    done = 0

    with warnings_once(console):
        if console.is_terminal:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                                       TimeElapsedColumn)   # lazy: the live display loads only in a terminal

            with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), TextColumn("{task.fields[detail]}"), console=console,
                          transient=False) as bar:
                task = bar.add_task(label, total=total, detail="")

                def advance(detail: str = "") -> None:
                    bar.update(task, advance=1, detail=detail)

                yield advance
            return

        def advance(detail: str = "") -> None:
            nonlocal done
            done += 1
            console.print(f"[{done}/{total}] {time.monotonic() - start:.1f} s elapsed: {label}"
                          + (f" {detail}" if detail else ""), markup=False, highlight=False, soft_wrap=True)

        yield advance
