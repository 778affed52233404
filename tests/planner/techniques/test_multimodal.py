"""A multimodal wrapper on text-only batches (planner/techniques/multimodal.py): the vision side's
weights counted, its trainable parameters without gradients or optimizer state, peft's suffix
matching in the vision tower, QLoRA quantizing its linears, and one line for what is refused."""
import dataclasses

import pytest

from gpuplan.planner import Component, Phase, TrainingSetup, estimate, param_counts
from gpuplan.planner.io.catalog import resolve_model
from gpuplan.planner.specs.errors import PlannerError
from gpuplan.planner.specs.resolved import resolve
from gpuplan.planner.techniques import multimodal, quantization

GEMMA3 = "gemma-3-4b-it-multimodal"


def _setup(**d):
    return TrainingSetup.from_dict({"batch_size": 1, "seq_len": 256, **d})


def _opt(est):
    return est.phase_components[Phase.OPTIMIZER]


def test_full_fine_tuning_steps_the_text_tower_only():
    m = resolve_model("qwen2-vl-2b-instruct")
    pc = param_counts(m)
    est = estimate(m, _setup(precision="bf16-true", checkpointing="none"))
    assert est.trainable_params == pc.total                           # what the Trainer reports
    assert _opt(est)[Component.GRADIENTS] == 2 * (pc.total - pc.vision)
    assert _opt(est)[Component.WEIGHTS] == 2 * pc.total
    text_only = dataclasses.replace(m, vision=None, model_type="qwen2")  # the same text tower, no vision side
    plain = estimate(text_only, _setup(precision="bf16-true", checkpointing="none"))
    assert _opt(est)[Component.OPTIMIZER_STATE] == _opt(plain)[Component.OPTIMIZER_STATE]


def test_lora_targets_match_by_suffix_in_both_towers():
    m = resolve_model(GEMMA3)
    qv = resolve(m, _setup(method="lora", lora={"targets": ["q_proj", "v_proj"]}))
    r, v = 8, m.vision
    # SigLIP's self_attn.q_proj / v_proj (27 layers, 1152 wide) are adapted too
    assert multimodal.adapter_params(m, qv) == 2 * 27 * r * (1152 + 1152) == sum(
        lin.count * r * (lin.in_features + lin.out_features) for lin in v.linears if lin.name in ("q_proj", "v_proj"))
    everything = resolve(m, _setup(method="lora", lora={"targets": ["all-linear"]}))
    assert {lin.name for lin in multimodal.targeted(m, everything.setup.lora.targets)} == v.linear_names()
    est = estimate(m, _setup(method="lora", lora={"targets": ["fc1"]}))   # vision-only: peft accepts it
    assert est.trainable_params == multimodal.adapter_params(m, resolve(m, _setup(method="lora", lora={"targets": ["fc1"]})))
    assert _opt(est)[Component.GRADIENTS] == 0 and _opt(est)[Component.OPTIMIZER_STATE] == 0


def test_qlora_quantizes_the_vision_linears():
    m = resolve_model("llava-1.5-7b")
    quantized = estimate(m, _setup(method="qlora", lora={"targets": ["q_proj", "v_proj"]}))
    # the vision tower and projector linears at 4 bit: far less than their 16-bit bytes
    vision_linear = sum(lin.weight_count for lin in m.vision.linears)
    text_only = estimate(dataclasses.replace(m, vision=None, model_type="llama"),
                         _setup(method="qlora", lora={"targets": ["q_proj", "v_proj"]}))
    extra = _opt(quantized)[Component.WEIGHTS] - _opt(text_only)[Component.WEIGHTS]
    rs = resolve(m, _setup(method="qlora", lora={"targets": ["q_proj", "v_proj"]}))
    rows = sum(lin.count * lin.out_features for lin in m.vision.linears)
    nf4 = quantization.quantized_bytes(vision_linear, rows, rs.quantized)   # 0.5 byte + double-quantized absmax
    # prepare_model_for_kbit_training upcasts the rest of the vision side (biases, norms, conv, positions) to fp32
    rest = (m.vision.params - vision_linear) * rs.frozen.bytes
    assert extra == pytest.approx(nf4 + rest + rs.adapters.dtype.bytes * multimodal.adapter_params(m, rs), abs=8)
    assert nf4 < vision_linear * 0.6


def test_notes_say_text_only():
    est = estimate(resolve_model(GEMMA3), _setup(method="lora", lora={"targets": ["q_proj", "v_proj"]}))
    assert any("text-only batches" in n and "images are not modelled" in n for n in est.notes)
    assert any("no gradient and no optimizer state" in n for n in est.notes)


def test_refusals():
    m = resolve_model(GEMMA3)
    with pytest.raises(PlannerError, match="peft has no default LoRA target_modules for gemma3"):
        estimate(m, _setup(method="lora"))
    with pytest.raises(PlannerError, match="multi-GPU.*multimodal wrapper"):
        estimate(m, _setup(method="lora", lora={"targets": ["q_proj"]}, parallel={"gpus": 2}))
    with pytest.raises(PlannerError, match="match no linear module"):
        estimate(m, _setup(method="lora", lora={"targets": ["patch_embedding"]}))


def test_other_peft_methods_go_to_the_simulator():
    from gpuplan.planner.specs.errors import NoClosedForm
    from gpuplan.planner.specs.setup import PeftSpec

    ia3 = dataclasses.replace(_setup(method="lora"), adapter=PeftSpec.of(
        "IA3", {"target_modules": ["k_proj", "v_proj", "down_proj"], "feedforward_modules": ["down_proj"]}))
    with pytest.raises(NoClosedForm, match="ia3 on .* multimodal wrapper"):
        estimate(resolve_model(GEMMA3), ia3)


def test_json_params_show_the_vision_side_only_for_wrappers():
    wrapper = estimate(resolve_model(GEMMA3), _setup(method="lora", lora={"targets": ["q_proj"]})).to_dict()
    assert wrapper["params"]["vision"] == 416_866_032 + 2_950_272      # SigLIP tower + projector
    assert "vision" not in estimate(resolve_model("gemma-3-4b"), _setup(method="lora")).to_dict()["params"]


def test_step_time_ignores_the_idle_vision_side():
    """The vision tower neither computes nor is stepped on text-only batches: the time columns of
    full fine-tuning equal those of the same text tower alone."""
    from gpuplan.planner.io.catalog import resolve_gpu
    from gpuplan.planner.speed.throughput import time_columns

    m = resolve_model("qwen2-vl-2b-instruct")
    text_only = dataclasses.replace(m, vision=None, model_type="qwen2")
    s, gpu = _setup(precision="bf16-true", checkpointing="none"), resolve_gpu("h100-sxm")
    assert time_columns(m, s, gpu) == time_columns(text_only, s, gpu)


def test_language_only_keeps_the_adapters_out_of_the_vision_tower():
    m = resolve_model(GEMMA3)
    both = estimate(m, _setup(method="lora", lora={"targets": ["q_proj", "v_proj"]}))
    text = estimate(m, _setup(method="lora", lora={"targets": ["q_proj", "v_proj"], "language_only": True}))
    assert both.trainable_params - text.trainable_params == 2 * 27 * 8 * (1152 + 1152)
    assert text.setup["lora"]["language_only"] is True and "language_only" not in both.setup["lora"]
    assert not any("no gradient" in n for n in text.notes)
    plain = resolve_model("gemma-3-4b")     # a text model: a no-op
    assert estimate(plain, _setup(method="lora", lora={"language_only": True})).peak_allocated_bytes == \
        estimate(plain, _setup(method="lora")).peak_allocated_bytes
