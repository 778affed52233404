"""Memory-bound work of one training step: the bytes the non-GEMM kernels move, and how many
kernels are launched, per token and per micro-batch. The time model divides bytes by the card's
bandwidth and counts launches as fixed costs (planner/speed/throughput.py).

API: `step_traffic(model, setup) -> Traffic`.

Counts follow the eager PyTorch kernels transformers and peft run, one read or write of a tensor
being its size in bytes:
- RMSNorm (transformers LlamaRMSNorm.forward): `to(float32)`, `pow(2).mean`, `x * rsqrt`, cast back,
  `weight * x`: about five fp32 passes over h and two 16-bit ones forward; backward twice that.
- Residual adds: read two, write one (b, s, h) per add, two adds per layer.
- Gated MLP activation `act_fn(gate) * up`: SiLU reads/writes I, the product reads 2I writes I.
- RoPE (apply_rotary_pos_emb): q * cos + rotate_half(q) * sin, the same for k: rotate_half's
  slicing and cat plus two products and a sum, ~7 passes over q and k.
- GEMM operands: each linear reads its input (M x K) and writes its output (M x N) per pass; the
  weight read (K x N) is per micro-batch, not per token.
- LoRA branch per adapted linear [peft/tuners/lora/layer.py Linear.forward]: dropout (at p > 0 a
  copy and a bool mask), cast of x to the adapter dtype when they differ, lora_A reads x, lora_B
  writes N, the scaling and the add to the base output read 2N and write N.
- HF eager attention (eager_attention_forward): the (b, a, s, s) scores are written by QK^T, scaled,
  masked, softmaxed in fp32, cast back and read by the AV matmul: ~ a s (8e + 8) bytes per token
  forward, every pair of the causal square (eager masks after the matmul); the flash kernels keep
  scores on chip (their cost is FLOPs, planner/speed/flops.py).
- Residual and attention dropout at p > 0: a read, a write and a bool mask per element.
- Loss (transformers ForCausalLMLoss): logits (V) upcast to fp32, log_softmax, nll; backward the
  softmax gradient and the cast back: ~ (3e + 28) V bytes per token; a chunked fused loss (Liger,
  torchtune chunked CE) reads and writes each chunk once in fp32: ~ (2e + 8) V.
Backward passes move about twice the forward's bytes (the gradient in, the saved input, the
gradient out), recompute once more.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ..specs.enums import Attention, Compile, Loss, MlpKind
from ..specs.model import LinearSpec, ModelSpec
from ..specs.resolved import resolve
from ..specs.setup import TrainingSetup
from ..techniques import checkpointing
from . import compiled, upcast

ROPE_PASSES = 7
BACKWARD_FACTOR = 2.0        # backward kernels move twice the forward's bytes


@dataclass(frozen=True)
class Traffic:
    """Memory-bound bytes per token and launches, all passes of one micro-batch."""

    bytes_per_token: float        # element-wise kernels, GEMM operands, LoRA branch, loss
    weight_bytes: float           # per micro-batch: GEMM weights read once per pass
    layer_passes: int             # decoder-layer passes (forward, backward, recompute) per micro-batch
    adapter_calls: int            # adapted linear calls per micro-batch (all layers, all passes)
    expert_calls: int = 0         # MoE expert calls per micro-batch: transformers' MoE blocks loop over the
                                  # experts (one gather, GEMMs and index_add per expert) [MixtralSparseMoeBlock]


def _per_token(m: ModelSpec, lin: LinearSpec) -> float:
    """How many of this linear's (expert) matrices one token passes through: top_k of a fused MoE weight."""
    return m.top_k if lin.experts > 1 else 1


def _layer_bytes_forward(m: ModelSpec, linears: tuple[LinearSpec, ...], moe: bool, e: int, r: int,
                         eager_scores: int) -> float:
    """Element-wise and GEMM-operand bytes per token of one decoder layer's forward; `eager_scores`
    is the score row length eager attention materializes per head (0 for flash kernels)."""
    h = m.hidden
    I = m.moe_intermediate * m.top_k if moe else m.intermediate
    A, K = m.n_heads * m.head_dim, m.n_kv_heads * m.head_dim
    norms = m.norms_per_layer * h * (20 + 2 * e)          # five fp32 passes, two 16-bit ones
    residual = 2 * 3 * h * r
    act = (5 if m.mlp_kind is MlpKind.GATED else 2) * I * e
    rope = ROPE_PASSES * (A + K) * e
    operands = sum((lin.in_features + lin.out_features) * _per_token(m, lin) for lin in linears) * e
    scores = m.n_heads * eager_scores * (8 * e + 8 + (2 * e + 1 if m.attention_dropout > 0 else 0))
    dropout = 2 * (2 * e + 1) * h if m.dropout > 0 else 0
    return norms + residual + act + rope + operands + scores + dropout


def _adapter_bytes_forward(m: ModelSpec, rs, linears: tuple[LinearSpec, ...]) -> tuple[float, int]:
    """(bytes per token, adapted linears) of one layer's LoRA branches, forward."""
    ad = rs.adapters
    if ad is None:
        return 0.0, 0
    a, e = ad.dtype.bytes, rs.compute.bytes
    total, n = 0.0, 0
    for lin in linears:
        if lin.name not in ad.targets or lin.experts > 1:
            continue
        n += 1
        K, N = lin.in_features, lin.out_features
        x = e
        if ad.dropout > 0:
            total += (2 * x + 1) * K                 # dropout reads x, writes a copy and its bool mask
        if a != e:
            total += (x + a) * K                     # cast of x to the adapter dtype
        total += a * K + a * ad.r * 2 + 4 * N * e    # lora_A reads x; lora_B writes; scale, add
    return total, n


@lru_cache(maxsize=65536)
def step_traffic(model: ModelSpec, setup: TrainingSetup) -> Traffic:
    """Traffic of one micro-batch of `setup` (per GPU before tensor/pipeline splits)."""
    rs = resolve(model, setup)
    m = model
    e, r = rs.compute.bytes, rs.residual.bytes
    recompute = checkpointing.recompute_flop_share(rs)
    per_pass = 1 + BACKWARD_FACTOR + recompute
    eager = setup.seq_len if rs.setup.attention is Attention.EAGER else 0
    fused = setup.compile is not Compile.NONE
    layers_bytes, adapted, weights = 0.0, 0, 0.0
    for linears, moe, count in ((m.dense_linears, False, m.dense_layers), (m.moe_linears, True, m.moe_layers)):
        if not count:
            continue
        fwd = _layer_bytes_forward(m, linears, moe, e, r, eager)
        if fused:   # inductor's fused kernels [planner/speed/compiled.py]; eager scores kept as eager's
            fwd = compiled.layer_bytes_forward(m, linears, moe, e, r) + (fwd - _layer_bytes_forward(m, linears, moe, e, r, 0))
        ad_fwd, n = _adapter_bytes_forward(m, rs, linears)
        layers_bytes += count * (fwd + ad_fwd) * per_pass
        if upcast.active(rs):   # kbit-prepared fp32 activations: 4-bit linears cast in and out [speed/upcast.py]
            layers_bytes += count * upcast.layer_bytes(m, rs, linears, moe) * (2 + recompute)
        adapted += count * n
        weights += count * sum(lin.weight_count for lin in linears) * e
    V = m.head_rows   # the lm_head's vocabulary, or a reward model's score head (its loss is b scores)
    loss = (2 * e + 8) * V if setup.loss is Loss.CHUNKED else (3 * e + 28) * V
    if fused and setup.loss is not Loss.CCE:   # the compiled loss's fused reductions [planner/speed/compiled.py]
        loss = compiled.loss_bytes(e, V)
    if setup.loss is Loss.CCE:   # the logits stay in SRAM: no per-token vocabulary traffic [techniques/cut_ce.py]
        loss = 0
    head_operands = (m.hidden + V) * e * (1 + BACKWARD_FACTOR)
    frozen_passes = 2 + recompute                 # forward, input-gradient GEMM, recompute
    passes = frozen_passes + (1 if rs.full else 0)  # the weight-gradient GEMM reads no weight but writes one
    layer_passes = m.n_layers * (2 + recompute)
    return Traffic(layers_bytes + loss + head_operands, weights * passes, layer_passes,
                   adapted * (2 + recompute), m.moe_layers * m.n_experts * (2 + recompute))
