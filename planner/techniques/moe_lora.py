"""LoRA on a MoE layer's router and fused experts, as peft 0.21 builds it on transformers 5.

transformers 5 stores each MoE layer's experts as two 3-D parameters (`gate_up_proj` (E, 2I, H),
`down_proj` (E, H, I)) and the router as a custom module holding a (E, H) `weight`: none is an
nn.Linear. peft converts a LoRA config for these families (targets named by their v4 modules, and
"all-linear") into `target_parameters` (specs/resolved.py `_peft_expert_targets`) and wraps each
targeted parameter in `lora.ParamWrapper` [peft/tuners/lora/layer.py]:

- parameters: lora_A = nn.Linear(in, r * E), lora_B = nn.Linear(r * E, out) (`update_layer`):
  r * E * (in + out) per fused parameter, r * (H + E) for the router (E = 1);
- forward: `_activate_lora` registers a parametrization under `parametrize.cached()`. For a
  3-D parameter with one active adapter, `_LoraFactorsProxy` folds the update with one
  `torch.baddbmm(W, lhs, rhs)`: a new (E, out, in) tensor the size of the whole expert stack, in
  the base weight's dtype; `lhs`, `rhs` are A and B reshaped and cast to that dtype (`.to`: a
  copy when the adapters are fp32) and saved by baddbmm. For the router (2-D) `_LoraParameterProxy`
  adds `get_delta_weight` (B @ A, under autocast on its cached 16-bit copies) to W;
- the merged weights now require grad, so the ops that read them save what their weight gradient
  needs: the grouped matmuls the merged (E, out, in) tensor itself and their inputs (the gathered
  hidden states, (tokens * top_k, H); the gated product, (tokens * top_k, I)) [transformers
  integrations/moe.py grouped_mm_experts_forward, _grouped_mm: `input.to(weight.dtype)`], the
  router's F.linear its input (the post-attention norm's output) and its merged (E, H) weight
  [models/qwen3_moe/modeling_qwen3_moe.py Qwen3MoeTopKRouter.forward].

The merged weights are saved per layer, not per token: kept through the backward without
checkpointing, rebuilt for one layer at a time in the recompute with it. They are charged with
the layers' weight copies (memory/layers.py ActivationBytes.layer_copies), which the step builder
keeps and recomputes that way.
"""
from __future__ import annotations

from ..specs.enums import Component as C
from ..specs.model import LinearSpec, ModelSpec
from ..specs.resolved import Resolved


def _experts(m: ModelSpec, rs: Resolved) -> list[tuple[LinearSpec, int]]:
    """(fused expert linear, its LoRA rank) for every adapted expert parameter of one MoE layer."""
    if not m.moe_linears:   # a dense model (the common case: estimate() asks several times per call)
        return []
    ranks = dict(rs.adapters.expert_ranks) if rs.adapters else {}
    return [(lin, ranks[lin.name]) for lin in m.moe_linears if lin.experts > 1 and lin.name in ranks]


def expert_params_per_layer(m: ModelSpec, rs: Resolved) -> int:
    """lora_A (r E x in) and lora_B (out x r E) of every adapted fused expert parameter."""
    return sum(r * lin.experts * (lin.in_features + lin.out_features) for lin, r in _experts(m, rs))


def router_params_per_layer(m: ModelSpec, rs: Resolved) -> int:
    """The router's lora_A (r x H) and lora_B (E x r)."""
    return rs.adapters.r * (m.hidden + m.n_experts) if rs.adapters and rs.adapters.router else 0


def params_per_layer(m: ModelSpec, rs: Resolved) -> int:
    return expert_params_per_layer(m, rs) + router_params_per_layer(m, rs)


def saved_bytes_per_token(m: ModelSpec, rs: Resolved) -> float:
    """Per token of one MoE layer: the inputs the merged weights' gradients need. The grouped
    matmuls' inputs are cast to the expert weights' dtype (`input.to(weight.dtype)`); the router's
    input is the norm's output, cast to 16 bit by autocast when the residual stream is fp32."""
    if not rs.adapters:
        return 0.0
    w = rs.compute.bytes      # the 16-bit experts' dtype (memory/layers.py moe_layer_extra)
    total = 0.0
    for lin, _ in _experts(m, rs):
        total += m.top_k * w * lin.in_features     # gathered hidden states / gated product, per routed token
    if rs.adapters.router:
        r = rs.residual
        total += (rs.compute.bytes if rs.autocast and r.bytes != rs.compute.bytes else r.bytes) * m.hidden
    return total


def merged_bytes_per_layer(m: ModelSpec, rs: Resolved) -> int:
    """Per MoE layer: the merged (E, out, in) expert weights and (E, H) router weight, in the base
    weights' dtype, and baddbmm's saved factors where `.to` copied them (fp32 adapters)."""
    if not rs.adapters:
        return 0
    w = rs.frozen.bytes
    total = 0
    for lin, r in _experts(m, rs):
        total += w * lin.weight_count
        if rs.adapters.dtype.bytes != w:
            total += w * r * lin.experts * (lin.in_features + lin.out_features)
    if rs.adapters.router:
        total += w * m.n_experts * m.hidden
    return total


def backward_extra_bytes(m: ModelSpec, rs: Resolved) -> int:
    """One MoE layer's backward beyond its merged weights: each grouped matmul's backward builds
    the merged weight's full (E, out, in) gradient, which baddbmm's backward turns into the factors'
    gradients. down_proj's runs first (gate_up_proj's and down_proj's merged weights live, plus
    its gradient); then down_proj's saved weight is freed and gate_up_proj's gradient is built
    [autograd releases a node's saved tensors once it has run]."""
    if not rs.adapters:
        return 0
    w = rs.frozen.bytes
    merged = {lin.name: w * lin.weight_count for lin, _ in _experts(m, rs)}
    down, up = merged.get("down_proj", 0), merged.get("gate_up_proj", 0)
    return max(down, up - down)


def merged_bytes(m: ModelSpec, rs: Resolved) -> int:
    """All MoE layers' merged weights (memory/layers.py adds them to the layers' weight copies)."""
    return m.moe_layers * merged_bytes_per_layer(m, rs)


def notes(m: ModelSpec, rs: Resolved) -> list[str]:
    if not rs.adapters or not (rs.adapters.expert_ranks or rs.adapters.router):
        return []
    parts = [f"{name} (r={r})" for name, r in rs.adapters.expert_ranks] + (["the router"] if rs.adapters.router else [])
    out = [f"peft adapts {', '.join(parts)} of every MoE layer through lora.ParamWrapper (transformers-5 target "
           f"conversion): each forward builds the merged expert weights, "
           f"{merged_bytes_per_layer(m, rs) / 2**30:.2f} GiB per MoE layer, saved for backward"]
    dense = {lin.name for lin in m.dense_linears + m.moe_linears if lin.experts == 1 and lin.block == "mlp"}
    dropped = sorted(dense & {old for old, _ in m.peft_expert_targets} & set(rs.setup.lora_targets(m)))
    if dropped and (m.dense_layers or m.shared_expert_intermediate):
        out.append(f"{', '.join(dropped)} of the dense layers and shared experts get no LoRA: peft moves those "
                   "names to the fused experts' target_parameters, which match no nn.Linear")
    return out


def backward_candidates(m: ModelSpec, rs: Resolved, act, T: int, ckpt: bool, acts: int, saved_head: int,
                        layer_transient: int) -> list[dict]:
    """The backward's live sets inside a MoE layer whose experts carry LoRA (memory/step.py adds
    them to its candidates; `act` is memory/layers.py's ActivationBytes): the top layer's (no
    gradients yet, everything saved alive) and the lowest MoE layer's (the MoE layers' adapter
    gradients above it live, the dense layers below it not yet; with checkpointing it and the
    dense layers below keep their checkpoints and it is recomputed, its merged weights rebuilt).
    The dense layers (DeepSeek's first_k_dense_replace) are taken to lie below the MoE layers."""
    attn = sum(rs.adapters.r * (lin.in_features + lin.out_features)
               for lin in m.adapted_linears(rs.adapters.targets, moe=True))
    grads = rs.trainable.bytes * (m.moe_layers - 1) * (attn + params_per_layer(m, rs))
    merged = merged_bytes_per_layer(m, rs)
    below = m.dense_layers
    out = []
    if ckpt:
        out.append({C.GRADIENTS: grads, C.LOGITS: 0,
                    C.ACTIVATIONS: T * ((below + 1) * act.ckpt_per_layer + act.outside) + saved_head,
                    C.TEMPORARIES: int(T * act.moe_per_layer) + merged + layer_transient + act.expert_backward})
    else:
        out.append({C.GRADIENTS: 0, C.ACTIVATIONS: acts, C.LOGITS: 0, C.TEMPORARIES: layer_transient + act.expert_backward})
        dense = act.per_layer * m.n_layers - act.moe_per_layer * m.moe_layers   # the dense layers' per token
        out.append({C.GRADIENTS: grads, C.LOGITS: 0,
                    C.ACTIVATIONS: int(T * (dense + act.moe_per_layer + act.outside)) + saved_head + merged,
                    C.TEMPORARIES: layer_transient + act.expert_backward})
    return out
