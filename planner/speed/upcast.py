"""The casts a QLoRA model pays when prepare_model_for_kbit_training has upcast its non-quantized
weights to fp32: bytes per token of one decoder layer's pass, on top of eager's (planner/speed/kernels.py).

API: `active(rs) -> bool`, `layer_bytes(m, rs, linears, moe) -> float`.

peft's prepare_model_for_kbit_training (peft/utils/other.py) casts every fp16/bf16 parameter to
fp32: the embeddings and norms too, so the residual stream and every norm's output are fp32. Each
bitsandbytes 4-bit linear then casts its input to the compute dtype and its output back to the
input's dtype (bitsandbytes 0.50.2 nn/modules.py Linear4bit.forward, l.626-637: `inp_dtype =
x.dtype`, `x = x.to(self.compute_dtype)`, `matmul_4bit(...).to(inp_dtype)`), so per token of a
linear of K inputs and N outputs the casts move (4 + e) (K + N) bytes in the forward, and their
autograd backward casts the gradients the other way (the same bytes); a recompute repeats the
forward's. Between the linears the activations are fp32: SiLU(gate) * up and RoPE run on 4-byte
elements instead of e, and flash-attn 2 is handed fp32 q, k, v, which transformers casts to the
compute dtype first (transformers 5.24 integrations/flash_attention.py l.68-70: "the input hidden
states gets silently casted in float32. Hence, we need cast them back"), (4 + e) (A + 2 K) bytes; SDPA is handed them
uncast and picks an fp32 kernel, which is not counted here.

fms-acceleration names the cost (plugins/accelerated-peft framework_plugin_bnb.py at 0258544a: the
stock prepare "will cause problems in the LoraLayers, because the activations will then be
constantly downcasted, resulting in greatly reduced throughput"; on one device with no_peft_model
"will cause a slowdown in training speed due to extraneous dtype casting"), and its a100_80gb.csv
shows it: baseline-peft-bnb (TRL's prepare) is 22% (Mixtral-8x7B) and 19% (Mistral-7B) below
accelerated-peft-bnb (no upcast) on one GPU at batch 4, and equal on two GPUs under FSDP (where TRL
skips the prepare for sharded QLoRA, trl SFTTrainer: `is_sharded_qlora = param.data.device.type in
{"cpu", "meta"}`, and FSDP's mixed precision computes in bf16 anyway). These bytes account for about 40% of that gap; the rest (fp32 MoE routing, gathers and
index_add, fp32 norm and loss inputs' casts under autocast) is not counted.
"""
from __future__ import annotations

from ..specs.engines import engine_of
from ..specs.enums import Attention, DType, MlpKind
from ..specs.model import LinearSpec, ModelSpec
from ..specs.resolved import Resolved

ROPE_PASSES = 7   # eager RoPE's passes over q and k (kernels.py)


def active(rs: Resolved) -> bool:
    """True for a 4-bit base whose residual stream prepare_model_for_kbit_training made fp32 while
    the linears compute in 16 bit."""
    # not under FSDP or DeepSpeed: their fp32 copies (specs/setup.py canonical, "FSDP upcast") are cast
    # to the compute dtype when gathered (FSDP MixedPrecision param_dtype; DeepSpeed's 16-bit module),
    # so the embeddings and norms compute in 16 bit and the activations stay 16-bit
    eng = engine_of(rs.setup.parallel)
    return (rs.quantized is not None and bool(rs.setup.recipe.kbit_upcast) and rs.residual is DType.FP32
            and rs.compute is not DType.FP32 and not (eng.fsdp or eng.deepspeed))


def layer_bytes(m: ModelSpec, rs: Resolved, linears: tuple[LinearSpec, ...], moe: bool) -> float:
    """Extra bytes per token of one decoder layer's forward (its backward moves as many again)."""
    e = rs.compute.bytes
    per_token = lambda lin: m.top_k if lin.experts > 1 else 1   # noqa: E731  routed experts per token
    casts = sum((4 + e) * (lin.in_features + lin.out_features) * per_token(lin) for lin in linears)
    I = m.moe_intermediate * m.top_k if moe else m.intermediate
    A, K = m.n_heads * m.head_dim, m.n_kv_heads * m.head_dim
    act = (5 if m.mlp_kind is MlpKind.GATED else 2) * I * (4 - e)     # fp32 instead of e-byte elements
    rope = ROPE_PASSES * (A + K) * (4 - e)
    flash_in = (4 + e) * (A + 2 * K) if rs.setup.attention is Attention.FLASH else 0
    return casts + act + rope + flash_in
