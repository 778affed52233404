"""Step time and tokens/s of one training setup on one GPU type, by part, with every assumption.

API: `step_time(model, setup, gpu, mfu=None, constants=None) -> StepTime`; `time_columns(...)`
(the parts before the fitted constants multiply them: what the fit in planner/speed/calibrate.py
reads); `TimeConstants.load()` (data/mfu.json).

Per GPU and optimizer step, with micro-batches of M = batch x seq tokens, `a` micro-batches:

    gemm      = a x M x (GEMM FLOPs + attention FLOPs / attention_ratio) / (ceiling x e_gemm[family])
                (ceiling: the card's measured matmul FLOP/s, planner/speed/ceiling.py; e_gemm a fraction of it)
    memory    = (a x (M x bytes per token + weight bytes) + optimizer bytes) / (bandwidth x e_mem)
    dequant   = a x QLoRA weights x passes x dequantize_4bit's bytes per weight (planner/speed/dequant.py:
                2.5625 B into bf16, 2.766 with double quant) / (bandwidth x e_mem: the same bandwidth-bound class)
    overhead  = a x (layer passes x t_layer + adapter calls x t_adapter + expert calls x t_expert) + t_step
                (t_expert = t_layer: one launch cost per block pass, fitted once; planner/speed/calibrate.py)
    comm      = max(0, collective s - overlap x busy, (1 - overlap efficiency) x collective s)
                (links from planner/speed/links.py; overlap: 2/3 DDP/ZeRO-1/2, 1 FSDP/ZeRO-3)
    offload   = host copies (FSDP's join comm: side streams) + the CPU optimizer's pass over its state + activation offloading's
                copies (twice its host bytes per micro-batch over the host link; on a side stream only
                what exceeds the forward's / backward's compute)

busy = gemm + memory + dequant + overhead. GEMM shape enters through the operand bytes: a GEMM of M
tokens x (K, N) moves e M (K + N) + w K N bytes for 2 M K N FLOPs, so small micro-batches and narrow
layers are memory-bound (roofline terms added, not maxed, since their kernels do not overlap perfectly). The constants (e_*, t_*) are fitted on published runs
(data/mfu.json names them and the runs); peak FLOP/s and bandwidths come from the GPU catalog, the
GEMM ceiling from measured matmul throughput (data/matmul.json).
Attention FLOPs take the causal saving of flash kernels (planner/speed/flops.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ..io import catalog
from ..memory.comm import Link, communication_bytes
from ..memory.pieces import resolved_states, terms
from ..memory.result import Assumption
from ..specs.engines import Engine, engine_of
from ..specs.enums import Compile, DType, Method, Objective, Optimizer, Precision
from ..specs.gpu import GpuSpec
from ..specs.model import ModelSpec
from ..specs.parallel import Offload, ParallelSpec
from ..specs.setup import ActivationOffload, TrainingSetup
from ..specs.resolved import resolve
from ..techniques import (activation_offload, checkpointing, context_parallel, loss, multimodal, optimizers, preference,
                          reward)
from . import ceiling, dequant, links, rollout, upcast
from .flops import StepFlops, step_flops
from .kernels import step_traffic

DEQUANT_BYTES_PER_WEIGHT = 2.5625   # bitsandbytes dequantize_4bit without double quant into bf16 (planner/speed/dequant.py)
# Overlap of collectives with compute [Li et al. 2020, PyTorch DDP, Sec. 3.2.3: gradient buckets
# all-reduce during backward; Zhao et al. 2023, PyTorch FSDP, Sec. 3.3: forward and backward
# prefetch of the next unit's all-gather]: DDP/ZeRO-1/2 hide behind the backward (2/3 of the
# busy time without recompute), FSDP/ZeRO-3 behind the whole step.
OVERLAP_BACKWARD = 2 / 3
OVERLAP_FULL = 1.0
# FSDP's CPU offload copies on side streams from pinned memory, like its collectives: FSDP1 pins each
# flat parameter's CPU shard and its CPU gradient (_flat_param.py FlatParamHandle._init_flat_param_attributes),
# copies the shard to the GPU in pre_unshard on the high-priority pre-unshard stream, which the all-gather's
# unshard stream then waits on (_runtime_utils.py _unshard), prefetched one unit ahead, and copies each
# reduced gradient shard back on the post-backward stream, non_blocking (_runtime_utils.py _offload_grad);
# FSDP2 copies the pinned shard in the all-gather copy-in, non_blocking (_fully_shard/_fsdp_param.py).
# Those host bytes therefore join the collectives' seconds (one chain per unit: copy, then all-gather) and
# hide behind compute as they do; the CPU optimizer's step still runs in series (torch 2.13 source).
SIDE_STREAM_OFFLOAD = (Engine.FSDP_FULL, Engine.FSDP_GRAD_OP, Engine.FSDP_HYBRID)


def mfu_defaults() -> dict[str, Any]:
    """data/mfu.json as stored."""
    return catalog.mfu_constants()


@dataclass(frozen=True)
class TimeConstants:
    """The fitted constants of the time model (data/mfu.json `fitted`)."""

    gemm_efficiency: tuple[tuple[str, float], ...]   # (family, fraction of the matmul ceiling), fitted families only
    cross_family: float                              # the same for families with too few runs
    memory_efficiency: float                         # fraction of datasheet bandwidth, memory-bound kernels
    dequant_efficiency: float                        # the same for bitsandbytes 4-bit dequantization
    per_layer_pass_s: float                          # launch cost of one decoder layer's pass
    per_adapter_call_s: float                        # launch cost of one LoRA branch's pass
    per_step_s: float                                # per optimizer step (optimizer launch, zero_grad, loader)
    per_expert_call_s: float = 0.0                   # one MoE expert's pass (gather, GEMMs, index_add launches)
    overlap_efficiency: float = 1.0                  # share of the collectives that can hide behind compute
    attention_ratio: float = 0.7                     # flash kernel throughput over GEMM throughput
    error_bands: tuple[tuple[str, float, float, int], ...] = field(default=(), compare=False)

    def efficiency(self, family: str) -> tuple[float, bool]:
        """(GEMM efficiency, fitted for this family) for a GPU family."""
        for fam, v in self.gemm_efficiency:
            if fam == family:
                return v, True
        return self.cross_family, False

    def band(self, family: str, method: str) -> tuple[float, float, int, str]:
        """(lowest, highest signed tokens/s error, runs, group) of the cross-validated errors that
        apply to this family and method: the family x method group where it has 5 runs or more,
        else the method over all families, else all runs; a family without a fitted constant
        widens the band by half."""
        bands = {k: (lo, hi, n) for k, lo, hi, n in self.error_bands}
        fitted = self.efficiency(family)[1]
        for key in ((f"{family}|{method}",) if fitted else ()) + (f"*|{method}", "*|*"):
            if key in bands and bands[key][2] >= 5:
                lo, hi, n = bands[key]
                if not fitted:
                    lo, hi = lo * 1.5, hi * 1.5
                return lo, hi, n, key
        return -0.5, 1.0, 0, "none recorded"

    @staticmethod
    def from_json(d: dict[str, Any]) -> "TimeConstants":
        f = d["fitted"]
        fams = tuple(sorted((k, float(v["value"])) for k, v in f["gemm_efficiency"]["families"].items()))
        bands = tuple(sorted((k, float(v["lo"]), float(v["hi"]), int(v["runs"]))
                             for k, v in d.get("error_bands", {}).get("groups", {}).items()))
        return TimeConstants(fams, float(f["gemm_efficiency"]["cross_family"]["value"]),
                             float(f["memory_efficiency"]["value"]), float(f["dequant_efficiency"]["value"]),
                             float(f["per_layer_pass_s"]["value"]), float(f["per_adapter_call_s"]["value"]),
                             float(f["per_step_s"]["value"]), float(f["per_expert_call_s"]["value"]),
                             float(f["overlap_efficiency"]["value"]), float(d["fixed"]["attention_ratio"]["value"]), bands)

    @staticmethod
    def load() -> "TimeConstants":
        return _loaded()


@lru_cache(maxsize=1)
def _loaded() -> TimeConstants:
    return TimeConstants.from_json(mfu_defaults())


def _peak_dtype(gpu: GpuSpec, precision: Precision) -> str:
    dt = precision.compute_dtype
    if dt is DType.FP32:
        return "fp32"   # torch leaves TF32 matmuls off by default (allow_tf32=False since 1.12)
    return dt.value


@lru_cache(maxsize=64)
def calibrated_mfu(gpu_name: str) -> tuple[float, str] | None:
    """(GEMM efficiency, source) from recorded step times on this GPU (data/measurements/*.json with a
    `timing` object): executed FLOPs over (step time x the card's matmul ceiling), the median; None where
    none is recorded."""
    values, files = [], []
    for name, rec in catalog.measurement_records():
        timing = rec.get("timing")
        if not timing or catalog.resolve_gpu(rec["gpu"]).name != gpu_name:
            continue
        model = catalog.resolve_model(rec["setup"]["model"])
        setup = TrainingSetup.from_dict(rec["setup"])
        flops = step_flops(model, setup).hardware * setup.batch_size * setup.seq_len
        gpu = catalog.resolve_gpu(gpu_name)
        rate = ceiling.matmul_ceiling(gpu, _peak_dtype(gpu, setup.precision)).flops
        values.append(flops / (timing["step_time_s"] * rate))
        files.append(name)
    if not values:
        return None
    values.sort()
    return values[len(values) // 2], f"calibrated from {len(values)} recorded step time(s): {', '.join(files)}"


def mfu_for(gpu: GpuSpec, constants: TimeConstants | None = None) -> Assumption:
    """The GEMM efficiency used for `gpu`: calibrated if step times are recorded, else the fitted family
    constant, else the cross-family one."""
    cal = calibrated_mfu(gpu.name)
    if cal is not None:
        return Assumption("gemm_efficiency", round(cal[0], 4), "fraction of the matmul ceiling", cal[1])
    c = constants or TimeConstants.load()
    value, fitted = c.efficiency(gpu.architecture)
    why = (f"{gpu.architecture}: fitted on published runs (data/mfu.json)" if fitted else
           f"{gpu.architecture}: too few published runs, the cross-family constant (data/mfu.json)")
    return Assumption("gemm_efficiency", value, "fraction of the matmul ceiling", why)


@dataclass(frozen=True)
class Columns:
    """Seconds of one optimizer step per GPU at unit constants (efficiency 1, 1 s per launch)."""

    gemm: float          # FLOPs / ceiling (attention / attention_ratio applied by the caller)
    attention: float     # attention FLOPs / ceiling
    memory: float        # bytes / bandwidth, element-wise + operands + optimizer
    optimizer: float     # the optimizer's share of `memory`
    dequant: float       # bytes / bandwidth, QLoRA dequantization
    layer_passes: float  # decoder-layer passes per GPU per step
    adapter_calls: float
    expert_calls: float
    network: float       # collective seconds at the links' effective bandwidth
    overlap: float       # share of busy time collectives hide behind
    offload: float       # host copies and the CPU optimizer, seconds
    tokens_per_step: int
    flops: StepFlops
    peak: float          # the datasheet peak (achieved MFU is quoted against it)
    upcast: bool = False  # QLoRA's kbit fp32 activations cast by every 4-bit linear (planner/speed/upcast.py)
    objective: tuple[int, int, str] = (1, 0, "")   # preference.time_sequences: with-grad and no-grad sequences
    ceiling: float = 0.0  # the GEMM FLOP/s gemm and attention are divided by (planner/speed/ceiling.py)
    ceiling_source: str = ""


@lru_cache(maxsize=65536)
def _setup_terms(model: ModelSpec, setup: TrainingSetup) -> tuple[StepFlops, int, tuple[int, int, int], bool,
                                                                   tuple[int, int, str]]:
    """GPU-independent parts, memoized: recommend() times one setup on many GPUs."""
    fl = step_flops(model, setup)
    rs = resolve(model, setup)
    up = upcast.active(rs)
    objective = preference.time_sequences(rs)
    # what trains and what crosses the links do not depend on torch.compile: ask the memory model
    # without it (its compiled saved set refuses setups, e.g. checkpointing, the time model covers)
    eager = setup.with_(compile=Compile.NONE)
    # the optimizer streams the parameters it steps: not a multimodal wrapper's idle vision side
    trainable = resolved_states(model, eager.with_(parallel=ParallelSpec())).trainable_params - \
        multimodal.idle_params(model, rs)
    if setup.parallel.single_gpu:
        return fl, trainable, (0, 0, 0), up, objective
    vol = communication_bytes(model, eager)
    return fl, trainable, (vol.bytes_by(link=Link.INTRA_NODE), vol.bytes_by(link=Link.INTER_NODE),
                           vol.bytes_by(link=Link.HOST)), up, objective


def time_columns(model: ModelSpec, setup: TrainingSetup, gpu: GpuSpec) -> Columns:
    """The step's parts before the fitted constants scale them (see the module docstring)."""
    model = reward.model_for(model, setup)   # reward modelling runs the sequence-classification model
    p = setup.parallel
    fl, trainable, (intra, inter, host), up, objective = _setup_terms(model, setup)
    tr = step_traffic(model, setup)
    M = setup.batch_size * setup.seq_len
    # a preference objective's micro-batch of b examples puts `policy` x b sequences through the step and
    # `forward` x b through no-grad forwards (techniques/preference.py), each at the forward's share of a
    # step's executed FLOPs; the per-token kernels and launches are scaled alike
    policy, forward, _ = objective
    passes = policy + forward * fl.forward / fl.hardware
    if p.cp > 1:   # each rank of a context-parallel group works on its shard of the sequence
        M = setup.batch_size * context_parallel.local_seq_len(p, setup.seq_len)
    a = setup.grad_accum
    split = p.tp * p.pp       # TP splits every GEMM, PP the layers (1F1B bubble not modelled)
    peak = gpu.peak_flops(_peak_dtype(gpu, setup.precision))
    # GEMMs run at the card's measured matmul rate (planner/speed/ceiling.py), not its datasheet peak
    ceil = ceiling.matmul_ceiling(gpu, _peak_dtype(gpu, setup.precision))
    bw = gpu.memory_bandwidth
    gemm = a * M * passes * fl.linear / split / ceil.flops
    if setup.optimizer is Optimizer.GALORE_ADAMW and not setup.peft:   # GaLore's SVDs (fp32), amortized per step
        o = setup.optim
        gemm += optimizers.galore_svd_flops_per_step(model, o.rank, o.update_proj_gap, o.targets) / split / \
            ceiling.matmul_ceiling(gpu, "fp32").flops
    attention = a * M * passes * fl.attention / split / ceil.flops
    shard = max(p.dp, 1) if (p.zero >= 1 or p.fsdp.value != "none") else 1
    w = setup.adapter_dtype.bytes if setup.peft else setup.recipe.weights.bytes
    opt_bytes = trainable / split / shard * optimizers.streamed_bytes_per_param(setup.optimizer, w)
    offload = 0.0
    if p.offload is not Offload.NONE:
        offload += opt_bytes / links.host_memory().effective
        opt_seconds = 0.0
    else:
        opt_seconds = opt_bytes / bw
    memory = a * passes * (M * tr.bytes_per_token + tr.weight_bytes) / split / bw + opt_seconds
    deq_bytes = dequant.bytes_per_weight(setup.quant, setup.recipe.compute.bytes) if fl.quantized_weights else 0.0
    dequant_s = a * passes * fl.quantized_weights * fl.dequant_passes * deq_bytes / split / bw
    network = 0.0
    eng = engine_of(p)
    if intra or inter or host:
        network = intra / links.gpu_peer_link(gpu).effective + inter / links.network_link(gpu).effective
        host_s = host / links.gpu_host_link(gpu).effective
        if eng in SIDE_STREAM_OFFLOAD:
            network += host_s   # copied on side streams ahead of each unit's all-gather: overlaps compute like it
        else:
            offload += host_s
    overlap = OVERLAP_FULL if eng in (Engine.ZERO3, Engine.FSDP_FULL, Engine.FSDP_HYBRID, Engine.FSDP_GRAD_OP,
                                      Engine.YAFSDP) \
        else OVERLAP_BACKWARD
    return Columns(gemm, attention, memory, opt_seconds, dequant_s, a * passes * tr.layer_passes / p.pp,
                   a * passes * tr.adapter_calls / p.pp, a * passes * tr.expert_calls / p.pp, network, overlap, offload,
                   a * M * policy * max(p.dp, 1), fl, peak, up, objective, ceil.flops, ceil.source)


def _activation_offload_s(model: ModelSpec, setup: TrainingSetup, gpu: GpuSpec,
                          busy: float) -> tuple[float, Assumption | None]:
    """Exposed seconds of activation offloading's host copies per optimizer step (one GPU), and the
    link it assumed: each micro-batch copies its offloaded bytes to host in the forward and back in
    the backward (planner/techniques/activation_offload.py); `busy` is the step's compute seconds
    without the optimizer, split between forward and backward as their FLOPs are (1 : 2 + recompute)."""
    if setup.activation_offload is ActivationOffload.NONE:
        return 0.0, None
    rs, _, act = terms(model, setup.for_model(model))
    T = setup.batch_size * setup.seq_len
    off = activation_offload.offloaded(model, rs, act, T, loss.loss_bytes(model, rs, T, setup.batch_size)[1])
    link = links.gpu_host_link(gpu)
    per_micro = busy / setup.grad_accum
    forward = per_micro / (3 + checkpointing.recompute_flop_share(rs))
    exposed = activation_offload.exposed_seconds(rs, off.host, link.effective, forward, per_micro - forward)
    return setup.grad_accum * exposed, Assumption("activation_offload_link", link.effective, "bytes/s", link.source)


@dataclass(frozen=True)
class StepTime:
    """Seconds of one optimizer step (all micro-batches) on each GPU, by part."""

    compute: float             # GEMMs and attention at the GEMM efficiency
    dequant: float
    optimizer: float
    communication: float       # exposed (not hidden behind compute)
    offload: float
    tokens_per_step: int       # over all GPUs
    gpus: int                  # the world size
    flops: StepFlops
    mfu: float                 # the GEMM efficiency used, as a fraction of the datasheet peak
    peak_flops: float          # per GPU, in the precision's compute dtype
    assumptions: tuple[Assumption, ...]
    memory_bound: float = 0.0  # element-wise kernels, GEMM operands, LoRA branches, loss (optimizer apart)
    overhead: float = 0.0      # fixed launch costs: layers, adapters, the step
    band: tuple[float, float] = (0.0, 0.0)   # signed tokens/s error range of this family x method (cross-validated)
    band_source: str = ""
    generation: float = 0.0    # GRPO's rollouts with HF generate, per optimizer step (planner/speed/rollout.py)

    @property
    def total(self) -> float:
        return (self.compute + self.memory_bound + self.dequant + self.optimizer + self.overhead
                + self.communication + self.offload + self.generation)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_per_step / self.total

    @property
    def tokens_per_s_range(self) -> tuple[float, float]:
        """[lo, hi] tokens/s: what the published runs of this family and method would have
        measured given the cross-validated errors (published = predicted / (1 + error))."""
        lo, hi = self.band
        return self.tokens_per_s / (1 + hi), self.tokens_per_s / (1 + lo)

    @property
    def total_range(self) -> tuple[float, float]:
        lo, hi = self.tokens_per_s_range
        return self.tokens_per_step / hi, self.tokens_per_step / lo

    @property
    def achieved_mfu(self) -> float:
        """Model FLOPs (PaLM convention, no recompute) per second over the GPUs' peak: the figure papers quote."""
        return self.tokens_per_s * self.flops.model / (self.peak_flops * self.gpus)

    def to_dict(self) -> dict[str, Any]:
        return {"step_time_s": self.total, "compute_s": self.compute, "dequant_s": self.dequant,
                "optimizer_s": self.optimizer, "communication_s": self.communication, "offload_s": self.offload,
                "tokens_per_step": self.tokens_per_step, "tokens_per_s": self.tokens_per_s,
                "model_flops_per_token": self.flops.model, "hardware_flops_per_token": self.flops.hardware,
                "mfu_assumed": self.mfu, "mfu_achieved": self.achieved_mfu,
                "memory_bound_s": self.memory_bound, "overhead_s": self.overhead,
                "step_time_s_range": list(self.total_range), "tokens_per_s_range": list(self.tokens_per_s_range),
                "error_band": list(self.band), "error_band_source": self.band_source,
                "assumptions": [a.__dict__ for a in self.assumptions]} | (
                    {"generation_s": self.generation} if self.generation else {})


def assemble(cols: Columns, c: TimeConstants, e_gemm: float) -> tuple[float, float, float, float, float, float]:
    """(compute, memory_bound, optimizer, dequant, overhead, exposed communication) seconds."""
    compute = (cols.gemm + cols.attention / c.attention_ratio) / e_gemm
    memory = (cols.memory - cols.optimizer) / c.memory_efficiency
    optimizer = cols.optimizer / c.memory_efficiency
    dequant = cols.dequant / c.dequant_efficiency
    overhead = (cols.layer_passes * c.per_layer_pass_s + cols.adapter_calls * c.per_adapter_call_s
                + cols.expert_calls * c.per_expert_call_s + c.per_step_s)
    busy = compute + memory + optimizer + dequant + overhead
    return compute, memory, optimizer, dequant, overhead, exposed_comm(cols, c, busy)


def exposed_comm(cols: Columns, c: TimeConstants, busy: float) -> float:
    """Collective seconds not hidden: what the overlappable busy time cannot cover, and at least the
    share (1 - overlap_efficiency) that never overlaps (first gathers, last buckets, contention)."""
    return max(0.0, cols.network - cols.overlap * busy, (1 - c.overlap_efficiency) * cols.network)


def step_time(model: ModelSpec, setup: TrainingSetup, gpu: GpuSpec, mfu: float | None = None,
              constants: TimeConstants | None = None) -> StepTime:
    """StepTime of one optimizer step (grad_accum micro-batches on each of the world's GPUs);
    `mfu` overrides the GEMM efficiency (`--mfu`), `constants` the fitted ones (cross-validation)."""
    c = constants or TimeConstants.load()
    cols = time_columns(model, setup, gpu)
    ratio = cols.ceiling / cols.peak if cols.ceiling and cols.peak else 1.0
    # --mfu is a fraction of the datasheet peak (as papers quote it): as a fraction of the ceiling, mfu / ratio
    used = mfu_for(gpu, c) if mfu is None else Assumption("gemm_efficiency", mfu / ratio, "fraction of the matmul ceiling",
                                                          f"given (--mfu {mfu} of the datasheet peak)")
    compute, memory, optimizer, dequant, overhead, exposed = assemble(cols, c, used.value)
    act_offload, act_note = _activation_offload_s(model, setup, gpu, compute + memory + dequant + overhead)
    method = setup.method.value if isinstance(setup.method, Method) else str(setup.method)
    lo, hi, n, group = c.band(gpu.architecture, method)
    notes = [used,
             Assumption("memory_efficiency", c.memory_efficiency, "fraction of bandwidth", "fitted (data/mfu.json)"),
             Assumption("per_layer_pass_s", c.per_layer_pass_s, "s", "fitted (data/mfu.json)"),
             Assumption("attention_ratio", c.attention_ratio, "fraction of GEMM throughput", "data/mfu.json fixed"),
             Assumption("error_band", [round(lo, 4), round(hi, 4)], "signed tokens/s error",
                        f"cross-validated errors of {group} ({n} runs), data/mfu.json")]
    if cols.adapter_calls:
        notes.append(Assumption("per_adapter_call_s", c.per_adapter_call_s, "s", "fitted (data/mfu.json)"))
    if cols.dequant:
        notes.append(Assumption("dequant_efficiency", c.dequant_efficiency, "fraction of bandwidth", "fitted (data/mfu.json)"))
    if not setup.parallel.single_gpu:
        peer = links.gpu_peer_link(gpu)
        notes += [Assumption("comm_overlap", round(cols.overlap, 4), "fraction of busy time",
                             "DDP buckets overlap the backward, FSDP prefetch the whole step (Li et al. 2020; Zhao et al. 2023)"),
                  Assumption("link_efficiency", peer.efficiency, "fraction", peer.source)]
    if setup.parallel.pp > 1:
        notes.append(Assumption("pipeline_bubble", 0, "fraction", "not modelled (1F1B with many micro-batches)"))
    if setup.compile is not Compile.NONE:
        notes.append(Assumption("compile_fused_kernels", setup.compile.value, "torch.compile backend",
                                "inductor's fused kernels by the bytes they move (planner/speed/compiled.py), modelled "
                                "from source; GEMMs, attention and launch costs as eager"))
    if cols.upcast:
        notes.append(Assumption("kbit_upcast_casts", True, "bool",
                                "prepare_model_for_kbit_training's fp32 activations: each 4-bit linear casts its input "
                                "and output (bitsandbytes Linear4bit.forward; planner/speed/upcast.py), modelled from source"))
    if act_note is not None:
        notes.append(act_note)
    policy, forward, what = cols.objective
    if policy > 1 or forward:
        notes.append(Assumption("objective_sequences", [policy, forward], "sequences per example (with, without grad)",
                                f"--objective {setup.objective.value}: {what} (techniques/preference.py); tokens/s counts "
                                "the tokens of every sequence through the policy; each no-grad forward at the "
                                "forward's share of the step's FLOPs, its kernels and launches scaled alike"))
    gen = rollout.rollout_time(model, setup, gpu, c, used.value, cols.ceiling or cols.peak)
    if gen is not None:
        notes.append(Assumption("rollouts", [gen.completions, gen.new_tokens, round(gen.per_step, 4)],
                                "completions, new tokens, generations per optimizer step",
                                f"GRPO's HF generate: prefill {gen.prefill_s:.3g} s, {gen.new_tokens - 1} decode steps "
                                f"{gen.decode_s:.3g} s, gathers {gen.gather_s:.3g} s per generation (planner/speed/"
                                "rollout.py: the step's constants applied to generate's forwards, not checked against a "
                                "published GRPO run; sampling's Python work outside the model not counted)"))
    elif setup.objective is Objective.GRPO:
        notes.append(Assumption("rollouts", None, "", "vLLM generates: its generation is not timed (its own engine); "
                                "the step's time covers training and the log-prob passes"))
    elif setup.objective is Objective.PPO:
        notes.append(Assumption("objective_sequences", [1, 0], "sequences per example (with, without grad)",
                                "--objective ppo: the policy's micro-batch step only; the value model's forward and "
                                "backward, the rollout (generation, the reference, value and reward forwards) and "
                                "num_ppo_epochs are not timed"))
    notes.append(Assumption("matmul_ceiling", round(ratio, 4), "fraction of the datasheet peak", cols.ceiling_source))
    return StepTime(compute, dequant, optimizer, exposed, cols.offload + act_offload, cols.tokens_per_step, setup.parallel.world,
                    cols.flops, used.value * ratio, cols.peak, tuple(notes), memory, overhead, (lo, hi), group,
                    gen.per_optimizer_step_s if gen is not None else 0.0)
