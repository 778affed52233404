"""planner/techniques/generation.py: the KV cache and generate's peak, by hand from transformers' code."""
import pytest

from gpuplan.planner import Method, Precision, TrainingSetup, resolve_model
from gpuplan.planner.memory.evaluation import EvalPlan, eval_estimate
from gpuplan.planner.memory.pieces import terms
from gpuplan.planner.specs.errors import PlannerError
from gpuplan.planner.techniques.generation import CacheKind, Casts, generation_bytes, kv_bytes


def _rs(name, **setup):
    m = resolve_model(name)
    return m, terms(m, TrainingSetup(**setup))[0]


def test_kv_bytes_follow_the_dtypes_the_attention_makes():
    m, rs = _rs("llama-3.1-8b", precision=Precision.BF16_TRUE)
    kv = kv_bytes(m, rs)                     # 8 KV heads x 128: bf16 keys and values
    assert (kv.key, kv.value) == (8 * 128 * 2, 8 * 128 * 2)
    assert m.n_layers * kv.total == 131_072  # 128 KiB per position, the figure vLLM's docs give for Llama-3-8B bf16
    _, rs = _rs("llama-3.1-8b", method=Method.LORA)        # autocast over fp32: RoPE promotes the keys
    assert (kv_bytes(m, rs).key, kv_bytes(m, rs).value) == (8 * 128 * 4, 8 * 128 * 2)
    _, rs = _rs("llama-3.1-8b", method=Method.QLORA)       # bitsandbytes returns the fp32 input dtype
    assert (kv_bytes(m, rs).key, kv_bytes(m, rs).value) == (8 * 128 * 4, 8 * 128 * 4)
    g, rs = _rs("gpt-2-small")                             # learned positions: no RoPE promotion
    assert kv_bytes(g, rs).key == kv_bytes(g, rs).value == 12 * 64 * 2


def test_the_cache_grows_with_new_tokens_and_a_static_cache_holds_it_from_the_start():
    m, rs = _rs("llama-3.2-1b", precision=Precision.BF16_TRUE)
    none = Casts()
    sizes = [generation_bytes(m, rs, 8, 512, n, none).total for n in (1, 64, 512, 2048)]
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0]
    dyn = generation_bytes(m, rs, 8, 512, 2048, none)
    static = generation_bytes(m, rs, 8, 512, 2048, none, CacheKind.STATIC)
    assert dyn.cache == static.cache == 8 * m.n_layers * kv_bytes(m, rs).total * (512 + 2047)
    prefill_static = generation_bytes(m, rs, 8, 4096, 1, none, CacheKind.STATIC)
    assert prefill_static.cache == generation_bytes(m, rs, 8, 4096, 1, none).cache   # one token: nothing more cached


def test_eval_with_generation_is_a_larger_eval_phase_and_says_why():
    m = resolve_model("llama-3.1-8b")
    setup = TrainingSetup(method=Method.QLORA, batch_size=4, seq_len=1024)
    plain = eval_estimate(m, setup, EvalPlan(batch_size=16, seq_len=512))
    gen = eval_estimate(m, setup, EvalPlan(batch_size=16, seq_len=512, generate_tokens=4096))
    assert gen.peak_allocated_bytes > plain.peak_allocated_bytes
    assert gen.generation["kv_cache_bytes"] == 16 * 32 * (8 * 128 * 8) * (512 + 4095)   # fp32 keys and values
    assert gen.peak_allocated_bytes == gen.generation["peak_allocated_bytes"]
    assert any("KV cache" in n for n in gen.notes)
    assert eval_estimate(m, setup, EvalPlan(batch_size=16, seq_len=512, generate_tokens=0)).generation is None


def test_sliding_window_models_say_their_cache_is_charged_in_full():
    m = resolve_model("mistral-7b-v0.1")
    est = eval_estimate(m, TrainingSetup(method=Method.LORA), EvalPlan(batch_size=2, generate_tokens=64))
    assert any("sliding-window" in n for n in est.notes)


def test_negative_generation_is_refused():
    with pytest.raises(PlannerError, match="--eval-generate-tokens"):
        EvalPlan(generate_tokens=-1).validate()
