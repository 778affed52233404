"""The `gpuplan.record/1` file a finished watch writes (planner/io/records.py, kind "watch")."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from gpuplan.planner import PlannerError, RunPhase, resolve_model
from gpuplan.planner.io.records import catalog_gpu_name, environment, make_record, write_record

from .session import WatchState


def _resolvable(model: str) -> bool:
    """The time model resolves setup.model again when it reads the record: a preset or a config file
    (a hub id would need the network, which the planner never assumes)."""
    if re.fullmatch(r"[\w.-]+/[\w.-]+", model) and not Path(model).exists():
        return False
    try:
        resolve_model(model)
        return True
    except PlannerError:
        return False


def _gpu_in_use(state: WatchState) -> dict[str, Any] | None:
    """The GPU that held most of the run at its peak sample, or None (a CPU run, no NVML)."""
    best = None
    for s in state.samples:
        for g in s.get("gpus", []):
            if g.get("run_memory_bytes") and (best is None or g["run_memory_bytes"] > best["run_memory_bytes"]):
                best = g
    return best


def watch_record(state: WatchState, driver: str | None, cuda_driver: str | None, alloc_conf: str,
                 files: dict[str, str]) -> dict[str, Any]:
    """The record of a finished watch: GPU, driver and versions, the setup, measured peaks and step times."""
    m = state.summary["measured"]
    gpu = _gpu_in_use(state)
    proc = next(iter(sorted(state.processes.values(), key=lambda p: (p.get("rank") or 0, p["pid"]))), {})
    gpu_name = gpu["name"] if gpu else (proc.get("device_name") or "cpu")
    used = {g["index"] for s in state.samples for g in s.get("gpus", []) if g.get("run_memory_bytes")}
    env = environment(gpu_name, gpu_count=len(used), driver=driver,
                      cuda=proc.get("cuda") or cuda_driver,
                      versions={"torch": proc["torch"]} if proc.get("torch") else None)
    exp = state.expected
    notes = list(state.notes)
    timing = None
    if m["step_time_s"] is not None:
        timing = {"step_time_s": m["step_time_s"], "tokens_per_s": m["tokens_per_s"], "steps_timed": m["steps_timed"]}
        why = ("no setup is known" if exp is None else
               f"{gpu_name!r} is not in gpuplan's GPU catalog" if catalog_gpu_name(gpu_name) == gpu_name else
               None if _resolvable(exp.model) else f"the model {exp.model!r} is not a preset or a config file here")
        if why:
            notes.append(f"median step time {m['step_time_s']:.4f} s over {m['steps_timed']} steps, not recorded as "
                         f"timing (the time model could not use it: {why})")
            timing = None
    phases = {}
    if m["first_step_peak_allocated_bytes"] is not None:
        phases[RunPhase.FIRST_STEP] = {"peak_allocated_bytes": m["first_step_peak_allocated_bytes"],
                                       "peak_reserved_bytes": m["first_step_peak_reserved_bytes"]}
    if m["peak_allocated_bytes"] is not None:
        phases[RunPhase.STEP] = {"peak_allocated_bytes": m["peak_allocated_bytes"],
                                 "peak_reserved_bytes": m["peak_reserved_bytes"]}
    if gpu is None:
        notes.append(f"no GPU: the run's peak resident memory (process tree) was {m['peak_rss_bytes']} bytes")
    elif gpu["run_memory_source"] == "device":
        notes.append("device_total_bytes is NVML's device-wide used memory (the run's PIDs were not listed)")
    return make_record(
        "watch", env, model=exp.model if exp else None,
        setup=exp.setup.to_dict(exp.spec) if exp else None,
        memory={"peak_allocated_bytes": m["peak_allocated_bytes"], "peak_reserved_bytes": m["peak_reserved_bytes"],
                "device_total_bytes": m["device_total_bytes"]},
        run_phases=phases, timing=timing,
        device={"cuda_context_bytes": None, "cublas_workspace_bytes": None, "alloc_conf": alloc_conf},
        files=files, notes=notes)


def write_watch_record(path: Path, state: WatchState, **kw: Any) -> Path | None:
    try:
        return write_record(path, watch_record(state, **kw))
    except PlannerError as e:   # a setup the record cannot hold: the watch's JSON lines still stand
        state.note(f"no record written: {e}")
        return None
    except OSError as e:        # an unwritable --record path: said in one line, never a traceback
        state.note(f"no record written to {path}: {e.strerror}")
        return None
