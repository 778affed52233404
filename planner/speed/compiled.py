"""Memory-bound bytes of a decoder layer and the loss under `torch.compile` (inductor): what the
fused kernels move instead of eager PyTorch's op-by-op kernels (planner/speed/kernels.py).

API: `layer_bytes_forward(m, linears, moe, e, r) -> float`, `loss_bytes(e, V) -> float` (per token).

Inductor lowers the graph between matmuls into fused Triton kernels (torch/_inductor/scheduler.py
`Scheduler.fuse_nodes`: pointwise and reduction nodes that share an iteration space become one
kernel), so each chain of element-wise ops reads its inputs once and writes its outputs once; the
matmuls and SDPA stay extern kernels (cuBLAS, flash) with the operands of eager. Per token of one
pre-norm layer forward, e the compute dtype's bytes and r the residual stream's:
- RMSNorm: one kernel (the fp32 upcast, pow, mean, rsqrt, scale and weight in registers): reads
  its input (r h), writes its output (e h); eager runs five fp32 passes and two 16-bit ones.
- residual adds: read two, write one, as eager (the sum is the next block's residual input).
- SiLU(gate) * up: one kernel: reads gate and up, writes the product (3 I e; eager 5 I e).
- RoPE on q and k: one kernel: reads and writes each once (2 (A + K) e; eager ~7 passes).
- the loss (torchtune compile_loss, or the HF loss inside a compiled model): the upcast and
  log-softmax fuse into the two row reductions (amax, log-sum-exp), each reading the 16-bit logits
  once, and the backward reads them once more and writes their gradient once: 4 e V per token,
  with no fp32 logits in memory (planner/techniques/compile.py counts the same saved set).
Dropout, LoRA branches and eager attention's scores keep their eager counts (kernels.py): the
first two are a small share, the last is refused with --compile by the memory model.
Backward kernels move twice the forward's bytes, recompute once more, as in eager.

The same per-layer and per-step launch costs apply: they are fitted on eager runs and compile
without CUDA graphs still launches one kernel per fused node; no constant is fitted on compiled runs.
"""
from __future__ import annotations

from ..specs.enums import MlpKind
from ..specs.model import LinearSpec, ModelSpec


def _per_token(m: ModelSpec, lin: LinearSpec) -> float:
    return m.top_k if lin.experts > 1 else 1


def layer_bytes_forward(m: ModelSpec, linears: tuple[LinearSpec, ...], moe: bool, e: int, r: int) -> float:
    """Element-wise and GEMM-operand bytes per token of one decoder layer's compiled forward."""
    h = m.hidden
    I = m.moe_intermediate * m.top_k if moe else m.intermediate
    A, K = m.n_heads * m.head_dim, m.n_kv_heads * m.head_dim
    norms = m.norms_per_layer * h * (r + e)                 # one fused kernel per norm: read, write
    residual = 2 * 3 * h * r
    act = (3 if m.mlp_kind is MlpKind.GATED else 2) * I * e  # silu(gate) * up fused: read 2, write 1
    rope = 2 * (A + K) * e                                  # q and k read and written once
    operands = sum((lin.in_features + lin.out_features) * _per_token(m, lin) for lin in linears) * e
    dropout = 2 * (2 * e + 1) * h if m.dropout > 0 else 0
    return norms + residual + act + rope + operands + dropout


def loss_bytes(e: int, V: int) -> float:
    """Bytes per token of the compiled cross-entropy: two reductions read the logits, the backward
    reads them and writes their gradient (4 e V)."""
    return 4 * e * V
