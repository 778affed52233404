"""Shared printing and recording for benchmarks/published.py and benchmarks/published_time.py."""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Callable

from gpuplan.planner.plans.evidence import recorded, summarize
from gpuplan.planner.io.published import errors_path, recorded_errors


def fmt(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x:+.1f}%" if signed else f"{x:.1f}%"


def table(title: str, rows: list[Any], key: Callable[[Any], tuple[str, ...]], names: tuple[str, ...]) -> str:
    """A markdown table of median and worst |error| per group, or nothing where no row falls in it."""
    if not rows:
        return f"\n**{title}**: no runs\n"
    out = [f"\n**{title}**\n", "| " + " | ".join(names) + " | runs | flagged | median abs error | worst | median signed | median abs, unflagged |",
           "|" + "---|" * (len(names) + 6)]
    for s in summarize(rows, key):
        out.append("| " + " | ".join(s.group) + f" | {s.n} | {s.flagged} | {fmt(s.median_abs)} | {fmt(s.worst, True)} | "
                   f"{fmt(s.median_signed, True)} | {fmt(s.median_abs_unflagged)} |")
    return "\n".join(out) + "\n"


def record(section: str, rows: list[Any]) -> str:
    """Write today's per-run errors into data/published/errors_recorded.json under `section`."""
    data = recorded_errors() or {}
    data[section] = recorded(rows)
    data.setdefault("about", "signed error (gpuplan - published) / published in percent per run, written by "
                             "benchmarks/published.py --record (memory: key run|figure kind) and benchmarks/published_time.py "
                             "--record (time: key run); tests/planner/io/test_published.py fails if any |error| grows by more "
                             "than 0.5 points or an estimate falls further below a measurement")
    path = errors_path()
    write_json(path, data)
    return str(path)


def write_json(path, data: Any) -> None:
    """Write `data` to `path` atomically (a temporary file in the same folder, then a rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def generated_block(text: str, begin: str, end: str) -> str:
    """What a document holds between its `begin` and `end` markers (a generated block)."""
    if begin not in text or end not in text:
        raise ValueError(f"the document lost its generated block ({begin} ... {end})")
    return text.split(begin, 1)[1].split(end, 1)[0]


def write_generated_block(path: str, begin: str, end: str, body: str) -> None:
    """Replace the block of `path` between `begin` and `end` with `body` (the README's generated tables)."""
    text = open(path).read()
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(path, "w") as f:
        f.write(head + begin + "\n" + body + end + tail)
