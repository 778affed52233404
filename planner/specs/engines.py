"""Which engine a ParallelSpec runs, and the dtypes its parameters, gradients and master copy take.

The dtypes follow what each engine does with a transformers model (not what a paper assumes):

- DDP: the model as on one GPU (fp32 weights + autocast for `*-mixed`); gradients are all-reduced
  in their own dtype from bucket buffers [torch/nn/parallel/distributed.py, reducer.cpp].
- DeepSpeed ZeRO 1-3 with bf16/fp16 enabled: the module is cast to 16 bit, the optimizer keeps an
  fp32 master partition and fp32 Adam state, gradients are 16 bit and reduced in 16 bit
  [deepspeed/runtime/zero/stage_1_and_2.py, stage3.py; ZeRO paper, Rajbhandari et al. 2020, Sec. 3].
- FSDP2 `fully_shard`: sharded parameters keep their stored dtype (fp32 for `*-mixed`); with
  `*-mixed` the MixedPrecisionPolicy gathers them in the compute dtype and reduces gradients in
  fp32, torchtitan's default (param_dtype=bfloat16, reduce_dtype=float32)
  [torchtitan/config/job_config.py: mixed_precision_param, mixed_precision_reduce]. Under a
  sharding engine the forward runs in the 16-bit parameters, not under autocast.
"""
from __future__ import annotations

from .enums import Choice, DType, Precision
from .parallel import Fsdp, ParallelSpec


class Engine(Choice):
    SINGLE = "single"            # one data-parallel replica (possibly TP/PP sliced), nothing sharded
    DDP = "ddp"
    ZERO1 = "zero-1"
    ZERO2 = "zero-2"
    ZERO3 = "zero-3"
    FSDP_FULL = "fsdp-full"
    FSDP_GRAD_OP = "fsdp-grad-op"
    FSDP_HYBRID = "fsdp-hybrid"
    YAFSDP = "yafsdp"            # YaFSDP zero_stage=3 (planner/memory/yafsdp.py)

    @property
    def deepspeed(self) -> bool:
        return self in (Engine.ZERO1, Engine.ZERO2, Engine.ZERO3)

    @property
    def fsdp(self) -> bool:
        """An FSDP-like engine: 16-bit gathered parameters, per-unit all-gathers, gradients reduce-scattered."""
        return self in (Engine.FSDP_FULL, Engine.FSDP_GRAD_OP, Engine.FSDP_HYBRID, Engine.YAFSDP)

    @property
    def shards_params(self) -> bool:
        """Parameters live as 1/n shards between uses."""
        return self in (Engine.ZERO3, Engine.FSDP_FULL, Engine.FSDP_GRAD_OP, Engine.FSDP_HYBRID, Engine.YAFSDP)

    @property
    def shards_grads(self) -> bool:
        return self in (Engine.ZERO2, Engine.ZERO3) or self.fsdp

    @property
    def shards_optimizer(self) -> bool:
        return self not in (Engine.SINGLE, Engine.DDP)


_FSDP = {Fsdp.FULL: Engine.FSDP_FULL, Fsdp.GRAD_OP: Engine.FSDP_GRAD_OP, Fsdp.HYBRID: Engine.FSDP_HYBRID,
         Fsdp.YAFSDP: Engine.YAFSDP}
_ZERO = {1: Engine.ZERO1, 2: Engine.ZERO2, 3: Engine.ZERO3}


def engine_of(p: ParallelSpec) -> Engine:
    if p.fsdp is not Fsdp.NONE:
        return _FSDP[p.fsdp]
    if p.zero:
        return _ZERO[p.zero]
    return Engine.DDP if p.dp > 1 else Engine.SINGLE


def shard_degree(p: ParallelSpec) -> int:
    """Ranks one parameter/optimizer shard is split over: the DP group, or one node for HSDP."""
    if engine_of(p) is Engine.FSDP_HYBRID:
        return p.gpus // (p.tp * p.pp) if p.nodes > 1 else p.dp
    return p.dp


def gather_dtype(precision: Precision, engine: Engine, stored: DType) -> DType:
    """dtype parameters are all-gathered in (ZeRO-3, FSDP) and used by the forward."""
    if engine.deepspeed:
        return precision.compute_dtype          # the module itself is 16 bit under DeepSpeed bf16/fp16
    if engine.fsdp and precision.autocast and stored is DType.FP32:
        return precision.compute_dtype          # MixedPrecisionPolicy(param_dtype=compute dtype)
    return stored


def reduce_dtype(precision: Precision, engine: Engine, trainable: DType) -> DType:
    """dtype gradients travel in (all-reduce / reduce-scatter)."""
    if engine.deepspeed:
        return precision.compute_dtype          # DeepSpeed reduces the 16-bit gradients
    if engine is Engine.YAFSDP:
        return DType.FP32                       # bit16_reduce_scatter=False: copied into an fp32 buffer first
    return trainable                            # DDP: the grads' dtype; FSDP2: reduce_dtype=fp32 = stored


def computes_without_autocast(precision: Precision, engine: Engine) -> bool:
    """True where a sharding engine's 16-bit parameters replace autocast (activations as `*-true`)."""
    return precision.autocast and (engine.deepspeed or engine.fsdp)
