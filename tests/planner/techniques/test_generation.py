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


def test_sliding_layers_hold_at_most_their_window():
    """Mistral-7B-v0.1: every layer slides within 4096 positions; Gemma-3-1B: 22 of 26 layers within 512."""
    m, rs = _rs("mistral-7b-v0.1", precision=Precision.BF16_TRUE)
    per_position = 8 * m.n_layers * kv_bytes(m, rs).total
    past = generation_bytes(m, rs, 8, 16, 6000, Casts())            # 6,015 positions fed
    assert past.moment in ("decode", "after decode") and past.cache == per_position * 4096
    g, rs = _rs("gemma-3-1b", precision=Precision.BF16_TRUE)
    gen = generation_bytes(g, rs, 1, 1000, 1, Casts())
    assert gen.cache == int(g.n_layers * kv_bytes(g, rs).total * (4 * 1000 + 22 * 512) / 26)


def test_negative_generation_is_refused():
    with pytest.raises(PlannerError, match="--eval-generate-tokens"):
        EvalPlan(generate_tokens=-1).validate()
