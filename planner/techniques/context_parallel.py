"""Context and sequence parallelism (`--context-parallel N --cp-kind ...`): every sequence split over N
ranks, each holding 1/N of its tokens through the whole model (embedding, layers, logits and loss), with
the attention exchanging what it needs between them. Modelled from source, not simulated: the exchanges
are NCCL collectives and flash kernels on CUDA that the CPU simulator has neither of.

Per GPU, the step is the one of the local shard (micro-batch x seq_len / N tokens) under the engine that
shards the model over all data-parallel ranks, CP ranks included: accelerate builds FSDP2 on the flattened
`dp_shard_cp` mesh [accelerate/parallelism_config.py build_device_mesh, 1.15.0], DeepSpeed partitions ZeRO
over its sequence-data-parallel group. Besides the shard, each attention holds, while it runs:

- `torch` / `torch-alltoall`: torch's context_parallel over SDPA [torch/distributed/tensor/experimental/
  _context_parallel/_attention.py, torch 2.13.0: _templated_ring_attention, _templated_ring_attention_backward,
  _AllGatherRotater, _AllToAllRotater, _SDPAMerger], as accelerate runs it with FSDP2 (its `_prepare_cp`
  calls `set_rotate_method(cp_comm_strategy)`, "allgather" by default [utils/dataclasses.py
  TorchContextParallelConfig]). Saved for backward: the local q, k, v, output and logsumexp, as without CP.
  Forward: `torch.cat([key.flatten(), value.flatten()])` (one local K+V) sent each step; the all-gather
  rotater gathers it once into an N x (K+V) buffer kept through the loop (all-to-all: the received K+V,
  the one in use and the one being sent); `_cp_options.convert_to_f32 = True`, so the merger keeps an fp32
  output and logsumexp, and each step's block output (compute dtype) is cast to fp32 and merged with two
  fp32 temporaries (`out - sigmoid(block_lse - lse) * (out - block_out)`). Backward: fp32 grad_query,
  grad_key, grad_value accumulators (zeros_like, accum_dtype fp32); K+V gathered again as in the forward;
  each step's kernel gradients in the compute dtype; the K/V gradients rotated in fp32 by an all-to-all
  rotater (`next_grad_kv` cat sent, one received).
- `ring-flash`: ring-flash-attn's ring_flash_attn_func [zhuzilin/ring-flash-attention @ 8996282
  ring_flash_attn/ring_flash_attn.py], axolotl's `ring_attn_func: batch_ring` [axolotl @ 067b021c
  monkeypatch/ring_attn/adapters/batch.py]: forward keeps the K/V in use and the next pair received
  (`send_recv_kv`) beside the local one it saves, and fp32 out/lse accumulators merged with torch's formula
  (utils.py update_out_and_lse; `torch.jit.script`ed, counted unfused: a fuser may drop its temporaries); backward: block_dq/dk/dv buffers (compute dtype), fp32 dq/dk/dv, the next K/V, and
  the fp32 dk/dv being sent with the pair being received.
- `llama3`: ring-flash-attn's llama3_flash_attn_varlen_func (`varlen_llama3`, axolotl's default with
  sample packing; `heads_k_stride` from axolotl's config) [llama3_flash_attn_varlen.py]: forward
  all-gathers `heads_k_stride` K/V heads of the whole sequence at a time into `kv_buffer` and
  `kv_buffer_copy` (2, total_k x N, stride, head_dim) each, and concatenates the per-stride outputs (one
  more output); backward: those two and `dkv_buffer` of the same shape, `kv_contiguous_buffer` (2, total_k,
  stride, head_dim) when the stride is not every K/V head, and dq/dk/dv (compute dtype).
- `ulysses`: DeepSpeed's UlyssesSPAttentionHF (ALST) [deepspeed/runtime/sequence_parallel/ulysses_sp.py
  @ 016d2f7]: all-to-all from (s/N, all heads) to (s, heads/N) before the attention and back after it. The
  kernel saves q, k, v in the (s, heads/N) layout: the same elements as the local shard's, except K/V when N
  exceeds the K/V heads (`kv_replication_factor = world_size // kv_head_count`: one K/V head of the whole
  sequence per rank, repeat_interleave'd); the local q/k/v stay alive beside them while the attention runs,
  one `.contiguous()` copy at a time is made for the all-to-all, and the output comes back through a
  `.contiguous()` copy that o_proj saves for its weight gradient (the flash output without Ulysses is a view).

K/V buffers have the model's K/V heads, as layers.py counts flash's saved K/V: accelerate's hook drops the
mask, and transformers then hands SDPA unexpanded K/V ("CUDA ... require no mask ... to avoid falling
back to the math kernel" [transformers/integrations/sdpa_attention.py use_gqa_in_sdpa, 5.24.0]);
flash-attn and Ulysses take them unexpanded as well.

The sequence splits as each library requires: torch's shards are even (its head-tail load balancer
needs seq_len % 2N == 0 [_load_balancer.py _create_default_load_balancer]; an even split otherwise), the
Ulysses data-loader adapter needs seq_len % N == 0; axolotl pads the batch to a multiple of N
[utils/ctx_managers/sequence_parallel.py apply_sequence_parallelism].
"""
from __future__ import annotations

from dataclasses import dataclass

from ..specs.enums import Attention
from ..specs.errors import PlannerError
from ..specs.model import ModelSpec
from ..specs.parallel import CpKind, ParallelSpec
from ..specs.resolved import Resolved

TAG = "modelled from source, not simulated"
SOURCES = {
    CpKind.TORCH: "torch 2.13.0 context_parallel, all-gather rotater",
    CpKind.TORCH_ALLTOALL: "torch 2.13.0 context_parallel, all-to-all rotater",
    CpKind.RING_FLASH: "ring-flash-attn @ 8996282 ring_flash_attn_func (axolotl batch_ring)",
    CpKind.LLAMA3: "ring-flash-attn @ 8996282 llama3_flash_attn_varlen_func (axolotl varlen_llama3)",
    CpKind.ULYSSES: "DeepSpeed @ 016d2f7 UlyssesSPAttentionHF (ALST)",
}
_TORCH = (CpKind.TORCH, CpKind.TORCH_ALLTOALL)
_FLASH_LIB = (CpKind.RING_FLASH, CpKind.LLAMA3)
_PADS = _FLASH_LIB        # axolotl pads the batch to a multiple of the degree


def enabled(p: ParallelSpec) -> bool:
    return p.cp > 1


def local_seq_len(p: ParallelSpec, seq_len: int) -> int:
    """Tokens of each sequence one rank holds: seq_len / cp (axolotl's ring kinds pad up to a multiple)."""
    return -(-seq_len // p.cp) if p.cp_kind in _PADS else seq_len // p.cp


def check(m: ModelSpec, p: ParallelSpec, seq_len: int, batch_size: int, attention: Attention,
          masked: bool) -> None:
    """Raises PlannerError for a context-parallel setup the library refuses, or one not modelled here."""
    if not enabled(p):
        return
    kind, n = p.cp_kind, p.cp
    if kind in _TORCH and attention is not Attention.SDPA:
        raise PlannerError(f"--cp-kind {kind.value} dispatches torch's SDPA (context_parallel replaces "
                           f"F.scaled_dot_product_attention); use --attention sdpa, not {attention.value}")
    if kind in _FLASH_LIB and attention is not Attention.FLASH:
        raise PlannerError(f"--cp-kind {kind.value} replaces flash-attn 2 (axolotl raises \"context_parallel_size > 1 "
                           "requires flash attention\"); use --attention flash")
    if kind is CpKind.ULYSSES and attention is Attention.EAGER:
        raise PlannerError("--cp-kind ulysses with eager attention (full-sequence scores over heads/N) is not "
                           "modelled; use --attention sdpa or flash")
    if m.sliding_window:
        raise PlannerError(f"--context-parallel: {m.name} has sliding-window layers, whose mask the exchange "
                           "cannot express (accelerate's _attach_context_parallel_hooks raises); not planned")
    if m.kv_lora_rank or m.expand_kv or m.causal_mask_always:
        raise PlannerError(f"--context-parallel on {m.name}'s attention ({m.model_type}) is not modelled; "
                           "a Llama-style model is")
    if masked:   # llama3 runs packed rows as varlen flash calls (cu_seqlens), no mask: the caller lets it through
        raise PlannerError("--context-parallel with --padding/--packing is not modelled yet (torch's context_parallel "
                           "drops the attention mask); drop --padding/--packing, or use --cp-kind llama3 for packed rows")
    if kind is CpKind.LLAMA3 and batch_size != 1:
        raise PlannerError("--cp-kind llama3 runs varlen rows of batch 1 (axolotl asserts batch_size == 1); "
                           "use --batch-size 1")
    if kind in _TORCH and seq_len % n:
        raise PlannerError(f"--seq-len {seq_len} does not split evenly over --context-parallel {n} "
                           f"(torch shards the sequence dimension); use a multiple of {2 * n}")
    if kind is CpKind.ULYSSES and seq_len % n:
        raise PlannerError(f"--seq-len {seq_len} must divide by --context-parallel {n} (DeepSpeed's "
                           "UlyssesSPDataLoaderAdapter shards equal chunks); use a multiple of it")


@dataclass(frozen=True)
class Exchange:
    """Bytes one rank holds for its attention's exchange, beyond the step without CP on the same shard."""

    forward: int        # transient inside one layer's attention forward
    backward: int       # transient inside one layer's attention backward
    saved_per_layer: int = 0   # more bytes saved for backward per layer (Ulysses: replicated K/V, o_proj's input)


def kv_replication(m: ModelSpec, p: ParallelSpec) -> int:
    """Ulysses' kv_replication_factor: world_size // kv_head_count where that exceeds 1."""
    return max(p.cp // m.n_kv_heads, 1)


def o_proj_saved(rs: Resolved) -> bool:
    """o_proj saves its input: its weight trains, or an adapter on it does."""
    return rs.full or "o_proj" in rs.adapters.targets


def exchange(m: ModelSpec, rs: Resolved, p: ParallelSpec, T: int, o_proj_saved: bool) -> Exchange:
    """The exchange buffers of one attention layer over T local tokens (micro-batch x local sequence).

    `o_proj_saved`: o_proj saves its input (its weight or an adapter on it is trained)."""
    if not enabled(p):
        return Exchange(0, 0)
    n, e, d = p.cp, rs.compute.bytes, m.head_dim
    A, K, a = m.n_heads * d, m.n_kv_heads * d, m.n_heads
    kv = 2 * T * K * e                          # one local K+V (the flattened cat a rank sends)
    # `out - sigmoid(block_lse - lse) * (out - block_out)` at its last op: the running fp32 out, the block's
    # fp32 cast, the product and the new out (the difference is freed once multiplied); the running and the
    # block's fp32 logsumexp; the kernel's block output in the compute dtype
    merge = 4 * T * (4 * A + 2 * a) + e * T * A
    grads16 = e * T * (A + 2 * K)               # one kernel's dq, dk, dv in the compute dtype
    grads32 = 4 * T * (A + 2 * K)               # fp32 dq, dk, dv accumulators
    kind = p.cp_kind
    if kind in _TORCH:
        gathered = (n + 1) * kv if kind is CpKind.TORCH else 3 * kv   # N-way buffer + the cat; or recv, current, cat
        dkv = 2 * (2 * T * K * 4)                                     # fp32 K/V gradients sent and received
        return Exchange(gathered + merge, grads32 + gathered + grads16 + dkv)
    if kind is CpKind.RING_FLASH:
        return Exchange(2 * kv + merge, grads16 + grads32 + 2 * kv + 2 * (2 * T * K * 4))
    if kind is CpKind.LLAMA3:
        buf = 2 * T * n * p.heads_k_stride * d * e                   # (2, total_k x N, stride, head_dim)
        contiguous = 2 * T * p.heads_k_stride * d * e if p.heads_k_stride != m.n_kv_heads else 0
        return Exchange(2 * buf + e * T * A, 3 * buf + contiguous + grads16)
    # Ulysses: the local q/k/v beside the kernel's inputs, one contiguous copy for the all-to-all
    r = kv_replication(m, p)
    K_sp = K * r                                # K/V elements per local token the kernel sees (replicated)
    replicated = 2 * e * T * (K_sp - K) if r > 1 else 0
    fwd = e * T * (A + 2 * K) + e * T * max(A, K_sp) + replicated
    bwd = e * T * (A + 2 * K_sp) + e * T * (A + 2 * K) + e * T * max(A, K_sp)
    saved = replicated + (e * T * A if o_proj_saved else 0)
    return Exchange(int(fwd), int(bwd), int(saved))


def notes(m: ModelSpec, p: ParallelSpec, seq_len: int, ex: Exchange) -> list[str]:
    if not enabled(p):
        return []
    s_local = local_seq_len(p, seq_len)
    pad = f" (padded from {seq_len})" if s_local * p.cp != seq_len else ""
    out = [f"context parallel {p.cp_kind.value} over {p.cp} GPUs: each holds {s_local} of every sequence's "
           f"{s_local * p.cp} tokens{pad} through the model and the loss; attention exchange buffers "
           f"{ex.forward / 2**30:.2f} GiB (forward) / {ex.backward / 2**30:.2f} GiB (backward) per layer while it "
           f"runs; {TAG} ({SOURCES[p.cp_kind]})",
           f"data parallel: {p.replicas} distinct micro-batch(es) per step over {p.world} GPUs (each group of "
           f"{p.cp} shares one); parameters, gradients and optimizer state shard over all {p.dp} ranks"]
    if p.cp_kind is CpKind.ULYSSES and kv_replication(m, p) > 1:
        out.append(f"Ulysses: {m.n_kv_heads} K/V heads over {p.cp} ranks: each K/V head replicated "
                   f"{kv_replication(m, p)}x (DeepSpeed's kv_replication_factor)")
    return out


@dataclass(frozen=True)
class Transfer:
    """One exchange of a layer's attention pass: what it moves, per rank, per micro-batch."""

    collective: str      # "all_gather", "reduce_scatter" (size: the full buffer) or "p2p" (size: what is sent)
    size: int            # bytes
    calls: int           # launches per layer pass
    what: str


def transfers(m: ModelSpec, p: ParallelSpec, e: int, T: int, recompute: bool) -> list[Transfer]:
    """The collectives of one layer's attention per micro-batch of T local tokens, forward (twice under
    checkpointing: the recompute runs it again) and backward, from the loops cited in the module doc."""
    n, d = p.cp, m.head_dim
    A, K = m.n_heads * d, m.n_kv_heads * d
    kv, dkv = 2 * T * K * e, 2 * T * K * 4       # one local K+V; its fp32 gradient (torch, ring-flash)
    fwd_passes = 2 if recompute else 1
    kind = p.cp_kind
    if kind in (CpKind.TORCH, CpKind.LLAMA3):
        calls = 1 if kind is CpKind.TORCH else m.n_kv_heads // p.heads_k_stride * 2   # k and v per stride
        out = [Transfer("all_gather", fwd_passes * n * kv, fwd_passes * calls, "K/V all-gathered (forward)"),
               Transfer("all_gather", n * kv, calls, "K/V all-gathered again (backward)")]
        if kind is CpKind.TORCH:
            out.append(Transfer("p2p", n * dkv, n, "fp32 K/V gradients rotated (backward, all-to-all rotater)"))
        else:
            out.append(Transfer("reduce_scatter", n * kv, calls, "K/V gradients reduce-scattered (backward)"))
        return out
    if kind in (CpKind.TORCH_ALLTOALL, CpKind.RING_FLASH):
        return [Transfer("p2p", (fwd_passes + 1) * (n - 1) * kv, (fwd_passes + 1) * (n - 1),
                         "K/V sent to the next rank (forward and backward)"),
                Transfer("p2p", n * dkv, n, "fp32 K/V gradients sent to the next rank (backward)")]
    # Ulysses: all-to-all of q, k, v and of the output, each way; a rank keeps 1/n of each buffer
    K_sp = K * kv_replication(m, p)
    moved = e * T * (2 * A + 2 * K_sp) * (n - 1) // n
    return [Transfer("p2p", (fwd_passes + 1) * moved, (fwd_passes + 1) * 4,
                     "q, k, v and output all-to-all (forward and backward)")]
