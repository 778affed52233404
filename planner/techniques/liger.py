"""Liger Kernel's RMSNorm, RoPE and SwiGLU/GeGLU kernels: what their autograd Functions save, as a
replacement of the transformers terms in planner/memory/layers.py. Triton kernels: modelled from
source, not simulated. Liger's fused linear cross-entropy is `--loss chunked` (techniques/loss.py).

Source: linkedin/Liger-Kernel v0.8.2 (commit ead96b618e5c67bddc6a6e9bcb99bfe6b5ab661c).

- RMSNorm [src/liger_kernel/ops/rms_norm.py, LigerRMSNormFunction.forward L634-660,
  rms_norm_forward L449-453]: `ctx.save_for_backward(X, W, RSTD)`: the input itself (a view of the
  residual stream, in its own dtype: the Function is not autocast-aware) and one fp32 rstd per row;
  the output `Y = torch.empty(..., dtype=X.dtype)` is a new tensor saved only by the linears that
  read it. transformers' RMSNorm instead saves `hidden_states.to(float32)` (a copy for a 16-bit
  stream), its rsqrt, and the normalized tensor for the weight's gradient. The fp32 rstd equals
  the (b, s, 1) rsqrt output transformers saves, which layers.py does not count either: both are
  left out. `@ensure_contiguous` [ops/utils.py L44-54] copies a non-contiguous input: Gemma-3's
  q_norm/k_norm run on transposed views of the projections.
- RoPE [src/liger_kernel/ops/rope.py, rope_forward L115-158, LigerRopeFunction.forward L218-227]:
  rotates q and k in place in the projections' storage and saves only cos and sin. transformers'
  `q * cos + rotate_half(q) * sin` saves only cos and sin as well (they need no gradient), so the
  saved bytes do not change; Liger drops the forward's transient products.
- cross_entropy [src/liger_kernel/ops/cross_entropy.py, cross_entropy_forward L351-474,
  LigerCrossEntropyFunction.forward L511-569, cross_entropy_backward L476-500]: the patch replaces
  `nn.functional.cross_entropy` inside transformers' ForCausalLMLoss, after its `logits.float()`; the
  kernel writes the gradient into that fp32 tensor in place and saves it; backward only rescales it in
  place. The (T, V) logits still exist, but log_softmax's fp32 output and its two fp32 gradients do not.
- SwiGLU [src/liger_kernel/ops/swiglu.py, LigerSiLUMulFunction.forward L231-264]: saves the gate
  and up projections `(a, b)`, and recomputes silu(a) in backward (`_swiglu_backward_kernel`
  L69-95), where transformers' `act_fn(gate) * up` also keeps silu's output. GeGLU
  [ops/geglu.py LigerGELUMulFunction.forward L135-140] saves the same pair. Phi-3's fused
  gate_up_proj output is chunked, and `@ensure_contiguous` copies both halves: two tensors again
  [transformers/swiglu.py LigerPhi3SwiGLUMLP.forward].

Which kernels a family gets: `apply_liger_kernel_to_<family>` [transformers/monkey_patch.py],
called on the model instance by `_apply_liger_kernel_to_instance` L3623-3650 (HF Trainer's and TRL's
`use_liger_kernel`), which patches the decoder layers' input/post-attention norms, the final norm and
the MLP of an already built model; rope, rms_norm, swiglu/geglu and fused_linear_cross_entropy
default to True for every family gpuplan reads, cross_entropy to False. A model_type missing from
MODEL_TYPE_TO_APPLY_LIGER_FN L3534 (GPT-2, GPT-NeoX) gets no kernel at all.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..specs.errors import PlannerError
from ..specs.model import ModelSpec
from ..specs.resolved import Resolved
from ..specs.setup import LigerSpec

SOURCE = "Liger-Kernel v0.8.2 (ead96b6)"
TAG = "modelled from source, not simulated"


@dataclass(frozen=True)
class FamilyPatch:
    """What one `apply_liger_kernel_to_<family>` patches on a model instance [monkey_patch.py]."""

    function: str
    glu: str = "swiglu"        # the MLP kernel's name in that function's signature (geglu for Gemma)
    qk_norm: bool = False      # the instance patch also replaces self_attn.q_norm / k_norm


# model_type -> its apply function [monkey_patch.py MODEL_TYPE_TO_APPLY_LIGER_FN L3534-3620]
FAMILIES: dict[str, FamilyPatch] = {
    "llama": FamilyPatch("apply_liger_kernel_to_llama"),
    "mistral": FamilyPatch("apply_liger_kernel_to_mistral"),
    "mixtral": FamilyPatch("apply_liger_kernel_to_mixtral"),
    "qwen2": FamilyPatch("apply_liger_kernel_to_qwen2"),
    # instance patch: norm, input_layernorm, post_attention_layernorm, mlp; q_norm/k_norm stay HF's
    "qwen3": FamilyPatch("apply_liger_kernel_to_qwen3"),
    "qwen3_moe": FamilyPatch("apply_liger_kernel_to_qwen3_moe"),
    "phi3": FamilyPatch("apply_liger_kernel_to_phi3"),
    "olmo2": FamilyPatch("apply_liger_kernel_to_olmo2"),
    "gemma": FamilyPatch("apply_liger_kernel_to_gemma", glu="geglu"),
    "gemma2": FamilyPatch("apply_liger_kernel_to_gemma2", glu="geglu"),
    # apply_liger_kernel_to_gemma3_text also patches decoder_layer.self_attn.q_norm / k_norm
    "gemma3_text": FamilyPatch("apply_liger_kernel_to_gemma3_text", glu="geglu", qk_norm=True),
}


def family(m: ModelSpec) -> FamilyPatch | None:
    """The apply function Liger's own lookup (MODEL_TYPE_TO_APPLY_LIGER_FN, keyed by the config's
    model_type) picks for `m`, or None where Liger has none."""
    return FAMILIES.get(m.model_type)


def family_defaults(m: ModelSpec) -> tuple[LigerSpec, bool]:
    """(per-layer kernels, fused linear cross-entropy) that `apply_liger_kernel_to_<family>()` with
    its defaults switches on for `m`: every kernel for a family Liger patches, none otherwise."""
    if family(m) is None:
        return LigerSpec(), False
    return LigerSpec(rms_norm=True, rope=True, swiglu=True), True


def parse_kernels(text: str, m: ModelSpec) -> tuple[LigerSpec, bool]:
    """(per-layer kernels, fused linear cross-entropy) on `m` from a comma list of the names an
    `apply_liger_kernel_to_<family>` takes (rms_norm, rope, swiglu, geglu, fused_linear_cross_entropy
    or flce); raises PlannerError on an unknown name. As `_apply_liger_kernel_to_instance` filters the
    keyword arguments by the family's signature, swiglu applies to SwiGLU families only and geglu to
    Gemma's; layer_norm is in no signature of the families gpuplan reads (all RMSNorm)."""
    alias = {"fused_linear_cross_entropy": "flce"}
    names = {alias.get(t.strip().lower(), t.strip().lower()) for t in text.split(",") if t.strip()}
    unknown = sorted(names - {"rms_norm", "rope", "swiglu", "geglu", "flce", "layer_norm", "cross_entropy"})
    if unknown:
        raise PlannerError(f"Liger kernel(s) {', '.join(unknown)} unknown; choose from "
                           "rms_norm, rope, swiglu (geglu for Gemma), flce, cross_entropy")
    if {"flce", "cross_entropy"} <= names:   # apply_liger_kernel_to_*: assert not (cross_entropy and flce)
        raise PlannerError("Liger's cross_entropy and fused_linear_cross_entropy cannot both be on "
                           "(apply_liger_kernel_to_* asserts it); keep one of them")
    glu = family(m).glu if family(m) else "swiglu"
    return LigerSpec(rms_norm="rms_norm" in names, rope="rope" in names, swiglu=glu in names,
                     cross_entropy="cross_entropy" in names), "flce" in names


def check(m: ModelSpec, liger: LigerSpec) -> None:
    """Raises PlannerError for a kernel Liger does not apply to `m`, or one gpuplan does not model there."""
    if not liger.any():
        return
    if family(m) is None:
        raise PlannerError(f"Liger Kernel has no kernels for {m.model_type} ({m.name}): "
                           "MODEL_TYPE_TO_APPLY_LIGER_FN lacks it; drop --liger/--liger-kernels")
    if liger.rms_norm and m.post_norm:
        raise PlannerError(f"Liger's RMSNorm on {m.name}'s post-sublayer and full-width q/k norms (OLMo-2) is "
                           "not modelled yet; "
                           "use --liger-kernels rope,swiglu,flce")
    if liger.swiglu and m.moe_layers:
        raise PlannerError(f"Liger's expert kernels (LigerExperts) on {m.name}'s MoE layers are not modelled yet; "
                           "use --liger-kernels rms_norm,rope,flce")


def patched(rs: Resolved, kernel: str) -> bool:
    """True where Liger's `kernel` (rms_norm, rope, swiglu) replaces transformers' op in `rs`."""
    return getattr(rs.setup.liger, kernel)


def norm_bytes(h: int, consumers: int, r: float, e: float, autocast: bool) -> tuple[float, float]:
    """(kept, dW-only) bytes per token of a LigerRMSNorm before `consumers` linears.

    Saved: the input X in its own dtype (r), nothing else per element (rstd: see the module doc).
    The output Y, in X's dtype, is saved by the linears for their weights' gradients: under autocast
    on an fp32 stream each linear saves its own 16-bit cast of Y instead.
    """
    dw = consumers * e * h if (r == 4 and autocast) else r * h
    return r * h, dw


def sublayer_norm_bytes(h: int, x: float) -> tuple[float, float]:
    """(kept, dW-only) of a LigerRMSNorm on a sublayer's output (Gemma-2/3 post-attention and
    post-feedforward norms): its input X (x bytes per element) is saved; its output only feeds the
    residual add, which saves nothing."""
    return x * h, 0.0


def qk_norm_bytes(width: int, x: float) -> tuple[float, float]:
    """(kept, dW-only) of q_norm and k_norm under Liger, over `width` = (A + K) columns: the input is
    saved (x bytes per element): Qwen-3's (b, s, heads, d) projection view itself, or for Gemma-3's
    transposed view the copy `@ensure_contiguous` makes; the output goes on to RoPE and the attention
    kernel, which save what they need themselves."""
    return x * width, 0.0


def patches_qk_norm(m: ModelSpec, rs: Resolved) -> bool:
    """True where Liger's RMSNorm replaces `m`'s q_norm/k_norm: Gemma-3's instance patch names them;
    a class patch before the model is built (axolotl) reaches every RMSNorm of the family."""
    liger = rs.setup.liger
    return bool(m.qk_norm_size) and liger.rms_norm and (liger.before_load or family(m).qk_norm)


def glu_saved_tensors(rs: Resolved) -> int:
    """(b, s, I) tensors a gated MLP keeps for backward besides down_proj's input: Liger's SiLUMul /
    GELUMul saves gate and up (2); transformers' act_fn(gate) * up also keeps act_fn's output (3)."""
    return 2 if rs.setup.liger.swiglu else 3


def cross_entropy_bytes(m: ModelSpec, rs: Resolved, T: int) -> tuple[int, int, int]:
    """(forward peak, saved at forward end, backward temporaries) of transformers' ForCausalLMLoss with
    Liger's cross_entropy: the logits, their fp32 copy (the logits themselves in fp32) turned into the
    gradient in place and saved, an fp32 loss per row; backward casts that gradient to the logits' dtype.
    Gemma-2's soft-capping runs in the model's forward before the loss, as without Liger."""
    V, e = m.vocab, rs.compute.bytes
    upcast = 4 * V if e < 4 else 0
    softcap = 2 * e * V if m.final_logit_softcap else 0
    fwd = e * V + upcast + 4 + softcap
    saved = 4 * V + (e * V if m.final_logit_softcap else 0)
    bwd = e * V if e < 4 else 0
    return int(T * fwd), int(T * saved), int(T * bwd)


def notes(m: ModelSpec, liger: LigerSpec) -> list[str]:
    """The estimate's notes on the Liger kernels in `liger`."""
    if not liger.any():
        return []
    glu = family(m).glu if family(m) else "swiglu"
    on = [name for name, flag in (("rms_norm", liger.rms_norm), ("rope", liger.rope), (glu, liger.swiglu),
                                  ("cross_entropy", liger.cross_entropy)) if flag]
    out = [f"Liger {', '.join(on)} kernels: {TAG} ({SOURCE})"]
    if liger.rope:
        out.append("Liger RoPE rotates q/k in place and saves cos/sin only, as transformers' RoPE saves: "
                   "no change in saved bytes")
    return out
