"""Batches with images (planner/techniques/images.py): the image tokens per example, each refusal in
one line, no closed form (the simulator answers), and the setup field shown only when set."""
from pathlib import Path

import pytest

from gpuplan.planner import TrainingSetup, estimate
from gpuplan.planner.io.catalog import resolve_model
from gpuplan.planner.specs.errors import NoClosedForm, PlannerError
from gpuplan.planner.techniques import images

LORA = {"method": "lora", "lora": {"targets": ["q_proj", "v_proj"], "language_only": True}}
LLAVA_NEXT = str(Path(__file__).resolve().parents[2] / "fixtures" / "models" / "llava-next-mistral-2-layers.config.json")


def _setup(**d):
    return TrainingSetup.from_dict({**LORA, "batch_size": 1, "seq_len": 1024, **d})


@pytest.mark.parametrize("preset, per_image", [("llava-1.5-7b", 576), ("gemma-3-4b-it-multimodal", 256),
                                               ("gemma-3-27b-it-multimodal", 256)])
def test_image_tokens_per_example(preset, per_image):
    m = resolve_model(preset)
    assert images.image_tokens(m, _setup(images_per_example=1)) == per_image
    assert images.image_tokens(m, _setup(images_per_example=3, seq_len=4096)) == 3 * per_image
    assert images.image_tokens(m, _setup()) == 0


LLAVA = "llava-1.5-7b"


@pytest.mark.parametrize("preset, setup, match", [
    ("gemma-3-4b-it-multimodal", {}, "bidirectional image attention"),
    (LLAVA, {"lora": {"targets": ["q_proj", "v_proj"]}}, "trainable parameters"),     # CLIP's q/v adapted too
    (LLAVA, {"lora": {"targets": ["all-linear"], "language_only": False}}, "trainable parameters"),
    (LLAVA, {"method": "full", "precision": "bf16-true"}, "trainable parameters"),
    (LLAVA, {"method": "qlora", "quant": {"quant_type": "int8"}}, "8-bit base"),
    (LLAVA, {"checkpointing": "save-attention"}, "ckpt-policy"),
])
def test_the_simulator_answers_what_the_closed_form_does_not_cover(preset, setup, match):
    with pytest.raises(NoClosedForm, match=match):
        estimate(resolve_model(preset), _setup(images_per_example=1, **setup))


def _extra(**d):
    from gpuplan.planner.specs.resolved import resolve

    m = resolve_model(LLAVA)
    return images.extra_bytes(m, resolve(m, _setup(**d).for_model(m)))


CLIP_STATE = 577 * 1024          # one image's hidden state in CLIP ViT-L/14-336 (576 patches + the class token)
PROJECTED = 576 * 4096           # one image's projected features (LLaVA-1.5-7B: Llama-2-7B's width)
PIXELS = 3 * 336 * 336 * 4       # the image processor's fp32 pixel_values


def test_without_checkpointing_nothing_on_the_vision_side_is_kept():
    forward, backward, weights = _extra(base_dtype="bf16", checkpointing="none", images_per_example=1)
    assert (backward, weights) == (0, 0)
    # until the loss: the feature layer's and the last layer's hidden states, the features, the pixels
    assert forward == 2 * CLIP_STATE * 2 + PROJECTED * 2 + PIXELS
    assert _extra(base_dtype="bf16", checkpointing="none", images_per_example=2, seq_len=2048)[0] == 2 * forward


def test_checkpointing_keeps_the_clip_layers_inputs_until_the_backward():
    one = _extra(base_dtype="bf16", images_per_example=1)[1]
    two = _extra(base_dtype="bf16", images_per_example=2, seq_len=2048)[1]
    # per image: the patch embedding's output, pre_layrnorm's input, 23 layers' inputs, GELU's input
    per_image = 576 * 1024 * 2 + CLIP_STATE * 2 * (1 + 23) + PROJECTED * 2
    stats = 2 * (images._alloc(2 * 577 * 4) - images._alloc(577 * 4))   # pre_layrnorm's fp32 mean and rstd
    assert two - one == per_image + stats + 1024 * 4096 * 2 + 1024    # and the longer sequence's embeddings, mask
    fp32 = _extra(images_per_example=1)[1]   # fp32 frozen weights: 16-bit copies of the projector's weights
    assert fp32 - one > (1024 * 4096 + 4096 * 4096) * 2


def test_qlora_s_vision_biases_drop_to_16_bit_once_images_run():
    biases = 24 * (4 * 1024 + 4096 + 1024) + 2 * 4096   # CLIP's six linears per layer, the projector's two
    assert _extra(method="qlora", images_per_example=1)[2] == -biases * 2
    assert _extra(images_per_example=1)[2] == 0


@pytest.mark.parametrize("preset, setup, match", [
    ("llama-3.2-1b", {"images_per_example": 1}, "text-only model"),
    ("qwen2-vl-2b-instruct", {"images_per_example": 1}, "dynamic resolution"),
    ("qwen2.5-vl-3b-instruct", {"images_per_example": 1}, "dynamic resolution"),
    ("llava-1.5-7b", {"images_per_example": 2, "seq_len": 1152}, "raise --seq-len above 1152"),
    ("llava-1.5-7b", {"images_per_example": 1, "packing": "rows"}, "--packing rows"),
    ("llava-1.5-7b", {"images_per_example": 1, "objective": "dpo"}, "--objective dpo"),
    ("llava-1.5-7b", {"images_per_example": -1}, "0 \\(text-only\\) or more"),
    (LLAVA_NEXT, {"images_per_example": 1}, "anyres tiling"),
])
def test_refused_in_one_line(preset, setup, match):
    with pytest.raises(PlannerError, match=match) as err:
        estimate(resolve_model(preset), _setup(**setup))
    assert not isinstance(err.value, NoClosedForm) and "\n" not in str(err.value)


def test_shown_in_the_dict_only_when_set_and_round_trips():
    text = _setup()
    assert "images_per_example" not in text.to_dict()
    s = _setup(images_per_example=2)
    assert s.to_dict()["images_per_example"] == 2
    back = TrainingSetup.from_dict(s.to_dict())
    assert back.images_per_example == 2 and back.to_dict() == s.to_dict()


def test_fit_searches_sequences_above_the_image_tokens():
    from gpuplan.planner.io.catalog import resolve_gpu
    from gpuplan.planner.plans.fit import fit

    r = fit(resolve_model(LLAVA), _setup(method="qlora", images_per_example=1), resolve_gpu("a100-40gb"))
    assert r.max_batch >= 1 and r.max_seq_len > 576


def test_llava_next_text_only_batches_are_planned():
    """LLaVA-NeXT's image batches are refused (above); its text-only batches are the wrapper's closed form."""
    est = estimate(resolve_model(LLAVA_NEXT), _setup())
    assert est.peak_allocated_bytes > 0 and any("text-only batches" in n for n in est.notes)
