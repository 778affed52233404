"""The watch loop: start the run (or attach to one), sample it every interval from outside, fold in the
step lines its hook or callback writes, keep the JSON lines, and conclude.

    session = Session(WatchConfig(command=["python", "train.py"], output=Path("run.jsonl")))
    state = session.run(on_update=view.update)     # returns when the run exits (or on Ctrl-C)
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from gpuplan.planner import GpuSpec, PlannerError

from . import analysis
from .expect import Expected, catalog_gpu, expected_for, from_setup_line
from .nvml import NvmlSampler
from .procs import ProcTree, environ_of
from .schema import ENV_DIR, STEP_FILE_GLOB, Kind, Tail, line

ATTACH_NOTE = ("attached to a running process: only NVML and /proc are seen, unless the run writes step lines "
               "(start it with GPUPLAN_WATCH_DIR=DIR and give --steps-dir DIR; the hook or the Trainer callback "
               "then writes them)")
NO_STEPS_NOTE = ("no step lines: the run does not call gpuplan.profiler.watch.hook.step() or use GpuplanCallback, "
                 "so allocator peaks, step times and tokens/s are unknown")


@dataclass
class WatchConfig:
    output: Path
    command: list[str] | None = None       # launch mode
    pid: int | None = None                 # attach mode
    interval_s: float = 1.0
    steps_dir: Path | None = None          # attach mode: where the run's hook writes (its GPUPLAN_WATCH_DIR)
    expected: Expected | None = None       # from --estimate-from / the setup flags
    gpu: GpuSpec | None = None             # --gpu: the catalog GPU for the time model
    max_seq_len: int | None = None
    leak_steps: int = analysis.LEAK_STEPS
    oom_margin: float = analysis.OOM_MARGIN_FRACTION
    log: Path | None = None                # launch mode: the run's stdout and stderr go here (the live view
                                           # owns the terminal); None: they stay on the terminal


@dataclass
class WatchState:
    """Everything the view shows and the summary concludes from."""

    mode: str
    target: str                                   # the command line, or "pid 12345"
    started_t: float
    interval_s: float
    gpu_names: list[str]
    last_sample: dict[str, Any] | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)
    steps_by_rank: dict[Any, list[dict[str, Any]]] = field(default_factory=dict)
    processes: dict[int, dict[str, Any]] = field(default_factory=dict)   # pid -> the hook's process line
    expected: Expected | None = None
    oom: analysis.OomWarning | None = None
    leak: analysis.Leak | None = None
    notes: list[str] = field(default_factory=list)
    exit_code: int | None = None
    ended_t: float | None = None
    summary: dict[str, Any] | None = None
    log: Path | None = None

    def log_tail(self, n: int = 5) -> list[str]:
        """The last `n` lines of the run's output, where it goes to a log file."""
        if self.log is None:
            return []
        try:
            with open(self.log, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))
                return [x.decode(errors="replace") for x in f.read().splitlines()[-n:]]
        except OSError:
            return []

    @property
    def peak_run_memory(self) -> int | None:
        return analysis._max(g.get("run_memory_bytes") for s in self.samples for g in s.get("gpus", []))

    @property
    def capacity_bytes(self) -> int | None:
        """Memory of the GPU that holds most of the run (NVML's total, as the device reports it)."""
        gpus = (self.last_sample or {}).get("gpus") or []
        if not gpus:
            return None
        return max(gpus, key=lambda g: g.get("run_memory_bytes") or 0).get("memory_total_bytes")

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def measured(self) -> dict[str, Any]:
        return analysis.measured_figures(self.steps_by_rank, self.samples)


class Session:
    def __init__(self, config: WatchConfig, nvml: Any = None, proc_root: str | os.PathLike = "/proc",
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.nvml = NvmlSampler(nvml)
        self.proc_root = Path(proc_root)
        self.clock = clock
        self._tails: dict[Path, Tail] = {}
        self._seen_pids: set[int] = set()
        self._own_steps_dir: Path | None = None
        self._out = None
        self.alloc_conf = ""

    # --- the run ------------------------------------------------------------------------------
    def _launch(self) -> subprocess.Popen:
        self._own_steps_dir = Path(tempfile.mkdtemp(prefix="gpuplan-watch-"))
        env = {**os.environ, ENV_DIR: str(self._own_steps_dir)}
        self.alloc_conf = env.get("PYTORCH_CUDA_ALLOC_CONF", "")
        out = None
        if self.config.log is not None:
            self.config.log.parent.mkdir(parents=True, exist_ok=True)
            out = open(self.config.log, "wb")
        try:
            return subprocess.Popen(self.config.command, env=env, stdout=out,
                                    stderr=subprocess.STDOUT if out else None)
        except OSError as e:
            raise PlannerError(f"cannot start {self.config.command[0]!r}: {e.strerror}") from None
        finally:
            if out is not None:
                out.close()   # the child holds its own descriptor

    @property
    def steps_dir(self) -> Path | None:
        return self._own_steps_dir or self.config.steps_dir

    def _state(self) -> WatchState:
        c = self.config
        mode = "launch" if c.command else "attach"
        target = " ".join(c.command) if c.command else f"pid {c.pid}"
        st = WatchState(mode=mode, target=target, started_t=self.clock(), interval_s=c.interval_s,
                        gpu_names=list(self.nvml.names), expected=c.expected, log=c.log if c.command else None)
        if not self.nvml.available:
            st.note(self.nvml.reason)
        if mode == "attach":
            st.note(ATTACH_NOTE)
        return st

    def run(self, on_update: Callable[[WatchState], None] | None = None) -> WatchState:
        c = self.config
        if bool(c.command) == (c.pid is not None):
            raise PlannerError("give either a command after -- or --pid, not both and not neither")
        proc = None
        if c.command:
            proc = self._launch()
            root = proc.pid
        else:
            root = c.pid
            if not (self.proc_root / str(root)).exists():
                raise PlannerError(f"no process {root} (see `ps`): --pid takes the training process's id")
            self.alloc_conf = environ_of(self.proc_root, root).get("PYTORCH_CUDA_ALLOC_CONF", "")
        tree = ProcTree(root, self.proc_root)
        state = self._state()
        c.output.parent.mkdir(parents=True, exist_ok=True)
        self._out = open(c.output, "w", buffering=1)
        self._write(line(Kind.START, state.started_t, mode=state.mode, command=c.command, pid=root,
                         interval_s=c.interval_s, gpus=state.gpu_names, driver=self.nvml.driver(),
                         expected=None if c.expected is None else c.expected.to_dict(), notes=list(state.notes)))
        previous = None
        if proc is not None and threading.current_thread() is threading.main_thread():
            # `kill <watch>` stops the run too (a launched run is the watch's to end), and the watch concludes
            previous = signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
        try:
            while True:
                self._tick(state, tree)
                if on_update:
                    on_update(state)
                if proc is not None:
                    try:
                        state.exit_code = proc.wait(timeout=c.interval_s)
                        break
                    except subprocess.TimeoutExpired:
                        continue
                if not tree.alive():
                    break
                time.sleep(c.interval_s)
        except KeyboardInterrupt:   # Ctrl-C reached the run too (same terminal): let it stop, then conclude
            state.note("interrupted (Ctrl-C)")
            if proc is not None:
                try:
                    state.exit_code = proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    state.exit_code = proc.wait()
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        self._tick(state, tree, final=True)
        state.ended_t = self.clock()
        self._conclude(state)
        if on_update:
            on_update(state)
        self._out.close()
        self.nvml.close()
        if self._own_steps_dir is not None:
            shutil.rmtree(self._own_steps_dir, ignore_errors=True)
        return state

    # --- one sample -----------------------------------------------------------------------------
    def _write(self, obj: dict[str, Any]) -> None:
        self._out.write(json.dumps(obj, default=str) + "\n")

    def _tick(self, state: WatchState, tree: ProcTree, final: bool = False) -> None:
        now = self.clock()
        if not final:   # after the run exits its processes are gone; the last sample stands
            processes = tree.processes()
            self._seen_pids.update(p.pid for p in processes)   # a process that just exited may still hold memory
            gpus, notes = self.nvml.sample(self._seen_pids | {tree.pid})
            for n in notes:
                state.note(n)
            sample = line(Kind.SAMPLE, now, elapsed_s=round(now - state.started_t, 3), gpus=gpus,
                          processes=[p.to_dict() for p in processes],
                          rss_bytes=sum(p.rss_bytes or 0 for p in processes), notes=notes)
            self._write(sample)
            state.last_sample = sample
            state.samples.append(sample)
        self._ingest_steps(state)
        self._analyse(state)

    def _ingest_steps(self, state: WatchState) -> None:
        folder = self.steps_dir
        if folder is None or not folder.exists():
            return
        for path in sorted(folder.glob(STEP_FILE_GLOB)):
            tail = self._tails.setdefault(path, Tail(path))
            for obj in tail.read():
                self._write(obj)
                kind = obj.get("kind")
                if kind == Kind.STEP.value:
                    rank = obj.get("rank") if obj.get("rank") is not None else f"pid {obj.get('pid')}"
                    state.steps_by_rank.setdefault(rank, []).append(obj)
                elif kind == Kind.PROCESS.value:
                    state.processes[obj["pid"]] = obj
                elif kind == Kind.SETUP.value and state.expected is None:
                    self._expect_from_setup(state, obj)

    def _expect_from_setup(self, state: WatchState, obj: dict[str, Any]) -> None:
        gpu = self.config.gpu or catalog_gpu(state.gpu_names[0] if state.gpu_names else None)
        try:
            spec, setup, name = from_setup_line(obj)
            state.expected = expected_for(spec, setup, name, "the run's own setup (callback or hook)", gpu,
                                          self.config.max_seq_len)
        except PlannerError as e:
            state.note(f"no estimate for the run's setup: {e}")

    def _analyse(self, state: WatchState) -> None:
        steps = state.steps_by_rank
        reserved: dict[int, int] = {}   # step -> the largest rank's peak reserved
        for s in (s for v in steps.values() for s in analysis.steady(v) if s.get("peak_reserved_bytes") is not None):
            reserved[s["step"]] = max(reserved.get(s["step"], 0), s["peak_reserved_bytes"])
        capacity = state.capacity_bytes
        if reserved and capacity:
            peak_reserved = max(reserved.values())
            device = state.peak_run_memory
            overhead = device - peak_reserved if device is not None and device > peak_reserved else 0
            growth = state.expected.growth_bytes if state.expected else 0
            state.oom = analysis.oom_warning(reserved, growth, capacity, overhead, self.config.oom_margin)
        if steps:
            first_rank = sorted(steps, key=str)[0]
            allocated = {s["step"]: s["allocated_bytes"] for s in steps[first_rank]
                         if s.get("allocated_bytes") is not None}
            state.leak = analysis.leak(allocated, self.config.leak_steps)

    # --- the end ----------------------------------------------------------------------------------
    def _conclude(self, state: WatchState) -> None:
        if not state.steps_by_rank:
            state.note(NO_STEPS_NOTE)
        measured = state.measured()
        expected = state.expected.to_dict() if state.expected else None
        state.summary = {
            "measured": measured, "expected": expected,
            "comparison": analysis.comparison(measured, expected),
            "warnings": [w.message for w in (state.oom, state.leak) if w is not None],
            "exit_code": state.exit_code, "duration_s": round(state.ended_t - state.started_t, 3),
            "samples": len(state.samples), "notes": list(state.notes),
        }
        self._write(line(Kind.SUMMARY, state.ended_t, **state.summary))
