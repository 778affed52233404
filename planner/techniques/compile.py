"""`torch.compile` (inductor): what AOTAutograd's min-cut partitioner saves for backward instead of
what eager autograd saves, per decoder layer and for the loss.

Source: torch 2.13 torch/_functorch/partitioners.py `min_cut_rematerialization_partition`, as
inductor calls it (`compiler="inductor"`, torch/_inductor/compile_fx.py partition_fn) on the joint
graph decomposed by `select_decomp_table()`. Its rules that decide a Llama layer's cut
(`should_ban_recomputation`): matmuls and SDPA are never recomputed ("compute intensive"); a node a
backward matmul reads ("materialized in backward") is saved, not recomputed; a node 4x smaller than
its inputs (a reduction: RMSNorm's rsqrt, the loss's amax and log-sum-exp) is saved; every other
elementwise op is recomputed in backward from the cheapest saved set (weights scaled by
1.1 ** distance to the backward).

Hence, per token of one pre-norm gated layer (e: compute dtype, r: residual-stream dtype):
- each RMSNorm: its input (r h; the first is the layer's input, the second the residual after
  attention) and its rsqrt (4 bytes); its fp32 copy and normalized tensor are recomputed. Its output
  is saved once, in the compute dtype (one cast shared by q/k/v or gate/up, where eager under
  autocast has each linear cast it), and only where a linear reading it trains its weight or a LoRA
  adapter reads it.
- attention: what the SDPA kernel saves (q and k after RoPE, v, output, fp32 logsumexp), as eager;
  RoPE's products are recomputed.
- MLP: gate and up (both matmul outputs), and silu(gate) * up only where down_proj trains its
  weight (a backward matmul reads it); eager also keeps silu's output.
- LoRA: each adapter's lora_A output (r columns); its input is the block input above, or the
  attention output / MLP product already saved.
Outside the layers: the final norm as a layer's; the first layer's residual after attention is
recomputed from the embedding output and o_proj's output (e h instead of r h), and with a frozen
embedding nothing flows into the first layer's input, which is not saved (nor its rsqrt); RoPE's
cos/sin are recomputed. The loss saves the 16-bit logits, the shifted int64 labels, and two fp32 reductions per
row (amax and log-sum-exp): no fp32 logits, no log-softmax output.

Checked against the partitioner run on the real HF model's fake-tensor graph (profiler/compiled.py,
tests/profiler/test_compiled.py, data/measurements/compile_saved.json). What inductor's fused kernels
then allocate (the loss's forward and backward temporaries: the upcast and softmax fused into the
reductions, the logits' gradient written in the compute dtype) is modelled from inductor's fusion,
not simulated: the simulator runs eager kernels.
"""
from __future__ import annotations

from ..specs.enums import Attention, Compile, Loss, MlpKind, NormKind, Objective, Padding, Packing
from ..specs.errors import PlannerError
from ..specs.model import LinearRole, ModelSpec, RopeKind
from ..specs.resolved import AdapterKind, Resolved
from ..specs.setup import TrainingSetup
from . import attention, checkpointing

SOURCE = "torch 2.13 min_cut_rematerialization_partition(compiler='inductor')"
TAG = "loss temporaries modelled from inductor's fusion, not simulated"


def active(rs: Resolved) -> bool:
    return rs.setup.compile is not Compile.NONE


def check(m: ModelSpec, setup: TrainingSetup, rs: Resolved) -> None:
    """Raises PlannerError for a setup whose compiled graph gpuplan has not counted."""
    name = f"--compile {setup.compile.value}"

    def refuse(what: str, fix: str) -> None:
        raise PlannerError(f"{name} with {what} is not modelled yet (its partitioned graph was not counted); {fix}")

    if m.mlp_kind is not MlpKind.GATED or m.norm_kind is not NormKind.RMS or m.post_norm or m.norms_per_layer != 2 \
            or m.qk_norm_size or m.moe_layers or m.kv_lora_rank or m.shared_norm or m.rope is not RopeKind.SHARED:
        refuse(f"{m.name}'s architecture (only Llama-style pre-norm gated layers: Llama, Mistral, Qwen2)",
               "drop --compile")
    if checkpointing.enabled(rs):
        refuse("gradient checkpointing (the partitioner then recomputes inside checkpointed regions)",
               "add --no-grad-ckpt or drop --compile")
    if setup.attention is Attention.EAGER:
        refuse("--attn eager", "use --attn sdpa or flash")
    if setup.loss is not Loss.HF or setup.liger.any():
        refuse(f"--loss {setup.loss.value} or Liger kernels", "use --loss hf without --liger")
    if setup.objective is not Objective.SFT:
        refuse(f"--objective {setup.objective.value}", "drop --objective")
    if setup.padding is not Padding.NONE or setup.packing is not Packing.NONE:
        refuse("an attention mask (--padding/--packing)", "drop --padding/--packing")
    if setup.parallel.world > 1:
        refuse("more than one GPU", "use --gpus 1")
    if setup.optimizer_in_backward or setup.activation_offload.value != "none":
        refuse("--optimizer-in-backward or activation offloading", "drop them")
    ad = rs.adapters
    if ad is not None and (ad.kind is not AdapterKind.LORA or ad.use_dora or ad.dropout > 0 or rs.quantized is not None
                           or ad.embedding_lora or ad.saved_copies):
        refuse("QLoRA, DoRA, LoRA dropout, other peft methods or modules_to_save",
               "use plain LoRA with --lora-dropout 0, or full fine-tuning")


def _trains(rs: Resolved, names: set[str]) -> bool:
    """True where one of the linears `names` needs its input in backward: it trains its weight, or
    a LoRA adapter reads that input."""
    return rs.full or bool(names & set(rs.adapters.targets))


def layer_bytes(m: ModelSpec, rs: Resolved, s: int) -> float:
    """Bytes per token one decoder layer saves for backward under the min-cut partitioner."""
    e, r = rs.compute.bytes, rs.residual.bytes
    h, I = m.hidden, m.intermediate
    lins = m.dense_linears
    attn_in = {lin.name for lin in lins if lin.block == "attn" and lin.role is LinearRole.INPUT}
    mlp_in = {lin.name for lin in lins if lin.block == "mlp" and lin.role is LinearRole.INPUT}
    mlp_out = {lin.name for lin in lins if lin.block == "mlp" and lin.role is LinearRole.OUTPUT}
    attn_out = {lin.name for lin in lins if lin.block == "attn" and lin.role is LinearRole.OUTPUT}
    # what a backward matmul reads: the compute dtype, or without autocast the adapters' dtype
    # peft casts LoRA's input to (`_cast_input_dtype`; the frozen base reads nothing in backward)
    x = e if (rs.full or rs.autocast) else rs.adapters.dtype.bytes
    norms = 2 * (r * h + 4)                                       # each norm's input and rsqrt
    norms += x * h * (_trains(rs, attn_in) + _trains(rs, mlp_in))  # each norm's output, once, where read in backward
    core = attention.core_bytes(m, rs, s)                         # q, k (roped), v, output, logsumexp
    # o_proj's LoRA input: peft's cast to the adapters' dtype (and autocast's back) makes a copy of the
    # kernel's output, which the kernel keeps too; with adapters in the compute dtype it is that output
    o_in = m.n_heads * m.head_dim * x if (rs.adapters and rs.adapters.dtype is not rs.compute
                                          and attn_out & set(rs.adapters.targets)) else 0
    mlp = 2 * e * I + (x * I if _trains(rs, mlp_out) else 0)      # gate, up; silu(gate) * up for down_proj's dW
    lora = 0.0
    if rs.adapters is not None:   # lora_A's output (lora_B's input)
        lora = sum(x * rs.adapters.r for lin in lins if lin.name in rs.adapters.targets)
    return norms + core + o_in + mlp + lora


def outside_bytes(m: ModelSpec, rs: Resolved) -> float:
    """Bytes per token saved outside the decoder layers (the loss apart), input ids included."""
    e, r, h = rs.compute.bytes, rs.residual.bytes, m.hidden
    final_norm = r * h + 4 + (e * h if rs.full else 0)   # its output is read by lm_head's dW only
    # the first layer: with a trained embedding its residual after attention is recomputed from the
    # embedding's output and o_proj's (e h saved instead of r h); with a frozen one no gradient flows into
    # its input, which is then not saved at all (nor its rsqrt). The partitioner's distance weighting keeps
    # the embedding's output after all in some LoRA graphs (q/v on an fp32 stream): e h per token more.
    first_layer = -(r - e) * h if rs.full else -(r * h + 4)
    return 8 + final_norm + first_layer


def loss_bytes(m: ModelSpec, rs: Resolved, T: int, s: int) -> tuple[int, int, int]:
    """(forward peak, saved at forward end, backward temporaries) of the compiled ForCausalLMLoss:
    the 16-bit logits, the labels shifted by one (`nn.functional.pad`, int64, one more per row) and
    the two fp32 reductions per row; backward writes the logits' gradient in their dtype."""
    e, V = rs.compute.bytes, m.vocab
    saved = T * (e * V + 8) + 8 * (T + T // s)
    return int(saved), int(saved), int(T * e * V)


def notes(rs: Resolved) -> list[str]:
    if not active(rs):
        return []
    return [f"torch.compile ({rs.setup.compile.value}): saved activations from the min-cut partitioner's cut "
            f"({SOURCE}, counted on the fake-tensor graph); {TAG}"]
