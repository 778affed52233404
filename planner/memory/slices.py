"""The part of a model one GPU holds under tensor and pipeline parallelism, as a ModelSpec.

Tensor parallel follows Megatron-LM [Shoeybi et al. 2019, Sec. 3]: the first linear of each
attention/MLP block is column-parallel (its outputs split over `tp`), the last row-parallel (its
inputs split); heads, kv-heads and the MLP width divide by `tp`; norms are replicated; embedding
and lm_head are vocab-parallel (rows split). Without sequence parallelism the norms' and the
residual's activations stay replicated [Korthikanti et al. 2022, Sec. 4.2.2]; a sliced ModelSpec
gives exactly that when fed to planner/activations.py (hidden unchanged, heads/width divided).

Pipeline parallel keeps ceil(L / pp) layers per stage (the largest stage decides the fit).
"""
from __future__ import annotations

from dataclasses import replace

from ..specs.memo import per_model
from ..specs.model import LinearRole, LinearSpec, ModelSpec, QkNorm
from ..specs.parallel import ParallelSpec

_LOCAL: dict = {}



def _split(lin: LinearSpec, tp: int) -> LinearSpec:
    # the last linear of each block is row-parallel in Megatron (RowParallelLinear), the others column-
    # parallel [megatron/core/transformer/attention.py linear_proj, mlp.py linear_fc2]
    if lin.role is LinearRole.OUTPUT:
        return replace(lin, in_features=-(-lin.in_features // tp))
    return replace(lin, out_features=-(-lin.out_features // tp))


def layers_per_stage(model: ModelSpec, p: ParallelSpec) -> int:
    return -(-model.n_layers // p.pp)


def local_model(model: ModelSpec, p: ParallelSpec) -> ModelSpec:
    """The largest pipeline stage's share of `model` on one tensor-parallel rank.

    It keeps the embedding and the lm_head (the first stage holds one, the last the other;
    planner/memory/sharded.py takes out what a stage does not hold).
    """
    if p.tp == 1 and p.pp == 1:
        return model
    # one object per model and (tp, pp), so that the caches keyed by the model object (memo.per_model:
    # the technique terms, the allocator replay's grid) serve every estimate of the slice
    return per_model(_LOCAL, (id(model), p.tp, p.pp), model, lambda: _slice(model, p))


def _slice(model: ModelSpec, p: ParallelSpec) -> ModelSpec:
    tp = p.tp
    n_layers = layers_per_stage(model, p)
    moe_layers = round(model.moe_layers * n_layers / model.n_layers) if model.moe_layers else 0
    # OLMo-2's q/k norms span all heads (split with them); Qwen-3/Gemma-3's span one head (replicated)
    qk = model.qk_norm_size // tp if model.qk_norm is QkNorm.FULL else model.qk_norm_size
    return replace(
        model,
        name=f"{model.name} [tp={p.tp}, pp={p.pp} slice]",
        n_layers=n_layers, moe_layers=moe_layers,
        n_heads=model.n_heads // tp, n_kv_heads=max(model.n_kv_heads // tp, 1),
        intermediate=-(-model.intermediate // tp),
        moe_intermediate=-(-model.moe_intermediate // tp) if model.moe_intermediate else 0,
        vocab=-(-model.vocab // tp),
        dense_linears=tuple(_split(lin, tp) for lin in model.dense_linears),
        moe_linears=tuple(_split(lin, tp) for lin in model.moe_linears),
        qk_norm_size=qk,
    )
