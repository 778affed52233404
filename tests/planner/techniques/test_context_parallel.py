"""Context / sequence parallelism (planner/techniques/context_parallel.py): the shard, the exchange buffers
and collectives from torch's, ring-flash-attn's and DeepSpeed's source, and the refusals.

Numbers are derived by hand from the loops the module cites, on Llama-3.1-8B: 32 heads, 8 K/V heads,
head_dim 128 (A = 4096, K = 1024), hidden 4096, intermediate 14336, 32 layers, bf16 (e = 2)."""
from __future__ import annotations

import pytest

from gpuplan.planner.io.catalog import resolve_model
from gpuplan.planner.memory.comm import communication_bytes
from gpuplan.planner.memory.estimate import estimate
from gpuplan.planner.specs.enums import Attention, Loss, Method, Packing
from gpuplan.planner.specs.errors import PlannerError
from gpuplan.planner.specs.parallel import CpKind, Fsdp, ParallelSpec
from gpuplan.planner.specs.resolved import resolve
from gpuplan.planner.specs.setup import Checkpointing, TrainingSetup
from gpuplan.planner.techniques import context_parallel as cp

MiB = 2**20
T = 8192                       # local tokens: batch 1 x 65536 / 8, or 32768 / 4
KV = 2 * T * 1024 * 2          # one local K+V in bf16: 32 MiB


@pytest.fixture(scope="module")
def llama():
    return resolve_model("llama-3.1-8b")


def _setup(kind: CpKind, n: int, seq: int = 65536, method: Method = Method.FULL, gpus: int = 8, **par) -> TrainingSetup:
    attn = Attention.FLASH if kind in (CpKind.RING_FLASH, CpKind.LLAMA3) else Attention.SDPA
    engine = {"zero": 3} if kind is CpKind.ULYSSES else {"fsdp": Fsdp.FULL}
    return TrainingSetup(method=method, seq_len=seq, batch_size=1, attention=attn, loss=Loss.CHUNKED,
                         checkpointing=Checkpointing.FULL,
                         parallel=ParallelSpec(gpus=gpus, cp=n, cp_kind=kind, **{**engine, **par}))


def _ex(m, setup: TrainingSetup) -> cp.Exchange:
    local = setup.with_(seq_len=cp.local_seq_len(setup.parallel, setup.seq_len), parallel=ParallelSpec())
    rs = resolve(m, local)
    return cp.exchange(m, rs, setup.parallel, setup.batch_size * local.seq_len, cp.o_proj_saved(rs))


def test_local_sequence_is_the_shard_and_axolotl_pads():
    assert cp.local_seq_len(ParallelSpec(gpus=4, cp=4, fsdp=Fsdp.FULL), 32768) == 8192
    # axolotl pads the batch to a multiple of the degree (apply_sequence_parallelism): ceil(32770 / 4)
    assert cp.local_seq_len(ParallelSpec(gpus=4, cp=4, cp_kind=CpKind.RING_FLASH), 32770) == 8193


def test_torch_allgather_buffers_by_hand(llama):
    ex = _ex(llama, _setup(CpKind.TORCH, 8))
    # forward: the 8-way gathered K+V and the cat being sent (9 x 32 MiB); the merger: the running fp32 out,
    # the block out cast to fp32, the product and the new out (4 x 4 T A), the running and the block's fp32
    # lse (2 x 4 T a), the bf16 block out (2 T A)
    merge = 4 * T * (4 * 4096 + 2 * 32) + 2 * T * 4096
    assert ex.forward == 9 * KV + merge
    # backward: fp32 grad_q/k/v (4 T (A + 2K) = 192 MiB), K+V gathered again (288 MiB), one kernel's bf16
    # dq/dk/dv (96 MiB), the fp32 K/V gradient sent and the one received (2 x 64 MiB)
    assert ex.backward == (192 + 288 + 96 + 128) * MiB


def test_alltoall_and_ring_flash_hold_a_few_kv_pairs(llama):
    a2a = _ex(llama, _setup(CpKind.TORCH_ALLTOALL, 8))
    ring = _ex(llama, _setup(CpKind.RING_FLASH, 8))
    merge = 4 * T * (4 * 4096 + 2 * 32) + 2 * T * 4096
    assert a2a.forward == 3 * KV + merge            # received, in use, the cat being sent
    assert ring.forward == 2 * KV + merge           # in use and next (the local pair is saved anyway)
    # ring backward: block dq/dk/dv (bf16, 96 MiB), fp32 dq/dk/dv (192), next K/V (64), fp32 dk/dv out and in (128)
    assert ring.backward == (96 + 192 + 64 + 128) * MiB
    # neither grows with the degree; torch's all-gather buffer does
    assert _ex(llama, _setup(CpKind.RING_FLASH, 4, seq=32768)) == ring
    assert _ex(llama, _setup(CpKind.TORCH, 4, seq=32768)).forward < _ex(llama, _setup(CpKind.TORCH, 8)).forward


def test_llama3_buffers_follow_heads_k_stride(llama):
    one = _ex(llama, _setup(CpKind.LLAMA3, 8, heads_k_stride=1))
    four = _ex(llama, _setup(CpKind.LLAMA3, 8, heads_k_stride=4))
    buf = 2 * T * 8 * 1 * 128 * 2                   # (2, total_k x 8, stride 1, 128) bf16: 32 MiB
    assert one.forward == 2 * buf + 2 * T * 4096    # kv_buffer, kv_buffer_copy, the concatenated output
    assert one.backward == 3 * buf + 2 * T * 128 * 2 + 2 * T * (4096 + 2 * 1024)
    assert four.forward == 2 * 4 * buf + 2 * T * 4096


def test_ulysses_replicates_kv_heads_past_their_count(llama):
    # 16 ranks over 8 K/V heads: kv_replication_factor 2, each rank one K/V head of the whole sequence
    ex16 = _ex(llama, _setup(CpKind.ULYSSES, 16, seq=131072, gpus=16))
    replicated = 2 * 2 * T * (2 * 1024 - 1024)
    assert ex16.saved_per_layer == replicated + 2 * T * 4096    # + o_proj's contiguous input (full fine-tuning)
    ex8 = _ex(llama, _setup(CpKind.ULYSSES, 8))
    assert ex8.saved_per_layer == 2 * T * 4096                  # 8 heads over 8 ranks: nothing replicated
    lora = _ex(llama, _setup(CpKind.ULYSSES, 8, method=Method.LORA))
    assert lora.saved_per_layer == 0                            # peft's default targets: q_proj, v_proj


def test_the_shard_plans_like_a_shorter_sequence(llama):
    ring = estimate(llama, _setup(CpKind.RING_FLASH, 8))
    short = estimate(llama, _setup(CpKind.RING_FLASH, 8).with_(seq_len=8192, parallel=ParallelSpec(gpus=8, fsdp=Fsdp.FULL)))
    whole = estimate(llama, _setup(CpKind.RING_FLASH, 8).with_(parallel=ParallelSpec(gpus=8, fsdp=Fsdp.FULL)))
    # ring-flash's buffers (480 MiB) stay under the MLP's backward transient T (2rh + 2eI) = 576 MiB
    assert ring.peak_allocated_bytes == short.peak_allocated_bytes < whole.peak_allocated_bytes
    assert any("modelled from source, not simulated" in n for n in ring.notes)


def test_the_allgather_buffer_outgrows_the_mlp_backward(llama):
    # the recomputed MLP's MulBackward: the layer output's bf16 gradient and three intermediate-sized ones,
    # T (2 H + 3 x 2 I) = 736 MiB (planner/memory/layers.py mlp_backward_bytes)
    mlp = T * (2 * 4096 + 3 * 2 * 14336)
    assert mlp == 736 * MiB
    torch8 = estimate(llama, _setup(CpKind.TORCH, 8, method=Method.LORA))
    short = estimate(llama, _setup(CpKind.TORCH, 8, method=Method.LORA).with_(
        seq_len=8192, parallel=ParallelSpec(gpus=8, fsdp=Fsdp.FULL)))
    # 8 ranks: 704 MiB of attention buffers stay under the MLP's backward
    assert _ex(llama, _setup(CpKind.TORCH, 8, method=Method.LORA)).backward == 704 * MiB
    assert torch8.peak_allocated_bytes == short.peak_allocated_bytes
    # 16 ranks on twice the sequence (the same 8192-token shard): 960 MiB of buffers outgrow it
    setup16 = _setup(CpKind.TORCH, 16, seq=131072, method=Method.LORA, gpus=16)
    torch16 = estimate(llama, setup16)
    short16 = estimate(llama, setup16.with_(seq_len=8192, parallel=ParallelSpec(gpus=16, fsdp=Fsdp.FULL)))
    assert _ex(llama, setup16).backward == 960 * MiB
    assert torch16.peak_allocated_bytes - short16.peak_allocated_bytes == 960 * MiB - mlp


def test_collectives_by_hand(llama):
    vol = communication_bytes(llama, _setup(CpKind.TORCH, 4, seq=32768))
    terms = {t.what.split(" (")[0]: t for t in vol.terms if "context parallel" in t.what}
    # all-gather of an N-way buffer: (N - 1) / N of it sent = 3 x 32 MiB per layer pass; checkpointing
    # recomputes the forward: 2 passes x 32 layers
    assert terms["K/V all-gathered"].bytes == 2 * 32 * 3 * KV
    assert terms["K/V all-gathered again"].bytes == 32 * 3 * KV
    # the fp32 K/V gradient rotated every one of the 4 steps: 4 x 64 MiB per layer
    assert terms["fp32 K/V gradients rotated"].bytes == 32 * 4 * 64 * MiB
    ring = communication_bytes(llama, _setup(CpKind.RING_FLASH, 4, seq=32768))
    sent = sum(t.bytes for t in ring.terms if "context parallel" in t.what)
    assert sent == 32 * ((2 + 1) * 3 * KV + 4 * 64 * MiB)


def test_time_counts_the_shard_and_the_replicas(llama):
    from gpuplan.planner.io.catalog import resolve_gpu
    from gpuplan.planner.speed.throughput import step_time

    gpu = resolve_gpu("h100-sxm")
    with_cp = step_time(llama, _setup(CpKind.RING_FLASH, 4, seq=32768), gpu)
    # 8 GPUs in 2 groups of 4: 2 sequences of 32768 tokens per step
    assert with_cp.tokens_per_step == 2 * 32768


@pytest.mark.parametrize("par, seq, attn, match", [
    (ParallelSpec(gpus=1, cp=2, cp_kind=CpKind.RING_FLASH), 4096, Attention.FLASH, "add --gpus-per-node 2"),
    (ParallelSpec(gpus=6, cp=4, cp_kind=CpKind.RING_FLASH), 4096, Attention.FLASH, "does not divide the 6"),
    (ParallelSpec(gpus=4, cp=4), 4096, Attention.SDPA, "FSDP2 only"),
    (ParallelSpec(gpus=4, cp=4, fsdp=Fsdp.FULL), 4096, Attention.FLASH, "use --attention sdpa"),
    (ParallelSpec(gpus=4, cp=4, cp_kind=CpKind.RING_FLASH), 4096, Attention.SDPA, "use --attention flash"),
    (ParallelSpec(gpus=4, cp=4, fsdp=Fsdp.FULL), 4098, Attention.SDPA, "does not split evenly"),
    (ParallelSpec(gpus=4, cp=4, cp_kind=CpKind.ULYSSES), 4096, Attention.SDPA, "add --zero"),
    (ParallelSpec(gpus=6, cp=3, cp_kind=CpKind.ULYSSES, zero=3), 4096, Attention.SDPA, "32 attention heads"),
    (ParallelSpec(gpus=4, cp=4, cp_kind=CpKind.LLAMA3, heads_k_stride=3), 4096, Attention.FLASH, "must divide"),
    (ParallelSpec(gpus=4, cp_kind=CpKind.RING_FLASH), 4096, Attention.FLASH, "--context-parallel 2 or more"),
    (ParallelSpec(gpus=4, cp=2, tp=2, cp_kind=CpKind.RING_FLASH), 4096, Attention.FLASH, "--tp/--pp"),
])
def test_refusals_name_the_knobs(llama, par, seq, attn, match):
    setup = TrainingSetup(method=Method.LORA, seq_len=seq, attention=attn, parallel=par)
    with pytest.raises(PlannerError, match=match):
        estimate(llama, setup)


def test_sliding_windows_and_padding_are_refused(llama):
    gemma = resolve_model("gemma-2-2b")
    with pytest.raises(PlannerError, match="sliding-window"):
        estimate(gemma, TrainingSetup(method=Method.LORA, seq_len=8192, attention=Attention.FLASH,
                                      parallel=ParallelSpec(gpus=2, cp=2, cp_kind=CpKind.RING_FLASH)))
    packed = _setup(CpKind.RING_FLASH, 8).with_(packing=Packing.ROWS)
    with pytest.raises(PlannerError, match="--padding/--packing"):
        estimate(llama, packed)
    estimate(llama, _setup(CpKind.LLAMA3, 8).with_(packing=Packing.ROWS))   # varlen rows: planned


def test_setup_dict_shows_the_fields_only_when_set(llama):
    plain = TrainingSetup(parallel=ParallelSpec(gpus=8, fsdp=Fsdp.FULL))
    assert set(plain.to_dict()["parallel"]) == {"gpus", "nodes", "zero", "fsdp", "offload", "offload_device", "tp", "pp"}
    s = _setup(CpKind.LLAMA3, 8, heads_k_stride=2)
    d = s.to_dict()
    assert d["parallel"]["cp"] == 8 and d["parallel"]["cp_kind"] == "llama3" and d["parallel"]["heads_k_stride"] == 2
    assert TrainingSetup.from_dict(d).parallel == s.parallel


def test_ddp_ring_flash_shard_and_llama3_buffers():
    """DDP (axolotl's default engine): the one-GPU phases of the shard, with the exchange where it is larger.
    Llama-3.2-1B (32 heads, 8 K/V heads, head_dim 64, hidden 2048, intermediate 8192), LoRA over fp32
    weights under bf16 autocast (fp32 residual stream), 4096 local tokens, checkpointing."""
    m = resolve_model("llama-3.2-1b")
    base = TrainingSetup(method=Method.LORA, seq_len=4096, batch_size=1, attention=Attention.FLASH, loss=Loss.CHUNKED,
                         checkpointing=Checkpointing.FULL, parallel=ParallelSpec(gpus=8))
    plain = estimate(m, base).peak_allocated_bytes
    ring = estimate(m, base.with_(seq_len=32768, parallel=ParallelSpec(gpus=8, cp=8, cp_kind=CpKind.RING_FLASH)))
    assert ring.peak_allocated_bytes == plain    # ring-flash's buffers stay under the MLP's backward
    llama3 = estimate(m, base.with_(seq_len=32768, parallel=ParallelSpec(gpus=8, cp=8, cp_kind=CpKind.LLAMA3,
                                                                         heads_k_stride=8)))
    # kv_buffer, kv_buffer_copy, dkv_buffer: (2, 4096 x 8, 8 heads, 64) bf16 = 64 MiB each, and dq/dk/dv
    # 2 x 4096 x (2048 + 2 x 512) = 24 MiB: 216 MiB against the MLP's MulBackward gradients, 4096 x 3 x 2 x 8192
    # = 192 MiB (memory/layers.py mlp_backward_bytes)
    assert llama3.peak_allocated_bytes - plain == 24 * MiB
