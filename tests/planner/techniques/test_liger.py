"""Liger Kernel's RMSNorm / RoPE / SwiGLU (planner/techniques/liger.py): the saved bytes read from
Liger-Kernel v0.8.2's autograd Functions, against transformers' ops (planner/memory/layers.py)."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from gpuplan.app.cli import cli
from gpuplan.planner import Loss, Method, PlannerError, Precision, TrainingSetup, estimate, resolve_model
from gpuplan.planner.memory.layers import activation_bytes
from gpuplan.planner.specs.resolved import resolve
from gpuplan.planner.specs.setup import Checkpointing, LigerSpec
from gpuplan.planner.techniques import liger

LLAMA = resolve_model("llama-3.2-1b")          # h 2048, I 8192
ALL = LigerSpec(rms_norm=True, rope=True, swiglu=True)


def _act(setup: TrainingSetup, model=LLAMA):
    return activation_bytes(model, resolve(model, setup))


def test_rms_norm_on_a_16_bit_stream_saves_its_input_and_output_only():
    """bf16-true: transformers keeps x.float() (4h) and, for dW, the bf16 normalized tensor and output
    (2h + 2h); LigerRMSNorm keeps X itself (2h) and its output Y for the linears (2h): 4h less per norm,
    two norms per layer; the final norm keeps 2h instead of 4h."""
    s = TrainingSetup(precision=Precision.BF16_TRUE, checkpointing=Checkpointing.NONE)
    hf, lk = _act(s), _act(s.with_(liger=LigerSpec(rms_norm=True)))
    h = LLAMA.hidden
    assert hf.per_layer - lk.per_layer == 2 * 4 * h == 16384
    assert hf.outside - lk.outside == 2 * h


def test_rms_norm_on_an_fp32_stream_drops_the_normalized_copy_only():
    """bf16-mixed (fp32 residual, autocast): X is the fp32 residual either way; transformers also keeps
    the fp32 normalized tensor for the weight's gradient (4h), which Liger does not: dW-only, so LoRA's
    frozen norms see no change."""
    full = TrainingSetup(checkpointing=Checkpointing.NONE)
    lora = full.with_(method=Method.LORA)
    on = LigerSpec(rms_norm=True)
    assert _act(full).per_layer - _act(full.with_(liger=on)).per_layer == 2 * 4 * LLAMA.hidden
    assert _act(lora).per_layer == _act(lora.with_(liger=on)).per_layer


def test_swiglu_keeps_gate_and_up_and_recomputes_the_activation():
    """LigerSiLUMulFunction saves (a, b): silu's output (I elements in the compute dtype) is not kept."""
    s = TrainingSetup(precision=Precision.BF16_TRUE, checkpointing=Checkpointing.NONE)
    assert _act(s).per_layer - _act(s.with_(liger=LigerSpec(swiglu=True))).per_layer == 2 * LLAMA.intermediate


def test_qlora_swiglu_saves_in_the_fp32_dtype_bitsandbytes_returns():
    s = TrainingSetup(method=Method.QLORA, checkpointing=Checkpointing.NONE)
    assert _act(s).per_layer - _act(s.with_(liger=LigerSpec(swiglu=True))).per_layer == 4 * LLAMA.intermediate


def test_rope_in_place_changes_no_saved_bytes():
    s = TrainingSetup(precision=Precision.BF16_TRUE, checkpointing=Checkpointing.NONE)
    assert _act(s) == _act(s.with_(liger=LigerSpec(rope=True)))


def test_qk_norms_follow_how_liger_is_applied():
    """Qwen-3's q_norm/k_norm: HF Trainer patches the built instance (input/post-attention norms only);
    axolotl patches the classes before load, so they are Liger's too and keep only their bf16 input."""
    qwen3 = resolve_model("qwen-3-0.6b")
    s = TrainingSetup(precision=Precision.BF16_TRUE, checkpointing=Checkpointing.NONE)
    inst = _act(s.with_(liger=LigerSpec(rms_norm=True)), qwen3)
    cls = _act(s.with_(liger=LigerSpec(rms_norm=True, before_load=True)), qwen3)
    A, K = qwen3.n_heads * qwen3.head_dim, qwen3.n_kv_heads * qwen3.head_dim
    # HF: the fp32 copy (4) kept and the bf16 normalized tensor (2) for dW; Liger: the bf16 input (2)
    assert inst.per_layer - cls.per_layer == (4 + 2 - 2) * (A + K)


@pytest.mark.parametrize("name", ["llama-3.2-1b", "qwen-2.5-0.5b", "qwen-3-0.6b", "gemma-2b", "gemma-2-2b", "gemma-3-1b",
                                  "phi-3-mini-4k-instruct", "mistral-7b-v0.1"])
@pytest.mark.parametrize("method", [Method.FULL, Method.LORA, Method.QLORA])
@pytest.mark.parametrize("precision", [Precision.BF16_MIXED, Precision.BF16_TRUE, Precision.FP32])
def test_liger_never_increases_the_saved_bytes(name, method, precision):
    if method is Method.QLORA and precision is Precision.FP32:
        pytest.skip("QLoRA computes in 16 bit")
    model = resolve_model(name)
    s = TrainingSetup(method=method, precision=precision, checkpointing=Checkpointing.NONE)
    for before_load in (False, True):
        lk = _act(s.with_(liger=LigerSpec(rms_norm=True, rope=True, swiglu=True, before_load=before_load)), model)
        hf = _act(s, model)
        assert lk.per_layer <= hf.per_layer and lk.outside <= hf.outside


def test_family_defaults_follow_the_apply_functions():
    assert liger.family_defaults(LLAMA) == (ALL, True)
    assert liger.family_defaults(resolve_model("gpt-2-small")) == (LigerSpec(), False)   # not in Liger's table


def test_kernel_names_are_filtered_by_the_family_signature():
    gemma = resolve_model("gemma-2b")
    assert liger.parse_kernels("rms_norm,swiglu", gemma)[0] == LigerSpec(rms_norm=True)   # Gemma's is geglu
    assert liger.parse_kernels("geglu,flce", gemma) == (LigerSpec(swiglu=True), True)
    assert liger.parse_kernels("swiglu,geglu", LLAMA)[0] == LigerSpec(swiglu=True)
    with pytest.raises(PlannerError, match="unknown"):
        liger.parse_kernels("rmsnorm", LLAMA)


def test_unmodelled_families_are_refused_in_one_line():
    with pytest.raises(PlannerError, match="no kernels for gpt2"):
        estimate(resolve_model("gpt-2-small"), TrainingSetup(liger=ALL))
    with pytest.raises(PlannerError, match="OLMo-2"):
        estimate(resolve_model("olmo-2-7b"), TrainingSetup(liger=LigerSpec(rms_norm=True)))
    with pytest.raises(PlannerError, match="LigerExperts"):
        estimate(resolve_model("qwen-3-30b-a3b"), TrainingSetup(liger=LigerSpec(swiglu=True)))


def test_the_estimate_says_modelled_from_source():
    est = estimate(LLAMA, TrainingSetup(liger=ALL))
    assert any("modelled from source, not simulated" in n for n in est.notes)
    assert est.setup["liger"] == {"rms_norm": True, "rope": True, "swiglu": True, "before_load": False,
                                  "cross_entropy": False}
    assert "liger" not in estimate(LLAMA, TrainingSetup()).setup


def test_setup_round_trips_through_its_dict():
    s = TrainingSetup(liger=LigerSpec(rms_norm=True, before_load=True), loss=Loss.CHUNKED)
    back = TrainingSetup.from_dict(s.to_dict(LLAMA))
    assert back.liger == s.liger and back.to_dict(LLAMA) == s.to_dict(LLAMA)
    assert "liger" not in TrainingSetup().to_dict(LLAMA)


def _json(*args: str) -> dict:
    r = CliRunner().invoke(cli, ["estimate", "-m", "llama-3.2-1b", "--json", *args])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_cli_liger_is_the_family_defaults_with_the_fused_loss():
    d = _json("--liger")
    assert d["setup"]["loss"] == "chunked" and d["setup"]["liger"]["swiglu"] is True
    assert _json("--liger-kernels", "rms_norm")["setup"]["loss"] == "hf"
    assert _json("--liger-kernels", "flce")["setup"].get("liger") is None
    assert _json("--liger", "--no-grad-ckpt")["peak_allocated_bytes"] < _json("--no-grad-ckpt")["peak_allocated_bytes"]


@pytest.mark.parametrize("args, message", [
    (["--liger", "--loss", "trl"], "fused linear cross-entropy is the loss"),
    (["--liger-kernels", "swigl"], "unknown"),
    (["--liger-before-load"], "add --liger"),
])
def test_cli_refuses_in_one_line(args, message):
    r = CliRunner().invoke(cli, ["estimate", "-m", "llama-3.2-1b", *args])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output


def test_the_profiler_refuses_what_it_cannot_run():
    from gpuplan.profiler.run import measure

    with pytest.raises(PlannerError, match="Triton kernels, modelled from Liger's source"):
        measure(LLAMA, TrainingSetup(liger=ALL))


def test_flce_chunks_and_the_gradients_it_keeps_from_forward_to_backward():
    """Llama-3.1-8B, 4 x 4096 tokens, bf16-true full fine-tuning [ops/fused_linear_cross_entropy.py v0.8.2
    L68-86]: inc_factor = cdiv(128256, 4096) = 32, chunk_size = next_power_of_2(cdiv(16384, 32)) = 512, so
    32 chunks of (512, V) bf16 logits; grad_input (T, h) and grad_weight (V, h) are computed in the
    forward and saved for backward (L431-435), which only rescales them in place."""
    from gpuplan.planner.techniques import loss

    model = resolve_model("llama-3.1-8b")
    T, h, V = 4 * 4096, model.hidden, model.vocab
    s = TrainingSetup(precision=Precision.BF16_TRUE, loss=Loss.CHUNKED, batch_size=4, seq_len=4096)
    fwd, saved, bwd = loss.loss_bytes(model, resolve(model, s), T, 4)
    assert -(-V // h) == 32 and -(-T // 512) == 32
    assert saved == 2 * T * h + 2 * V * h == 1_184_890_880
    assert fwd == saved + 4 * T + 512 * V * 2 and bwd == 0
    lora = loss.loss_bytes(model, resolve(model, s.with_(method=Method.LORA)), T, 4)
    assert saved - lora[1] == 2 * V * h            # a frozen lm_head gets no weight gradient


def test_cross_entropy_turns_the_fp32_logits_into_their_gradient_in_place():
    """transformers' ForCausalLMLoss upcasts the logits (4V per token); Liger's cross_entropy writes the
    gradient into that copy and saves it, so log_softmax's fp32 output and its two fp32 backward
    tensors (8V) are gone; backward casts the gradient to bf16 (2V) [ops/cross_entropy.py L351-569]."""
    from gpuplan.planner.techniques import loss

    s = TrainingSetup(precision=Precision.BF16_TRUE)
    T, V = 1024, LLAMA.vocab
    hf = loss.loss_bytes(LLAMA, resolve(LLAMA, s), T)
    lk = loss.loss_bytes(LLAMA, resolve(LLAMA, s.with_(liger=LigerSpec(cross_entropy=True))), T)
    assert hf == (T * 10 * V, T * 4 * V, T * 8 * V)
    assert lk == (T * (6 * V + 4), T * 4 * V, T * 2 * V)


def test_cross_entropy_and_the_fused_loss_exclude_each_other():
    with pytest.raises(PlannerError, match="cannot both be on"):
        liger.parse_kernels("cross_entropy,flce", LLAMA)
    with pytest.raises(PlannerError, match="--loss chunked"):
        TrainingSetup(liger=LigerSpec(cross_entropy=True), loss=Loss.CHUNKED).validate()
