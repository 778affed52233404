"""GpuplanCallback: measures memory inside a user's own HF Trainer run and checks the estimate.

    trainer = Trainer(model, args, train_dataset=ds, callbacks=[GpuplanCallback()])
    trainer.train()   # writes <output_dir>/gpuplan_memory.json

Per optimizer step it records the allocator's peaks on a GPU (`max_memory_allocated`,
`max_memory_reserved`, and cudaMemGetInfo's device-wide used bytes at the step's end); on a CPU,
which has no allocator statistics, the process's peak resident memory (VmHWM, reset each step
where Linux allows). At train end it builds the run's gpuplan setup from the model and
TrainingArguments, estimates it, and writes the comparison with the measured steady state.

Under `gpuplan watch` (GPUPLAN_WATCH_DIR set) it also writes each step, with the tokens the model saw,
through the watch's hook (profiler/watch/hook.py), and reports the run's setup once, at the first step.
"""
from __future__ import annotations

import os
import resource
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from gpuplan.planner import PlannerError, estimate

from .compare import FIGURES, Row
from gpuplan.planner.io.files import write_json_atomic
from .trainer_setup import setup_from_trainer
from .watch import hook as watch_hook
from .watch.schema import ENV_DIR

REPORT_NAME = "gpuplan_memory.json"


@dataclass
class StepMemory:
    step: int
    peak_allocated_bytes: int | None = None
    peak_reserved_bytes: int | None = None
    device_total_bytes: int | None = None       # device-wide used at the step's end (GPU)
    process_peak_rss_bytes: int | None = None   # CPU: resident memory high-water mark


def _peak_rss_bytes() -> int:
    """The process's resident-memory high-water mark in bytes (VmHWM; ru_maxrss is KiB on Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak_rss() -> None:
    """Resets VmHWM to the current RSS (Linux >= 4.0: `echo 5 > /proc/self/clear_refs`); else no-op."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


class GpuplanCallback(TrainerCallback):
    """A TrainerCallback that records per-step peak memory and writes a JSON report at train end."""

    def __init__(self, output: str | os.PathLike | None = None, estimate: bool = True) -> None:
        self.output = output                 # None: <TrainingArguments.output_dir>/gpuplan_memory.json
        self.estimate = estimate
        self.steps: list[StepMemory] = []
        self.device: torch.device | None = None
        self.seq_len = 0                     # longest input_ids seen
        self.step_tokens = 0                 # input_ids elements in training forwards since the last step end
        self._hook = None
        self._watched = False                # under `gpuplan watch`: steps go to its hook too
        self._setup_reported = False

    # --- what the model sees --------------------------------------------------------------
    def _see_inputs(self, module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if isinstance(ids, torch.Tensor) and ids.dim() == 2:
            self.seq_len = max(self.seq_len, int(ids.shape[1]))
            if module.training:   # evaluation forwards are no training tokens
                self.step_tokens += int(ids.numel())

    def _cuda(self) -> bool:
        return self.device is not None and self.device.type == "cuda"

    # --- Trainer events -------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.steps, self.seq_len, self.step_tokens = [], 0, 0
        if model is not None:
            self.device = next(model.parameters()).device
            self._hook = model.register_forward_pre_hook(self._see_inputs, with_kwargs=True)
        self._watched, self._setup_reported = bool(os.environ.get(ENV_DIR)), False
        if self._watched:
            watch_hook.start()

    def on_step_begin(self, args, state, control, **kwargs):
        if self._cuda():
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            _reset_peak_rss()

    def on_step_end(self, args, state, control, **kwargs):
        row = StepMemory(step=state.global_step)
        if self._cuda():
            row.peak_allocated_bytes = torch.cuda.max_memory_allocated(self.device)
            row.peak_reserved_bytes = torch.cuda.max_memory_reserved(self.device)
            free, total = torch.cuda.mem_get_info(self.device)
            row.device_total_bytes = total - free
        else:
            row.process_peak_rss_bytes = _peak_rss_bytes()
        self.steps.append(row)
        if self._watched:
            self._to_watch(row, args, kwargs.get("model"))

    def _to_watch(self, row: StepMemory, args: Any, model: torch.nn.Module | None) -> None:
        """The step (and, once, the run's setup) to `gpuplan watch`, through its hook."""
        if not self._setup_reported and model is not None:
            self._setup_reported = True
            try:
                spec, setup = setup_from_trainer(model, args, self.seq_len or None)
                watch_hook.report_setup(setup, spec)
            except PlannerError:   # the watch says it has no estimate; the run goes on
                pass
        watch_hook.step(tokens=self.step_tokens or None, peak_allocated_bytes=row.peak_allocated_bytes,
                        peak_reserved_bytes=row.peak_reserved_bytes)
        self.step_tokens = 0

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if not state.is_world_process_zero:
            return
        path = self.output or Path(args.output_dir) / REPORT_NAME
        write_json_atomic(path, self.report(model, args))

    # --- report ---------------------------------------------------------------------------
    def measured(self) -> dict[str, int | None]:
        """The steady state: each figure's largest value over the steps after the first
        (the first allocates the optimizer state lazily), or over all steps if there is one."""
        steady = self.steps[1:] or self.steps
        out: dict[str, int | None] = {}
        for name in (*FIGURES, "process_peak_rss_bytes"):
            values = [getattr(s, name) for s in steady if getattr(s, name) is not None]
            out[name] = max(values) if values else None
        return out

    def report(self, model: torch.nn.Module | None, args: Any) -> dict[str, Any]:
        """The JSON report: device, per-step memory, the steady-state figures and, where the run maps
        onto a gpuplan setup, the estimate and the signed error per figure."""
        measured = self.measured()
        out: dict[str, Any] = {
            "device": str(self.device) if self.device is not None else None,
            "steps": [asdict(s) for s in self.steps],
            "measured": measured, "setup": None, "estimate": None, "comparison": None, "notes": [],
        }
        if not self._cuda():
            out["notes"].append("no GPU: the allocator figures are unmeasurable on a CPU; "
                                "process_peak_rss_bytes includes Python, libraries and data")
        if not (self.estimate and model is not None):
            return out
        try:
            spec, setup = setup_from_trainer(model, args, self.seq_len or None)
            est = estimate(spec, setup)
        except PlannerError as e:
            out["notes"].append(f"no estimate: {e}")
            return out
        out["setup"] = setup.to_dict(spec)
        out["estimate"] = est.to_dict()
        out["comparison"] = [Row(f, getattr(est, f), measured[f]).to_dict() for f in FIGURES]
        return out
