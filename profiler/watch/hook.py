"""The watch's hook inside a plain PyTorch training loop: one call per optimizer step.

    from gpuplan.profiler.watch import hook

    for batch in loader:
        loss = model(**batch).loss; loss.backward(); opt.step(); opt.zero_grad()
        hook.step(tokens=batch["input_ids"].numel())

Under `gpuplan watch` (which sets GPUPLAN_WATCH_DIR for the run) each call appends one `step` line
to <dir>/steps-<pid>.jsonl: seconds since the previous call, tokens, and on a GPU the allocator's
current allocated bytes (between steps: a leak shows here) and its peaks since the previous call
(the hook resets them: `torch.cuda.reset_peak_memory_stats`), on a CPU the process's RSS and its
high-water mark. Outside a watch the call does nothing and costs a dictionary lookup.
`report_setup(setup, model)` tells the watch the run's gpuplan setup, for the estimate.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

from . import procs
from .schema import ENV_DIR, Kind, line, step_file

_lock = threading.Lock()


class _Writer:
    """This process's step file and the state between steps."""

    def __init__(self, folder: str) -> None:
        self.pid = os.getpid()
        self.path = step_file(folder, self.pid)
        self.file = open(self.path, "a", buffering=1)   # line-buffered: the watcher sees each step at once
        self.last_t: float | None = None
        self.steps = 0
        self.rank = _env_int("RANK")
        self.local_rank = _env_int("LOCAL_RANK")

    def write(self, obj: dict[str, Any]) -> None:
        self.file.write(json.dumps(obj, default=str) + "\n")


_writer: _Writer | None = None


def _env_int(name: str) -> int | None:
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return None


_broken: str | None = None   # the watch's folder could not be written: the hook stays off, the run goes on


def _get_writer() -> _Writer | None:
    """The writer for this process, created at the first call under a watch (None outside one).
    A forked child (a DataLoader worker) gets its own pid, so its own file."""
    global _writer, _broken
    folder = os.environ.get(ENV_DIR)
    if not folder or _broken == folder:
        return None
    if _writer is None or _writer.pid != os.getpid():
        try:
            _writer = _Writer(folder)
            _writer.write(line(Kind.PROCESS, time.time(), pid=_writer.pid, rank=_writer.rank,
                               local_rank=_writer.local_rank, **_torch_facts()))
        except OSError:   # the watch ended and removed its folder: a monitor never stops the training
            _writer, _broken = None, folder
    return _writer


def _safe_write(w: _Writer, obj: dict[str, Any]) -> dict[str, Any] | None:
    global _writer, _broken
    try:
        w.write(obj)
        return obj
    except (OSError, ValueError):   # ValueError: the file was closed
        _writer, _broken = None, os.environ.get(ENV_DIR)
        return None


def _cuda_device():
    """torch's current CUDA device if this process has initialized CUDA (the hook never imports torch)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda.current_device()


def _torch_facts() -> dict[str, Any]:
    torch = sys.modules.get("torch")
    if torch is None:
        return {"torch": None, "cuda": None, "device": "cpu", "device_name": None}
    dev = _cuda_device()
    return {"torch": torch.__version__, "cuda": torch.version.cuda,
            "device": "cpu" if dev is None else f"cuda:{dev}",
            "device_name": None if dev is None else torch.cuda.get_device_name(dev),
            "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "")}


def memory_figures() -> dict[str, Any]:
    """This process's memory now: the allocator's figures on a GPU (peaks since the last call, then
    reset), RSS and its high-water mark (then reset) on a CPU."""
    dev = _cuda_device()
    if dev is not None:
        cuda = sys.modules["torch"].cuda
        out = {"device": f"cuda:{dev}", "allocated_bytes": cuda.memory_allocated(dev),
               "reserved_bytes": cuda.memory_reserved(dev),
               "peak_allocated_bytes": cuda.max_memory_allocated(dev),
               "peak_reserved_bytes": cuda.max_memory_reserved(dev)}
        cuda.reset_peak_memory_stats(dev)
        return out
    out = {"device": "cpu", "rss_bytes": procs.rss_bytes(), "peak_rss_bytes": procs.peak_rss_bytes()}
    procs.reset_peak_rss()
    return out


def step(tokens: int | None = None, **figures: Any) -> dict[str, Any] | None:
    """Records one optimizer step (call it once per step, after `optimizer.step()`): returns the line
    written, or None outside a watch. `figures` override what the hook reads itself (the Trainer
    callback passes the peaks it measured over the step)."""
    with _lock:
        w = _get_writer()
        if w is None:
            return None
        now = time.time()
        w.steps += 1
        measured = memory_figures()
        measured.update({k: v for k, v in figures.items() if v is not None})
        obj = line(Kind.STEP, now, pid=w.pid, rank=w.rank, step=w.steps,
                   step_time_s=None if w.last_t is None else round(now - w.last_t, 6),
                   tokens=None if tokens is None else int(tokens), **measured)
        w.last_t = now
        return _safe_write(w, obj)


def start() -> None:
    """Marks the start of the first step (optional): without it, the first step has no step time."""
    with _lock:
        w = _get_writer()
        if w is not None:
            w.last_t = time.time()
            memory_figures()   # resets the peaks: the first step's are its own


def report_setup(setup: Any, model: Any = None, model_name: str | None = None) -> dict[str, Any] | None:
    """Tells the watch the run's gpuplan setup (a TrainingSetup) and model (a ModelSpec, whose HF
    config goes along; or just `model_name`: a preset name or config path), for its estimate."""
    with _lock:
        w = _get_writer()
        if w is None:
            return None
        config = dict(getattr(model, "hf_config", None) or {}) or None
        obj = line(Kind.SETUP, time.time(), pid=w.pid, rank=w.rank,
                   model=model_name or getattr(model, "name", None), model_config=config,
                   setup=setup.to_dict(model) if model is not None else setup.to_dict())
        return _safe_write(w, obj)
