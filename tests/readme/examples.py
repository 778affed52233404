"""The README's example outputs, generated from the commands, never copied by hand.

A generated example is an HTML comment naming the command, then a fenced block with what it prints:

    <!-- example: gpuplan recommend --model qwen2.5-7b --dataset-tokens 200M --epochs 2 | head -20 -->
    ```text
    ...stdout of that command, as it is today...
    ```

The command is run in-process through click's CliRunner (no subprocess: the whole file takes about
a second), from the repository root, with stdout not a terminal (as when piped: tables at their
natural width, prose lines unwrapped). Only stdout is shown; `| head -N` keeps its first N lines,
`| tail -N` its last (the pipes understood). With `2>&1` stderr is appended after stdout (CliRunner
keeps the two apart, so they are not interleaved).
What is inherently variable is normalized before comparing, and only that: elapsed times
(`12.3 s elapsed`) and ISO dates written by the run itself (`as of 2026-12-01`), see `normalize`.

    python tests/readme/examples.py            # check: exit 1 and a diff when an example is stale
    python tests/readme/examples.py --write    # regenerate every example block in place

Files processed: README.md and docs/readme/*.md (the sections waiting to be merged into it).
"""
from __future__ import annotations

import argparse
import difflib
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^<!-- example: (?P<cmd>.+?) -->\n```(?P<lang>\w*)\n(?P<body>.*?)^```$", re.M | re.S)
WIDTH = 100


def files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs" / "readme").glob("*.md"))]


@dataclass(frozen=True)
class Example:
    path: Path
    command: str
    shown: str          # the block's body as the file has it
    start: int          # span of the body in the file's text
    end: int


def examples(path: Path, text: str | None = None) -> list[Example]:
    text = path.read_text() if text is None else text
    return [Example(path, m["cmd"].strip(), m["body"], m.start("body"), m.end("body")) for m in MARKER.finditer(text)]


def parse(command: str) -> tuple[list[str], int | None, bool]:
    """(argv after `gpuplan`, head lines or None, stderr too); raises ValueError for what is not understood."""
    head = None
    m = re.search(r"\s*\|\s*(head|tail)\s+-n?\s*(\d+)\s*$", command)
    if m:
        head, command = (int(m[2]) if m[1] == "head" else -int(m[2])), command[: m.start()]
    with_stderr = command.rstrip().endswith("2>&1")
    if with_stderr:
        command = command.rstrip()[: -len("2>&1")]
    argv = shlex.split(command)
    if not argv or argv[0] != "gpuplan" or any(a in ("|", ">", "<", ";", "&&") for a in argv):
        raise ValueError(f"an example runs one `gpuplan ...` command (optionally `| head -N` or `| tail -N`): {command!r}")
    return argv[1:], head, with_stderr


def run(command: str) -> str:
    """What `command` prints today (stdout, then stderr with 2>&1), trimmed by `| head -N`."""
    return invoke(command)[1]


def invoke(command: str) -> tuple[int, str]:
    """(exit status, output) of `command`, as `run` describes."""
    from click.testing import CliRunner

    from gpuplan.app.cli import cli

    argv, head, with_stderr = parse(command)
    cwd = os.getcwd()
    os.chdir(ROOT)          # example paths (examples/axolotl.yaml) are relative to the repository root
    try:
        r = CliRunner().invoke(cli, argv, prog_name="gpuplan", env={"COLUMNS": str(WIDTH), "NO_COLOR": "1", "TERM": "dumb"})
    finally:
        os.chdir(cwd)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise RuntimeError(f"example {command!r} raised {type(r.exception).__name__}: {r.exception}")
    out = r.stdout + (r.stderr if with_stderr else "")
    lines = [ln.rstrip() for ln in out.splitlines()]
    if head is not None:
        lines = lines[:head] if head > 0 else lines[head:]
    return r.exit_code, "\n".join(lines) + "\n"


def normalize(text: str) -> str:
    """Only what changes from run to run: elapsed seconds and today's date."""
    text = re.sub(r"\b\d+(\.\d+)? ?s elapsed", "<t> s elapsed", text)
    return re.sub(r"\bas of \d{4}-\d{2}-\d{2}\b", "as of <date>", text)


def stale() -> list[tuple[Example, str]]:
    """(example, what it prints today) for every example whose shown output differs."""
    out = []
    for path in files():
        for ex in examples(path):
            now = run(ex.command)
            if normalize(now) != normalize(ex.shown):
                out.append((ex, now))
    return out


def write() -> int:
    changed = 0
    for path in files():
        text = path.read_text()
        for ex in reversed(examples(path, text)):    # from the end: earlier spans stay valid
            now = run(ex.command)
            if normalize(now) != normalize(ex.shown):
                text = text[: ex.start] + now + text[ex.end:]
                changed += 1
        path.write_text(text)
    return changed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help="regenerate the example blocks in place")
    args = ap.parse_args()
    if args.write:
        print(f"{write()} example block(s) rewritten")
        return
    bad = stale()
    for ex, now in bad:
        print(f"{ex.path.relative_to(ROOT)}: {ex.command}")
        sys.stdout.writelines(difflib.unified_diff(ex.shown.splitlines(True), now.splitlines(True), "shown", "today"))
    print(f"{len(bad)} stale example(s)" if bad else "every example is up to date")
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
