"""Precision recipes (planner/specs/recipe.py): the presets are recipes, a recipe a preset names becomes
it, and the combinations no library runs are refused naming both knobs."""
from __future__ import annotations

import pytest

from gpuplan.planner import Method, Precision, TrainingSetup, estimate, resolve_model
from gpuplan.planner.specs.enums import DType
from gpuplan.planner.specs.errors import NoClosedForm, PlannerError
from gpuplan.planner.specs.parallel import Fsdp, ParallelSpec
from gpuplan.planner.specs.recipe import Recipe, preset_of, preset_recipe
from gpuplan.planner.specs.resolved import resolve

LLAMA = resolve_model("llama-3.2-1b")


@pytest.mark.parametrize("method", list(Method))
@pytest.mark.parametrize("precision", list(Precision))
def test_every_preset_is_its_own_recipe(precision, method):
    if method is Method.QLORA and precision is Precision.FP32:
        return   # refused: QLoRA computes in 16 bit
    r = preset_recipe(precision, method)
    assert preset_of(r, method) is precision
    assert TrainingSetup(method=method, precision=precision).recipe == r


def test_the_presets_spell_out_as_weights_autocast_and_upcast():
    assert preset_recipe(Precision.BF16_MIXED, Method.FULL) == Recipe(DType.BF16, DType.FP32, True, False)
    assert preset_recipe(Precision.BF16_TRUE, Method.FULL) == Recipe(DType.BF16, DType.BF16, False, False)
    assert preset_recipe(Precision.FP32, Method.LORA) == Recipe(DType.FP32, DType.FP32, False, False)
    # QLoRA: non-quantized weights load in the compute dtype; prepare_model_for_kbit_training under autocast
    assert preset_recipe(Precision.BF16_MIXED, Method.QLORA) == Recipe(DType.BF16, DType.BF16, True, True)
    assert preset_recipe(Precision.BF16_MIXED, Method.QLORA).frozen is DType.FP32
    assert preset_recipe(Precision.BF16_TRUE, Method.QLORA).frozen is DType.BF16


def test_a_recipe_a_preset_names_is_that_preset():
    spelled = TrainingSetup(precision=Precision.BF16_MIXED, autocast=False, weights=DType.BF16)
    assert spelled.canonical() == TrainingSetup(precision=Precision.BF16_TRUE)
    assert estimate(LLAMA, spelled).peak_allocated_bytes == \
        estimate(LLAMA, TrainingSetup(precision=Precision.BF16_TRUE)).peak_allocated_bytes
    lora = TrainingSetup(method=Method.LORA, weights=DType.BF16)     # LoRA's weights: the frozen base
    assert lora.canonical() == TrainingSetup(method=Method.LORA, base_dtype=DType.BF16)
    assert estimate(LLAMA, lora).peak_allocated_bytes == \
        estimate(LLAMA, TrainingSetup(method=Method.LORA, base_dtype=DType.BF16)).peak_allocated_bytes
    autocast_on_true = TrainingSetup(method=Method.LORA, precision=Precision.BF16_TRUE, autocast=True)
    assert autocast_on_true.canonical() == TrainingSetup(method=Method.LORA, base_dtype=DType.BF16)


def test_bf16_weights_under_autocast_train_bf16_states_without_autocast_copies():
    """transformers 5's from_pretrained (the config's bf16) under Trainer's bf16=True: AdamW's states
    are zeros_like(p), bf16; autocast casts nothing already bf16. Its activations are bf16-true's."""
    s = TrainingSetup(weights=DType.BF16)
    rs = resolve(LLAMA, s)
    assert rs.autocast and rs.trainable is DType.BF16 and rs.residual is DType.BF16
    mixed, true16, ours = (estimate(LLAMA, x) for x in (TrainingSetup(), TrainingSetup(precision=Precision.BF16_TRUE), s))
    n = mixed.params.total
    assert ours.components["optimizer_state"] == true16.components["optimizer_state"] == 2 * 2 * n
    assert ours.peak_allocated_bytes < mixed.peak_allocated_bytes
    assert abs(ours.peak_allocated_bytes - true16.peak_allocated_bytes) <= 0.001 * true16.peak_allocated_bytes
    assert any(n.startswith("precision recipe: bf16 weights") for n in ours.notes)


def test_qlora_without_prepare_keeps_the_load_dtype():
    s = TrainingSetup(method=Method.QLORA, kbit_upcast=False)
    assert s.frozen_dtype is DType.BF16 and TrainingSetup(method=Method.QLORA).frozen_dtype is DType.FP32
    rs = resolve(LLAMA, s)
    assert rs.autocast and rs.residual is DType.BF16
    with_prep = estimate(LLAMA, TrainingSetup(method=Method.QLORA)).components["weights"]
    without = estimate(LLAMA, s).components["weights"]
    # embeddings, lm_head and norms: 2 bytes each instead of 4
    pc = estimate(LLAMA, s).params
    assert with_prep - without == pytest.approx(2 * (pc.embedding + pc.lm_head + pc.norms), rel=1e-3)


def test_qlora_upcast_without_autocast_has_no_closed_form():
    s = TrainingSetup(method=Method.QLORA, precision=Precision.BF16_TRUE, kbit_upcast=True)
    with pytest.raises(NoClosedForm, match="no autocast"):
        estimate(LLAMA, s)


@pytest.mark.parametrize("kw, words", [
    (dict(precision=Precision.FP32, autocast=True), "--autocast with --precision fp32"),
    (dict(precision=Precision.FP16_MIXED, weights=DType.BF16), "--weights-dtype bf16 with --precision fp16-mixed"),
    (dict(autocast=False), "compute in fp32, not bf16"),
    (dict(kbit_upcast=False), "apply to --method qlora"),
    (dict(precision=Precision.FP16_MIXED, weights=DType.FP16), "GradScaler"),
    (dict(method=Method.LORA, weights=DType.BF16, base_dtype=DType.FP16), "disagree"),
    (dict(method=Method.QLORA, weights=DType.FP32), "--method qlora"),
    (dict(weights=DType.NF4), "fp32, bf16 or fp16"),
    (dict(weights=DType.BF16, parallel=ParallelSpec(gpus=2)), "one GPU only"),
])
def test_impossible_recipes_are_refused_naming_the_knobs(kw, words):
    with pytest.raises(PlannerError, match=words.replace("(", r"\(").replace("-", r"\-")):
        TrainingSetup(**kw).validate()


def test_a_sharding_engine_decides_the_stored_dtypes():
    """DeepSpeed keeps fp32 master weights, accelerate upcasts to fp32 under FSDP mixed precision: the
    load dtype does not change a sharded estimate."""
    fsdp = ParallelSpec(gpus=4, fsdp=Fsdp.FULL)
    s = TrainingSetup(weights=DType.BF16, parallel=fsdp)
    assert s.validate().canonical() == TrainingSetup(parallel=fsdp)
    assert estimate(LLAMA, s).peak_allocated_bytes == estimate(LLAMA, TrainingSetup(parallel=fsdp)).peak_allocated_bytes


def test_the_new_choices_show_in_the_dict_only_when_set_and_round_trip():
    assert not {"weights", "autocast", "kbit_upcast"} & set(TrainingSetup().to_dict())
    for s in (TrainingSetup(weights=DType.BF16), TrainingSetup(method=Method.QLORA, kbit_upcast=False),
              TrainingSetup(method=Method.LORA, precision=Precision.BF16_TRUE, autocast=True)):
        d = s.to_dict(LLAMA)
        back = TrainingSetup.from_dict(d)
        assert back.to_dict(LLAMA) == d and back.recipe == s.recipe
        assert estimate(LLAMA, back).peak_allocated_bytes == estimate(LLAMA, s).peak_allocated_bytes
