"""Plan: one way to run a fine-tuning job: setup + GPU type + count + memory + time + dollars.

API: `make_plan(model, setup, gpu, dataset_tokens, epochs, est, providers=None, mfu=None) -> Plan`;
`time_report(model, setup, gpu, dataset_tokens=None, epochs=1.0) -> dict` (what `estimate --gpu` adds);
`Plan.to_dict()` is the JSON/records form (the CLI's `--json` and the dashboard's rows).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..specs.gpu import GpuSpec
from .cost import ProviderCost, run_cost
from ..specs.model import ModelSpec
from ..memory.result import MemoryEstimate
from ..specs.setup import TrainingSetup
from ..specs.enums import Objective
from ..speed.throughput import StepTime, step_time


@dataclass(frozen=True)
class Plan:
    model: str
    setup: TrainingSetup
    gpu: GpuSpec
    gpus: int                              # world size
    device_total_bytes: int                # per GPU, the figure that decides the fit
    step: StepTime
    dataset_tokens: int                    # tokens per epoch
    epochs: float
    costs: tuple[ProviderCost, ...]        # cheapest first; () where no allowed provider rents it
    spot: bool = False                     # rank by spot price where recorded
    why: str = ""                          # filled by recommend(): why this plan wins
    notes: tuple[str, ...] = field(default=())

    @property
    def headroom_bytes(self) -> int:
        return self.gpu.memory_bytes - self.device_total_bytes

    @property
    def seconds(self) -> float:
        """Wall-clock seconds for all epochs."""
        return self.dataset_tokens * self.epochs / self.step.tokens_per_s

    @property
    def hours(self) -> float:
        return self.seconds / 3600

    @property
    def hours_range(self) -> tuple[float, float]:
        """[lo, hi] hours from the cross-validated tokens/s range of this GPU family and method."""
        lo, hi = self.step.tokens_per_s_range
        return self.dataset_tokens * self.epochs / hi / 3600, self.dataset_tokens * self.epochs / lo / 3600

    @property
    def usd_range(self) -> tuple[float, float] | None:
        """[lo, hi] dollars at the cheapest allowed provider; None where none rents this GPU."""
        if self.best is None:
            return None
        return self.usd * self.hours_range[0] / self.hours, self.usd * self.hours_range[1] / self.hours

    @property
    def gpu_hours(self) -> float:
        return self.hours * self.gpus

    @property
    def best(self) -> ProviderCost | None:
        """The cheapest allowed provider: by spot price if `spot` and one is recorded."""
        if not self.costs:
            return None
        if self.spot:
            with_spot = [c for c in self.costs if c.spot_usd is not None]
            if with_spot:
                return min(with_spot, key=lambda c: c.spot_usd)
        return self.costs[0]

    @property
    def usd(self) -> float:
        """Dollars at the cheapest allowed provider (inf where none rents this GPU)."""
        b = self.best
        if b is None:
            return float("inf")
        return b.spot_usd if (self.spot and b.spot_usd is not None) else b.usd

    def describe(self) -> str:
        """One line: the setup in the words of the CLI flags."""
        s, p = self.setup, self.setup.parallel
        shard = ""
        if p.world > 1:
            shard = f", {'FSDP ' + p.fsdp.value if p.fsdp.value != 'none' else ('ZeRO-' + str(p.zero) if p.zero else 'DDP')}"
        return (f"{self.gpus}x {self.gpu.name}{shard}, {s.method.value}, {s.precision.value}, {s.optimizer.value}, "
                f"micro-batch {s.batch_size} x {s.seq_len}, grad-accum {s.grad_accum}, "
                f"checkpointing {s.checkpointing.value}")

    def to_dict(self) -> dict[str, Any]:
        b = self.best
        return {
            "model": self.model, "gpu": self.gpu.name, "gpus": self.gpus,
            "setup": {**self.setup.to_dict(), "parallel": self.setup.parallel.as_dict()},
            "description": self.describe(),
            "device_total_bytes": self.device_total_bytes, "memory_bytes": self.gpu.memory_bytes,
            "headroom_bytes": self.headroom_bytes,
            "step": self.step.to_dict(), "tokens_per_s": self.step.tokens_per_s,
            "dataset_tokens": self.dataset_tokens, "epochs": self.epochs,
            "hours": self.hours, "gpu_hours": self.gpu_hours, "hours_range": list(self.hours_range),
            "tokens_per_s_range": list(self.step.tokens_per_s_range),
            "usd_range": list(self.usd_range) if self.usd_range else None,
            "usd": self.usd if b else None, "provider": b.provider if b else None, "spot": self.spot,
            "costs": [c.to_dict() for c in self.costs],
            "why": self.why, "notes": list(self.notes),
        }


def billed_gpus(setup: TrainingSetup) -> int:
    """GPUs the run pays for: its world, and GRPO's vLLM server GPUs (vllm_mode server: `trl vllm-serve` on GPUs
    of their own, taken to be of the same --gpu kind)."""
    return setup.parallel.world + (setup.vllm_server_gpus if setup.objective is Objective.GRPO else 0)


def make_plan(model: ModelSpec, setup: TrainingSetup, gpu: GpuSpec, dataset_tokens: int, epochs: float,
              est: MemoryEstimate | int, providers: tuple[str, ...] | None = None, mfu: float | None = None,
              spot: bool = False) -> Plan:
    """Plan for `setup` on `gpu` (world size from setup.parallel); `est` is its estimate or device total."""
    st = step_time(model, setup, gpu, mfu)
    total = est if isinstance(est, int) else est.device_total_bytes
    hours = dataset_tokens * epochs / st.tokens_per_s / 3600
    return Plan(model.name, setup, gpu, setup.parallel.world, total, st, dataset_tokens, epochs,
                run_cost(gpu, billed_gpus(setup), hours, providers), spot)


def time_report(model: ModelSpec, setup: TrainingSetup, gpu: GpuSpec, dataset_tokens: int | None = None,
                epochs: float = 1.0, providers: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Step time and tokens/s of `setup` on `gpu` (world size from setup.parallel), each with its
    cross-validated range; with `dataset_tokens`, hours and dollars per provider with theirs."""
    st = step_time(model, setup, gpu)
    lo_tps, hi_tps = st.tokens_per_s_range
    out: dict[str, Any] = {
        "step_time_s": st.total, "step_time_s_range": list(st.total_range),
        "tokens_per_s": st.tokens_per_s, "tokens_per_s_range": [lo_tps, hi_tps],
        "tokens_per_s_per_gpu": st.tokens_per_s / st.gpus, "gpus": st.gpus,
        "error_band": list(st.band), "error_band_source": st.band_source,
        "parts_s": {"compute": st.compute, "memory_bound": st.memory_bound, "dequant": st.dequant,
                    "optimizer": st.optimizer, "overhead": st.overhead, "communication": st.communication,
                    "offload": st.offload} | ({"generation": st.generation} if st.generation else {}),
    }
    if dataset_tokens:
        tokens = dataset_tokens * epochs
        hours = tokens / st.tokens_per_s / 3600
        hours_range = [tokens / hi_tps / 3600, tokens / lo_tps / 3600]
        out.update({"dataset_tokens": dataset_tokens, "epochs": epochs, "hours": hours, "hours_range": hours_range,
                    "costs": [{**c.to_dict(), "usd_range": [c.usd * hours_range[0] / hours, c.usd * hours_range[1] / hours]}
                              for c in run_cost(gpu, billed_gpus(setup), hours, providers)]})
    if billed_gpus(setup) != st.gpus:   # shown only when set (older dicts stay as they were)
        out["billed_gpus"] = billed_gpus(setup)
    return out
