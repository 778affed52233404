"""Tiled MLP (`--tiled-mlp [--tiled-mlp-shards N]`, axolotl `tiled_mlp: true`): ALST's TiledMLP, the decoder
layers' MLP run in sequence tiles under no_grad and recomputed tile by tile in backward. Checked against
the simulated step running axolotl's own TiledMLP (profiler/tiled_mlp.py; `tiled` rows of profiler/matrix.py,
data/measurements/accuracy_simulate_tiled.json: 7 rows within 1%).

Source: axolotl-ai-cloud/axolotl @ 067b021c, src/axolotl/monkeypatch/tiled_mlp/patch.py and base.py (the
class-level patch of `{prefix}MLP.forward` [patch_tiled_mlp], applied by loaders/patch_manager.py
`_apply_tiled_mlp` when `tiled_mlp` is set; DeepSpeed runs DeepSpeed's own TiledMLP, the same scheme
[deepspeed/runtime/sequence_parallel/ulysses_sp.py TiledMLP]).

- Shards [tiled_mlp_forward]: `tiled_mlp_num_shards`, else `ceil(seqlen / 32768)` (target_tokens_per_shard),
  the maximum over ranks; seqlen is the MLP input's (a context-parallel rank's shard).
- Forward [TiledMLP.forward]: `ctx.save_for_backward(x)` and nothing else: each tile's MLP runs under
  `torch.no_grad()` and the outputs are concatenated. The MLP's own saved tensors (gate, the activation's
  output, up, the product down_proj saves for its weight, LoRA's saved inputs on gate/up/down) are gone;
  x, the post-attention norm's output, is saved whatever is trained (without tiling the linears save it,
  or their 16-bit casts under autocast on an fp32 stream, only for weight gradients).
- The copies autocast makes of fp32 MLP weights are not saved (the matmuls run under no_grad); a trainable
  weight's copy stays in autocast's cache to the forward's end.
- Backward [TiledMLP.backward]: `x_grad = torch.zeros_like(x)`; for each trainable parameter of the MLP an
  accumulator `torch.zeros_like(p)` (the parameter's dtype; AXOLOTL_TILED_MLP_ACCUM_FP32 unset); then tile by
  tile the MLP forward again with grad (its saved tensors for that tile) and its backward (that tile's
  backward workspace), each tile's parameter gradients added into the accumulator.

Planned for Llama-style gated dense MLPs, with LoRA or full fine-tuning; refused elsewhere in one line.
"""
from __future__ import annotations

from dataclasses import replace

from ..specs.enums import DType, MlpKind, NormKind
from ..specs.errors import PlannerError
from ..specs.model import LinearRole, ModelSpec
from ..specs.params import param_counts
from ..specs.resolved import AdapterKind, Resolved
from . import liger, lora, quantization

TAG = "checked against axolotl's TiledMLP in the simulated step"
SOURCE = "axolotl @ 067b021c monkeypatch/tiled_mlp"
TOKENS_PER_SHARD = 32768          # tiled_mlp_forward: target_tokens_per_shard


def enabled(rs: Resolved) -> bool:
    return rs.setup.tiled_mlp


def check(m: ModelSpec, rs: Resolved) -> None:
    """Raises PlannerError where the tiled MLP is not planned."""
    if not enabled(rs):
        return
    if m.mlp_kind is not MlpKind.GATED or m.norm_kind is not NormKind.RMS or m.moe_layers or m.kv_lora_rank \
            or m.shared_norm or m.post_norm or m.expand_kv:
        raise PlannerError(f"--tiled-mlp on {m.name} ({m.model_type}) is not modelled; a Llama-style gated dense "
                           "MLP is (axolotl tiles MoE blocks only with scattermoe-lora)")
    if rs.setup.liger.swiglu:
        raise PlannerError("--tiled-mlp with Liger's SwiGLU MLP is not modelled (both replace the MLP's forward); "
                           "drop swiglu from --liger-kernels")
    if rs.adapters is not None and rs.adapters.kind is not AdapterKind.LORA:
        raise PlannerError("--tiled-mlp is planned with LoRA or full fine-tuning; drop the other peft method")
    if rs.setup.ckpt_every > 1:
        raise PlannerError("--tiled-mlp with --ckpt-every is not modelled; checkpoint every layer or none")
    if rs.quantized is not None and quantization.int8_inputs_per_layer(m, rs):
        raise PlannerError("--tiled-mlp with 8-bit QLoRA linears is not modelled; use nf4")


def shards(rs: Resolved, seq_len: int) -> int:
    """Tiles of each MLP call: the configured count, else ceil(seq_len / 32768) [tiled_mlp_forward]."""
    return rs.setup.tiled_mlp_shards or max(1, -(-seq_len // TOKENS_PER_SHARD))


def _mlp_in(m: ModelSpec) -> int:
    return sum(1 for lin in m.dense_linears if lin.block == "mlp" and lin.role is LinearRole.INPUT)


def untiled_mlp_bytes(m: ModelSpec, rs: Resolved) -> float:
    """Bytes per token one layer's MLP saves without tiling, as planner/memory/layers.py llama_layer counts
    them: gate / the activation's output / up (Liger's SiLUMul: two), down_proj's input for its weight
    gradient (full fine-tuning), and LoRA's saved tensors on the MLP linears."""
    o = quantization.base_linear_out_bytes(rs)
    I = m.intermediate
    return liger.glu_saved_tensors(rs) * o * I + (o * I if rs.full else 0) + _lora_mlp_bytes(m, rs)


def _lora_mlp_bytes(m: ModelSpec, rs: Resolved) -> float:
    """What peft's LoRA saves on the MLP's linears, per token (techniques/lora.py)."""
    if rs.adapters is None:
        return 0.0
    mlp = {lin.name for lin in m.dense_linears if lin.block == "mlp"}
    targets = tuple(t for t in rs.adapters.targets if t in mlp)
    if not targets:
        return 0.0
    return lora.saved_bytes_per_layer(m, replace(rs, adapters=replace(rs.adapters, targets=targets)))


def saved_delta(m: ModelSpec, rs: Resolved) -> float:
    """Change in one layer's saved bytes per token: the MLP's saved tensors out, its input x in (the norm's
    output, residual dtype); under full fine-tuning the linears already saved x for their weights (or, on an
    fp32 stream under autocast, one 16-bit cast each, which go)."""
    r, e, h = rs.residual.bytes, rs.compute.bytes, m.hidden
    was = (_mlp_in(m) * e * h if (r == 4 and rs.autocast) else r * h) if rs.full else 0
    return r * h - was - untiled_mlp_bytes(m, rs)


def dropped_copies(m: ModelSpec, rs: Resolved) -> int:
    """Bytes of autocast's 16-bit copies of every layer's fp32 MLP weights that no matmul saves under
    tiling (its forward runs under no_grad; a trainable weight's copy stays in autocast's cache until the
    forward ends, then nothing holds it) [planner/techniques/precision.py weight_copies]."""
    if not enabled(rs) or not rs.autocast or rs.residual is not DType.FP32 or rs.quantized is not None:
        return 0
    return int(rs.compute.bytes * param_counts(m).mlp)


def backward_bytes(m: ModelSpec, rs: Resolved, T: int, seq_len: int, param_bytes: int) -> int:
    """One layer's MLP backward under tiling, T tokens: x_grad, the accumulators of the MLP's trainable
    parameters (`param_bytes` per element: their own dtype), and one tile's recomputed saved tensors and
    backward workspace. The backward runs outside autocast (TiledMLP.backward does not restore it, as
    torch.utils.checkpoint does), so on an fp32 stream the tile recomputes in fp32."""
    r, h, I = rs.residual.bytes, m.hidden, m.intermediate
    t = -(-T // shards(rs, seq_len))                       # tokens of one tile (torch.chunk)
    trainable = sum(lin.weight_count for lin in m.dense_linears if lin.block == "mlp") if rs.full else 0
    o = 4 if (rs.autocast and r == 4 and rs.quantized is None) else quantization.base_linear_out_bytes(rs)
    recomputed = liger.glu_saved_tensors(rs) * o * I + (o * I if rs.full else 0)
    tile = t * (recomputed + _lora_mlp_bytes(m, rs) + 2 * r * h + 2 * o * I)
    return int(T * r * h + trainable * param_bytes + tile)


def notes(m: ModelSpec, rs: Resolved, seq_len: int) -> list[str]:
    if not enabled(rs):
        return []
    return [f"tiled MLP: {shards(rs, seq_len)} tile(s) of each layer's MLP run under no_grad, recomputed in "
            f"backward; only the MLP's input is saved; {TAG} ({SOURCE})"]
