"""The run's process tree from /proc: the root process and every descendant (torchrun and accelerate
spawn one worker per rank), each with its resident memory and, where its environment is readable,
its RANK and LOCAL_RANK. Linux only; `root` may point at a fake /proc for tests.

Files read (proc(5)): /proc/<pid>/task/<tid>/children (where the kernel has it; else every
/proc/<pid>/stat's field 4, the ppid), /proc/<pid>/statm (field 2: resident pages),
/proc/<pid>/environ (NUL-separated), /proc/<pid>/cmdline, /proc/<pid>/status (VmHWM).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    rss_bytes: int | None
    rank: int | None
    local_rank: int | None
    command: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _read(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:   # gone between listing and reading, or not ours to read
        return None


def parent_of(stat: bytes) -> int:
    """The ppid in a /proc/<pid>/stat line (the command, field 2, is in parentheses and may hold spaces)."""
    return int(stat[stat.rindex(b")") + 2:].split()[1])


class ProcTree:
    """Descendants of one root pid, re-listed on every `processes()` call (children come and go)."""

    def __init__(self, pid: int, root: str | os.PathLike = "/proc") -> None:
        self.pid = pid
        self.root = Path(root)
        self._ranks: dict[int, tuple[int | None, int | None]] = {}   # environ is fixed at exec: read once

    def alive(self) -> bool:
        stat = _read(self.root / str(self.pid) / "stat")
        # a zombie (state Z) has exited; only its parent's wait() removes it
        return stat is not None and stat[stat.rindex(b")") + 2:].split()[0] != b"Z"

    def pids(self) -> list[int]:
        """The root and all its descendants, root first."""
        out, todo = [], [self.pid]
        children = self._children_files
        table = None if children else self._parent_table()
        while todo:
            pid = todo.pop(0)
            out.append(pid)
            todo.extend(sorted(self._children_of(pid)) if children else sorted(table.get(pid, [])))
        return out

    @property
    def _children_files(self) -> bool:
        """Whether /proc/<pid>/task/<tid>/children exists (Linux >= 3.5 with CONFIG_PROC_CHILDREN): a walk
        down the tree then reads a few files instead of every process's stat."""
        return (self.root / str(self.pid) / "task" / str(self.pid) / "children").exists()

    def _children_of(self, pid: int) -> list[int]:
        out: list[int] = []
        try:
            tasks = os.listdir(self.root / str(pid) / "task")
        except OSError:
            return out
        for tid in tasks:
            raw = _read(self.root / str(pid) / "task" / tid / "children") or b""
            out.extend(int(x) for x in raw.split())
        return out

    def _parent_table(self) -> dict[int, list[int]]:
        """ppid -> pids, from every /proc/<pid>/stat (where the children files are missing)."""
        children: dict[int, list[int]] = {}
        try:
            entries = os.listdir(self.root)
        except OSError:
            return children
        for name in entries:
            if not name.isdigit():
                continue
            stat = _read(self.root / name / "stat")
            if stat:
                try:
                    children.setdefault(parent_of(stat), []).append(int(name))
                except (ValueError, IndexError):
                    continue
        return children

    def rank_of(self, pid: int) -> tuple[int | None, int | None]:
        if pid not in self._ranks:
            env = environ_of(self.root, pid)
            self._ranks[pid] = (_int(env.get("RANK")), _int(env.get("LOCAL_RANK")))
        return self._ranks[pid]

    def processes(self) -> list[ProcessInfo]:
        out = []
        for pid in self.pids():
            stat = _read(self.root / str(pid) / "stat")
            if stat is None or stat[stat.rindex(b")") + 2:].split()[0] == b"Z":   # gone, or exited (a zombie)
                continue
            cmd = (_read(self.root / str(pid) / "cmdline") or b"").replace(b"\0", b" ").strip().decode(errors="replace")
            rank, local_rank = self.rank_of(pid)
            out.append(ProcessInfo(pid=pid, ppid=parent_of(stat), rss_bytes=rss_bytes(pid, self.root),
                                   rank=rank, local_rank=local_rank, command=cmd[:200]))
        return out


def environ_of(root: Path, pid: int) -> dict[str, str]:
    """The process's environment at exec time ({} where it is not readable: another user's process)."""
    raw = _read(Path(root) / str(pid) / "environ") or b""
    out = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            out[key.decode(errors="replace")] = value.decode(errors="replace")
    return out


def _int(value: str | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def rss_bytes(pid: int | str = "self", root: str | os.PathLike = "/proc") -> int | None:
    """Resident memory of a process in bytes (statm's resident pages x the page size)."""
    statm = _read(Path(root) / str(pid) / "statm")
    return None if statm is None else int(statm.split()[1]) * PAGE_BYTES


def peak_rss_bytes(pid: int | str = "self", root: str | os.PathLike = "/proc") -> int | None:
    """The resident-memory high-water mark in bytes (VmHWM, in kB in /proc/<pid>/status)."""
    status = _read(Path(root) / str(pid) / "status") or b""
    for row in status.splitlines():
        if row.startswith(b"VmHWM:"):
            return int(row.split()[1]) * 1024
    return None


def reset_peak_rss() -> None:
    """Resets this process's VmHWM to its current RSS (Linux >= 4.0: `echo 5 > /proc/self/clear_refs`)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
