"""torch.compile's saved set in closed form (planner/techniques/compile.py), derived by hand."""
from __future__ import annotations

import pytest

from gpuplan.planner import TrainingSetup, estimate, resolve_model
from gpuplan.planner.memory.layers import activation_bytes
from gpuplan.planner.specs.enums import Compile
from gpuplan.planner.specs.errors import PlannerError
from gpuplan.planner.specs.resolved import resolve
from gpuplan.planner.techniques import compile as compiled

QWEN = resolve_model("qwen-2.5-0.5b")   # h 896, 14 heads x 64 (A 896), 2 kv heads (K 128), I 4864, V 151936


def _setup(**kw) -> TrainingSetup:
    return TrainingSetup.from_dict({"checkpointing": "none", "batch_size": 2, "seq_len": 128, "compile": "inductor", **kw})


def test_full_finetune_layer_by_hand():
    # bf16-mixed: fp32 residual (r 4), bf16 compute (e 2). Each norm: input r h + rsqrt 4 + one bf16 output e h;
    # SDPA: q, out (e A each), k, v (e K each), fp32 lse (4 per head); MLP: gate, up, silu(gate) * up (e I each)
    norms = 2 * (4 * 896 + 4 + 2 * 896)
    sdpa = 2 * (2 * 896 + 2 * 128) + 4 * 14
    mlp = 3 * 2 * 4864
    assert norms + sdpa + mlp == 44096
    rs = resolve(QWEN, _setup(precision="bf16-mixed"))
    assert compiled.layer_bytes(QWEN, rs, 128) == 44096
    rs = resolve(QWEN, _setup(precision="bf16-true"))   # r = e = 2
    assert compiled.layer_bytes(QWEN, rs, 128) == 2 * (2 * 896 + 4 + 2 * 896) + sdpa + mlp == 40512


def test_lora_layer_by_hand():
    # LoRA on q, v (peft's default for Qwen2): no base weight trains, so the MLP norm's output and
    # silu(gate) * up are recomputed or not needed; the attention norm's output is read by lora_A;
    # two lora_A outputs of r = 8 columns in bf16 under autocast
    rs = resolve(QWEN, _setup(method="lora", precision="bf16-mixed"))
    expected = 2 * (4 * 896 + 4) + 2 * 896 + (2 * (2 * 896 + 2 * 128) + 4 * 14) + 2 * 2 * 4864 + 2 * (2 * 8)
    assert expected == 32608
    assert compiled.layer_bytes(QWEN, rs, 128) == expected
    # bf16 weights, fp32 adapters, no autocast: peft casts each adapted input to fp32 (saved in fp32)
    rs = resolve(QWEN, _setup(method="lora", precision="bf16-true", lora={"targets": ["all-linear"]}))
    norms = 2 * (2 * 896 + 4) + 2 * (4 * 896)
    o_in, down_in, lora_a = 4 * 896, 4 * 4864, 7 * 4 * 8
    assert compiled.layer_bytes(QWEN, rs, 128) == norms + (2 * (2 * 896 + 2 * 128) + 4 * 14) + o_in + 2 * 2 * 4864 + down_in + lora_a


def test_loss_saves_16_bit_logits_and_two_reductions():
    rs = resolve(QWEN, _setup(precision="bf16-mixed"))
    T, s = 256, 128
    fwd, saved, bwd = compiled.loss_bytes(QWEN, rs, T, s)
    assert saved == T * (2 * 151936 + 8) + 8 * (T + 2) == fwd   # logits, amax + log-sum-exp, labels padded by one per row
    assert bwd == T * 2 * 151936


@pytest.mark.parametrize("kw", [{"precision": "bf16-mixed"}, {"precision": "bf16-true"}, {"precision": "fp32"},
                                {"method": "lora", "precision": "bf16-mixed"},
                                {"method": "lora", "precision": "bf16-true", "lora": {"targets": ["all-linear"]}}])
def test_compile_never_saves_more_than_eager(kw):
    on = _setup(**kw)
    off = on.with_(compile=Compile.NONE)
    a_on, a_off = activation_bytes(QWEN, resolve(QWEN, on)), activation_bytes(QWEN, resolve(QWEN, off))
    assert a_on.per_layer < a_off.per_layer
    L = QWEN.n_layers
    assert L * a_on.per_layer + a_on.outside < L * a_off.per_layer + a_off.outside
    if on.precision.value != "fp32":   # fp32: no upcast of the logits to save; the backward's end decides the peak
        assert estimate(QWEN, on).peak_allocated_bytes < estimate(QWEN, off).peak_allocated_bytes


def test_default_is_eager_and_unchanged():
    s = TrainingSetup()
    assert s.compile is Compile.NONE and "compile" not in s.to_dict(QWEN)
    d = _setup().to_dict(QWEN)
    assert d["compile"] == "inductor" and TrainingSetup.from_dict(d).compile is Compile.INDUCTOR


@pytest.mark.parametrize("model, kw, words", [
    ("qwen-2.5-0.5b", {"checkpointing": "full"}, "gradient checkpointing"),
    ("qwen-2.5-0.5b", {"attention": "eager"}, "--attn eager"),
    ("qwen-2.5-0.5b", {"method": "qlora"}, "QLoRA"),
    ("qwen-2.5-0.5b", {"method": "lora", "lora": {"dropout": 0.05}}, "LoRA dropout"),
    ("qwen-2.5-0.5b", {"loss": "chunked"}, "--loss chunked"),
    ("gemma-2-2b", {}, "architecture"),
    ("gpt-2-small", {}, "architecture"),
])
def test_refused_where_not_counted(model, kw, words):
    with pytest.raises(PlannerError, match="--compile inductor") as err:
        estimate(resolve_model(model), _setup(**kw))
    assert words in str(err.value)


def test_notes_say_what_is_modelled():
    est = estimate(QWEN, _setup())
    assert any("min-cut partitioner" in n and "not simulated" in n for n in est.notes)
