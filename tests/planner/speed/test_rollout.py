"""GRPO's rollouts timed with HF generate (planner/speed/rollout.py): each part's formula and its dependencies."""
import pytest

from gpuplan.planner.io.catalog import resolve_gpu, resolve_model
from gpuplan.planner.specs.enums import Loss, Method, Objective
from gpuplan.planner.specs.parallel import Fsdp, ParallelSpec
from gpuplan.planner.specs.setup import TrainingSetup
from gpuplan.planner.speed import rollout
from gpuplan.planner.speed.ceiling import matmul_ceiling
from gpuplan.planner.speed.kernels import step_traffic
from gpuplan.planner.speed.flops import layer_linear_weights, stored_linear_weights
from gpuplan.planner.speed.throughput import TimeConstants, mfu_for, step_time
from gpuplan.planner.techniques.generation import kv_bytes
from gpuplan.planner.specs.resolved import resolve
from gpuplan.planner.techniques.preference import time_sequences

M = resolve_model("qwen-2.5-0.5b")
L4 = resolve_gpu("l4")
C = TimeConstants.load()


def grpo(**kw) -> TrainingSetup:
    base = dict(method=Method.LORA, objective=Objective.GRPO, loss=Loss.TRL, seq_len=1024, completion_len=768)
    return TrainingSetup(**{**base, **kw})


def times(s: TrainingSetup, m=M, gpu=L4) -> rollout.RolloutTime:
    # generation's GEMMs run at the card's matmul ceiling, as the step's do (planner/speed/ceiling.py)
    return rollout.rollout_time(m, s, gpu, C, mfu_for(gpu).value, matmul_ceiling(gpu, "bf16").flops)


def test_decode_is_the_steps_weights_cache_and_launches():
    s = grpo()
    t = times(s)
    rs = resolve(M, s)
    e = rs.compute.bytes
    B, N, P = s.batch_size, 768, 256
    weights = (stored_linear_weights(M) + M.head_rows * M.hidden) * e
    cache = 3 * B * kv_bytes(M, rs).total * M.n_layers * (P + N / 2)
    launches = M.n_layers * C.per_layer_pass_s + C.per_adapter_call_s * t_adapter_calls(s)
    floor = (N - 1) * ((weights + cache) / (L4.memory_bandwidth * C.memory_efficiency) + launches)
    # the rest is the per-token element-wise bytes and the GEMM FLOPs of B tokens: small beside the weights
    assert floor < t.decode_s < 1.1 * floor
    flops = 2 * layer_linear_weights(M) * B * P
    assert t.prefill_s > flops / (L4.peak_flops("bf16") * mfu_for(L4).value)
    assert t.per_step == 1 and t.completions == B and t.new_tokens == N


def t_adapter_calls(s: TrainingSetup) -> float:
    """Adapted linear calls of one forward: the step's over its layer passes."""
    tr = step_traffic(M, s)
    return tr.adapter_calls / (tr.layer_passes / M.n_layers)


def test_longer_completions_take_longer_and_generation_is_amortized():
    short, long_ = times(grpo(completion_len=256, seq_len=512)), times(grpo(completion_len=768, seq_len=1024))
    assert long_.decode_s > 2.5 * short.decode_s
    # steps_per_generation = 2 x grad_accum: one generation (of twice the completions) every two optimizer steps
    s = grpo(grad_accum=2, steps_per_generation=4)
    t = times(s)
    assert t.per_step == 0.5 and t.completions == 4 * s.batch_size
    assert step_time(M, s, L4).generation == pytest.approx(t.per_generation_s / 2)


def test_step_time_carries_the_rollouts_but_not_under_vllm():
    hf = step_time(M, grpo(), L4)
    assert hf.generation > 0 and hf.total > hf.generation
    assert "generation_s" in hf.to_dict()
    assert any(a.name == "rollouts" and a.value for a in hf.assumptions)
    v = step_time(M, grpo(vllm_colocate=0.3), L4)
    assert v.generation == 0 and "generation_s" not in v.to_dict()
    assert any(a.name == "rollouts" and "not timed" in a.source for a in v.assumptions)
    sft = step_time(M, TrainingSetup(method=Method.LORA), L4)
    assert sft.generation == 0 and rollout.rollout_time(M, TrainingSetup(), L4, C, 0.5, 1e14) is None


def test_quantized_weights_are_dequantized_at_every_decode_step():
    lora, qlora = times(grpo()), times(grpo(method=Method.QLORA))
    assert qlora.decode_s > lora.decode_s


def test_sharded_gathers_count_only_what_the_forwards_cannot_hide():
    m, h100 = resolve_model("qwen-2.5-7b"), resolve_gpu("h100")
    s = dict(method=Method.FULL, batch_size=8, seq_len=1536, completion_len=1024)
    ddp = times(grpo(**s, parallel=ParallelSpec(gpus=8)), m, h100)
    assert ddp.gather_s == 0
    slow_link = resolve_gpu("rtx-4090")   # PCIe peers: a decode step's gather exceeds its forward
    fsdp = times(grpo(**s, parallel=ParallelSpec(gpus=8, fsdp=Fsdp.FULL)), m, slow_link)
    plain = times(grpo(**s, parallel=ParallelSpec(gpus=8)), m, slow_link)
    assert fsdp.gather_s > 0 and fsdp.per_generation_s > plain.per_generation_s
    once = times(grpo(**s, parallel=ParallelSpec(gpus=8, zero=3)), m, slow_link)
    every = times(grpo(**s, parallel=ParallelSpec(gpus=8, zero=3), ds3_gather_for_generation=False), m,
                  slow_link)
    assert once.gather_s < every.gather_s


def test_the_log_prob_passes_are_no_grad_forwards_of_the_step():
    assert time_sequences(resolve(M, grpo()))[:2] == (1, 0)
    assert time_sequences(resolve(M, grpo(kl_beta=0.04)))[:2] == (1, 1)
    assert time_sequences(resolve(M, grpo(kl_beta=0.04, vllm_colocate=0.3)))[:2] == (1, 2)
    assert step_time(M, grpo(kl_beta=0.04), L4).compute > step_time(M, grpo(), L4).compute
