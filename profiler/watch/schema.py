"""The watch's JSON lines (`gpuplan.watch-sample/1`): one object per line, each with `schema`, `kind`
and `t` (Unix time, seconds). The fields of each kind are documented in docs/readme/watch.md.

    start    the watch began: mode, command or pid, interval, the estimate for the run, notes
    sample   the sampler's view, once per interval: per-GPU NVML figures, the process tree's RSS
    process  a training process's own report, once (written by the hook): pid, rank, torch, device
    setup    the run's gpuplan setup, once, as the Trainer callback (or hook.report_setup) read it
    step     one optimizer step, written in the training process by the hook or the callback
    summary  the watch ended: measured against estimated peaks and tokens/s, warnings, exit code
"""
from __future__ import annotations

import json
import os
from enum import Enum
from pathlib import Path
from typing import Any, Iterator

SCHEMA = "gpuplan.watch-sample/1"
ENV_DIR = "GPUPLAN_WATCH_DIR"   # set by `gpuplan watch` for the run: where the hook writes its step files
STEP_FILE_GLOB = "steps-*.jsonl"


class Kind(str, Enum):
    START = "start"
    SAMPLE = "sample"
    PROCESS = "process"
    SETUP = "setup"
    STEP = "step"
    SUMMARY = "summary"


def line(kind: Kind, t: float, **fields: Any) -> dict[str, Any]:
    """One JSON-lines object of `kind` at Unix time `t`."""
    return {"schema": SCHEMA, "kind": kind.value, "t": round(t, 3), **fields}


def step_file(folder: str | os.PathLike, pid: int) -> Path:
    """The file one training process appends its step lines to."""
    return Path(folder) / f"steps-{pid}.jsonl"


class Tail:
    """Reads the complete lines appended to a file since the last read (a half-written last line waits)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.offset = 0

    def read(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1
        self.offset += end
        out = []
        for raw in data[:end].splitlines():
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError:   # a foreign line in the file: skipped, never fatal to the watch
                continue
            if isinstance(obj, dict) and obj.get("schema") == SCHEMA:
                out.append(obj)
        return out


def read_lines(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Every complete `gpuplan.watch-sample/1` object of a JSON-lines file (the dashboard's reader)."""
    yield from Tail(path).read()
