"""FLOPs of one training step, per token, by method: what the GPU must compute.

API: `step_flops(model, setup) -> StepFlops` (per token; multiply by tokens).

Conventions, as in the papers the MFU figures come from:
- A matmul of an (m, k) by (k, n) matrix is 2mkn FLOPs; a linear layer costs 2 x weights per token
  forward, and backward twice that: input gradient + weight gradient [Kaplan20 Sec. 2.1: C ~ 6N].
- Attention scores (QK^T and AV) are 2 x 2 x s x heads x head_dim per token and layer forward,
  counted without the causal mask's saving in `model` [PaLM, Chowdhery22 App. B: 6N + 12 L H Q T]
  (the MFU convention papers quote); the backward is twice the forward. What the GPU executes
  (`hardware`, `attention`) takes the causal saving where the kernel skips masked blocks: flash
  kernels (SDPA's flash backend with is_causal, flash-attn 2 with causal=True) compute only the
  s (s + 1) / 2 unmasked query-key pairs of a causal mask, i.e. (s + 1) / 2s of the full count
  [Dao23 FlashAttention-2 Sec. 3.1.1: blocks above the diagonal are skipped; the diagonal blocks'
  masked half is computed and discarded, which this count leaves out]. HF eager attention
  multiplies the full (s, s) score matrix and masks it afterwards: no saving.
- Under full activation checkpointing every decoder layer's forward runs again in the backward
  [Narayanan21 Sec. 3.5, eq. 3: 96 B s l h^2 (1 + s/6h + V/16lh), i.e. four forward passes].
- LoRA/QLoRA: frozen linears compute only the input gradient (no weight-gradient GEMM); the
  adapters (A: in x r, B: r x out) cost 6 r (in + out) per token [Hu21 LoRA; peft lora/layer.py].
Element-wise work (norms, activations, softmax, optimizer) is not counted here: it is memory-bound
and sits in the achievable-MFU figure (planner/speed/throughput.py) or the optimizer-step time.
Embedding lookups cost no FLOPs; the LM head (tied or not) is a matmul of vocab x hidden.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..specs.enums import Attention, Loss
from ..specs.model import ModelSpec
from ..specs.resolved import resolve
from ..specs.setup import TrainingSetup
from ..techniques import ADAPTERS, attention, checkpointing, cut_ce, lora_fa


@dataclass(frozen=True)
class StepFlops:
    """FLOPs per token of one training step, by part."""

    forward: float          # decoder layers + LM head + attention scores (+ adapters)
    backward: float
    recompute: float        # the decoder layers' forward again under checkpointing
    quantized_weights: int  # weights QLoRA dequantizes in each pass (0 otherwise)
    dequant_passes: float   # passes that dequantize them: forward, backward, recompute
    attention: float = 0.0      # score FLOPs executed over all passes (causal saving applied)
    causal_saving: float = 0.0  # score FLOPs per token the causal kernel skips, all passes

    @property
    def linear(self) -> float:
        """Executed GEMM FLOPs per token (linears, adapters, LM head), all passes."""
        return self.hardware - self.attention

    @property
    def model(self) -> float:
        """Model FLOPs per token (no recompute): the numerator of MFU [PaLM App. B]."""
        return self.forward + self.backward

    @property
    def hardware(self) -> float:
        """FLOPs the GPU executes per token, recompute included, the causal saving taken (HFU's numerator)."""
        return self.forward + self.backward + self.recompute - self.causal_saving


def layer_linear_weights(model: ModelSpec) -> float:
    """Weights multiplied per token in all decoder layers; MoE layers count top_k experts."""
    dense = sum(lin.weight_count for lin in model.dense_linears)
    moe = 0.0
    for lin in model.moe_linears:
        share = model.top_k / lin.experts if lin.experts > 1 else 1.0
        moe += lin.weight_count * share
    router = model.n_experts * model.hidden
    return model.dense_layers * dense + model.moe_layers * (moe + router)


def stored_linear_weights(model: ModelSpec) -> int:
    """Weights stored in all decoder-layer linears, every expert counted."""
    dense = sum(lin.weight_count for lin in model.dense_linears)
    moe = sum(lin.weight_count for lin in model.moe_linears)
    return model.dense_layers * dense + model.moe_layers * moe


def causal_fraction(attention_impl: Attention, s: int) -> float:
    """Share of the (s, s) score FLOPs a causal kernel executes: (s + 1) / 2s for the flash
    kernels (SDPA, flash-attn 2), 1 for HF eager (it masks after the full matmul)."""
    if attention_impl is Attention.EAGER:
        return 1.0
    return (s + 1) / (2 * s)


def step_flops(model: ModelSpec, setup: TrainingSetup) -> StepFlops:
    """FLOPs per token of forward, backward and recompute for `setup` (sequence length from it)."""
    rs = resolve(model, setup)
    W = layer_linear_weights(model)
    head = model.head_rows * model.hidden   # the LM head, or a reward model's hidden x 1 score head
    attn = attention.score_flops_per_token(model, setup.seq_len)
    adapter = ADAPTERS[rs.adapters.kind] if rs.adapters else None
    adapters = adapter.flop_weights(model, rs) if adapter else 0.0
    trained_frozen = adapter.extra_weight_grad_weights(model, rs) if adapter else 0   # e.g. a trained lm_head copy
    forward = 2 * (W + head + adapters) + attn
    if rs.full:
        backward = 2 * forward                   # input and weight gradients [Kaplan20 2.1]
    else:
        # frozen linears and head: input gradient only; adapters: both; attention: 2x forward
        backward = 2 * (W + head) + 4 * adapters + 2 * attn + 2 * trained_frozen
        backward -= 2 * lora_fa.frozen_a_params(model, rs)   # LoRA-FA: no weight gradient for the frozen A's
    ckpt = checkpointing.enabled(rs)
    attn_share = 0 if checkpointing.attention_outputs(model, rs) else 1   # save-attention: not recomputed
    recompute = checkpointing.recompute_flop_share(rs) * (2 * (W + adapters) + attn_share * attn)
    if setup.loss is Loss.CCE:   # CCE's backward recomputes the logits blockwise
        recompute += cut_ce.recompute_flops_per_token(model, rs)
    # bitsandbytes dequantizes every stored weight of a quantized linear in each pass, every expert
    # of an MoE layer included (transformers loops over the experts; any expert a token reaches runs)
    quantized = stored_linear_weights(model) if rs.quantized is not None else 0
    passes = 3 + attn_share * checkpointing.recompute_flop_share(rs)   # forward, backward (2x), recompute
    keep = causal_fraction(rs.setup.attention, setup.seq_len)
    return StepFlops(forward, backward, recompute, quantized, (2 + checkpointing.recompute_flop_share(rs)) if quantized else 0,
                     attention=passes * attn * keep, causal_saving=passes * attn * (1 - keep))
