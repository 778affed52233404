"""Step time and tokens/s of one training setup on one GPU type: compute, memory-bound extras,
communication and offload traffic, with every assumption it used.

API: `step_time(model, setup, gpu, mfu=None) -> StepTime`; `mfu_defaults()`; `calibrated_mfu(gpu)`.

    compute   = tokens per GPU x executed FLOPs per token / (peak x MFU x small-batch factor)
    dequant   = QLoRA weights x passes x bytes per weight / (bandwidth x efficiency)
    optimizer = trainable params x bytes the update streams / (bandwidth x efficiency), once per step
    comm      = sum over planner/comm.py's terms of bytes / (link bandwidth x link efficiency),
                not overlapped with compute unless data/mfu.json's `comm_overlap` says otherwise
    offload   = host copies over PCIe + the CPU optimizer's pass over its state
Constants and their sources: data/mfu.json.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..io import catalog
from ..specs.gpu import GpuSpec
from ..specs.enums import DType, Optimizer, Precision
from ..specs.errors import PlannerError
from .flops import StepFlops, step_flops
from ..specs.model import ModelSpec
from ..specs.parallel import Offload, ParallelSpec
from ..memory.comm import Link, communication_bytes
from ..memory.pieces import resolved_states
from ..memory.result import Assumption
from ..techniques import optimizers
from ..specs.setup import TrainingSetup

FULL_BATCH_TOKENS = 4096   # tokens per micro-batch from which the family MFU holds (data/mfu.json)


def mfu_defaults() -> dict[str, Any]:
    return catalog.mfu_constants()


def _const(key: str) -> float:
    return float(mfu_defaults()[key]["value"])


@lru_cache(maxsize=64)
def calibrated_mfu(gpu_name: str) -> tuple[float, str] | None:
    """(MFU, source) from recorded step times on this GPU (data/measurements/*.json with a
    `timing` object), the median over records; None where none is recorded."""
    values, files = [], []
    for name, rec in catalog.measurement_records():
        timing = rec.get("timing")
        if not timing or catalog.resolve_gpu(rec["gpu"]).name != gpu_name:
            continue
        model = catalog.resolve_model(rec["setup"]["model"])
        setup = TrainingSetup.from_dict(rec["setup"])
        flops = step_flops(model, setup).hardware * setup.batch_size * setup.seq_len
        gpu = catalog.resolve_gpu(gpu_name)
        values.append(flops / (timing["step_time_s"] * gpu.peak_flops(_peak_dtype(gpu, setup.precision))))
        files.append(name)
    if not values:
        return None
    values.sort()
    return values[len(values) // 2], f"calibrated from {len(values)} recorded step time(s): {', '.join(files)}"


def _peak_dtype(gpu: GpuSpec, precision: Precision) -> str:
    dt = precision.compute_dtype
    if dt is DType.FP32:
        return "fp32"   # torch leaves TF32 matmuls off by default (allow_tf32=False since 1.12)
    return dt.value


def mfu_for(gpu: GpuSpec) -> Assumption:
    """The MFU used for `gpu`: calibrated if step times are recorded, else the family default."""
    cal = calibrated_mfu(gpu.name)
    if cal is not None:
        return Assumption("mfu", round(cal[0], 4), "fraction of peak", cal[1])
    fam = mfu_defaults()["families"].get(gpu.architecture) or mfu_defaults()["families"]["unknown"]
    return Assumption("mfu", fam["value"], "fraction of peak", f"{gpu.architecture} default: {fam['source']}")


def small_batch_factor(tokens: int) -> float:
    """GEMM efficiency of a micro-batch of `tokens` relative to a well-fed one (data/mfu.json)."""
    h = _const("small_batch_half_tokens")
    return min(1.0, (tokens / (tokens + h)) * ((FULL_BATCH_TOKENS + h) / FULL_BATCH_TOKENS))


@dataclass(frozen=True)
class StepTime:
    """Seconds of one optimizer step (all micro-batches) on each GPU, by part."""

    compute: float
    dequant: float
    optimizer: float
    communication: float       # exposed (not hidden behind compute)
    offload: float
    tokens_per_step: int       # over all GPUs
    gpus: int                  # the world size
    flops: StepFlops
    mfu: float                 # the MFU used (before the small-batch factor)
    peak_flops: float          # per GPU, in the precision's compute dtype
    assumptions: tuple[Assumption, ...]

    @property
    def total(self) -> float:
        return self.compute + self.dequant + self.optimizer + self.communication + self.offload

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_per_step / self.total

    @property
    def achieved_mfu(self) -> float:
        """Model FLOPs (no recompute) per second over the GPUs' peak: the figure papers quote."""
        return self.tokens_per_s * self.flops.model / (self.peak_flops * self.gpus)

    def to_dict(self) -> dict[str, Any]:
        return {"step_time_s": self.total, "compute_s": self.compute, "dequant_s": self.dequant,
                "optimizer_s": self.optimizer, "communication_s": self.communication, "offload_s": self.offload,
                "tokens_per_step": self.tokens_per_step, "tokens_per_s": self.tokens_per_s,
                "model_flops_per_token": self.flops.model, "hardware_flops_per_token": self.flops.hardware,
                "mfu_assumed": self.mfu, "mfu_achieved": self.achieved_mfu,
                "assumptions": [a.__dict__ for a in self.assumptions]}


@lru_cache(maxsize=65536)
def _setup_terms(model: ModelSpec, setup: TrainingSetup) -> tuple[StepFlops, int, tuple[int, int, int]]:
    """The GPU-independent parts of a step time, memoized: recommend() times one setup on many GPUs.

    (FLOPs per token, trainable parameters, bytes per optimizer step over (intra-node, inter-node, host))."""
    fl = step_flops(model, setup)
    trainable = resolved_states(model, setup.with_(parallel=ParallelSpec())).trainable_params
    if setup.parallel.single_gpu:
        return fl, trainable, (0, 0, 0)
    vol = communication_bytes(model, setup)
    return fl, trainable, (vol.bytes_by(link=Link.INTRA_NODE), vol.bytes_by(link=Link.INTER_NODE),
                           vol.bytes_by(link=Link.HOST))


def _comm_seconds(gpu: GpuSpec, volume: tuple[int, int, int]) -> tuple[float, float]:
    """(network seconds, host-copy seconds) per optimizer step from planner/comm.py's volumes."""
    intra, inter_bytes, host_bytes = volume
    if not (intra or inter_bytes or host_bytes):
        return 0.0, 0.0
    eff = _const("link_efficiency")
    inter = float(gpu.raw.get("inter_node_bytes_per_s") or _const("inter_node_bytes_per_s"))
    net = intra / (gpu.interconnect_bandwidth * eff) + inter_bytes / (inter * eff)
    return net, host_bytes / (gpu.host_bandwidth * eff)


def step_time(model: ModelSpec, setup: TrainingSetup, gpu: GpuSpec, mfu: float | None = None) -> StepTime:
    """StepTime of one optimizer step (grad_accum micro-batches on each of the world's GPUs)."""
    p = setup.parallel
    fl, trainable, volume = _setup_terms(model, setup)
    micro_tokens = setup.batch_size * setup.seq_len
    dp = max(p.dp, 1)
    tokens_gpu = micro_tokens * setup.grad_accum          # tokens each data-parallel rank sees
    dtype = _peak_dtype(gpu, setup.precision)
    peak = gpu.peak_flops(dtype)
    used = mfu_for(gpu) if mfu is None else Assumption("mfu", mfu, "fraction of peak", "given (--mfu)")
    factor = small_batch_factor(micro_tokens)
    # TP splits every GEMM over tp GPUs, PP the layers over pp stages (bubble not modelled: 1F1B
    # with many micro-batches; noted in assumptions)
    compute = tokens_gpu * fl.hardware / (p.tp * p.pp) / (peak * used.value * factor)
    bw = gpu.memory_bandwidth * _const("memory_bound_efficiency")
    dequant = (tokens_gpu // micro_tokens) * fl.quantized_weights / (p.tp * p.pp) * fl.dequant_passes \
        * _const("dequant_bytes_per_weight") / bw
    shard = dp if (p.zero >= 1 or p.fsdp.value != "none") else 1
    w = setup.adapter_dtype.bytes if setup.peft else setup.precision.weight_dtype.bytes
    opt_bytes = trainable / (p.tp * p.pp) / shard * optimizers.streamed_bytes_per_param(setup.optimizer, w)
    if p.offload is not Offload.NONE:
        optimizer = opt_bytes / _const("cpu_adam_bytes_per_s")
    else:
        optimizer = opt_bytes / bw
    net, host = _comm_seconds(gpu, volume)
    exposed = net * (1 - _const("comm_overlap"))
    a = mfu_defaults()
    notes = [used,
             Assumption("small_batch_factor", round(factor, 3), "fraction", a["small_batch_half_tokens"]["source"]),
             Assumption("memory_bound_efficiency", _const("memory_bound_efficiency"), "fraction",
                        a["memory_bound_efficiency"]["source"])]
    if fl.quantized_weights:
        notes.append(Assumption("dequant_bytes_per_weight", _const("dequant_bytes_per_weight"), "bytes",
                                a["dequant_bytes_per_weight"]["source"]))
    if not p.single_gpu:
        notes += [Assumption("comm_overlap", _const("comm_overlap"), "fraction", a["comm_overlap"]["source"]),
                  Assumption("link_efficiency", _const("link_efficiency"), "fraction", a["link_efficiency"]["source"])]
    if p.pp > 1:
        notes.append(Assumption("pipeline_bubble", 0, "fraction", "not modelled (1F1B with many micro-batches)"))
    return StepTime(compute, dequant, optimizer, exposed, host, tokens_gpu * dp, p.world, fl, used.value, peak,
                    tuple(notes))
