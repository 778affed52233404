"""Batches with images (planner/techniques/images.py): the image tokens per example, each refusal in
one line, no closed form (the simulator answers), and the setup field shown only when set."""
import pytest

from gpuplan.planner import TrainingSetup, estimate
from gpuplan.planner.io.catalog import resolve_model
from gpuplan.planner.specs.errors import NoClosedForm, PlannerError
from gpuplan.planner.techniques import images

LORA = {"method": "lora", "lora": {"targets": ["q_proj", "v_proj"], "language_only": True}}


def _setup(**d):
    return TrainingSetup.from_dict({**LORA, "batch_size": 1, "seq_len": 1024, **d})


@pytest.mark.parametrize("preset, per_image", [("llava-1.5-7b", 576), ("gemma-3-4b-it-multimodal", 256),
                                               ("gemma-3-27b-it-multimodal", 256)])
def test_image_tokens_per_example(preset, per_image):
    m = resolve_model(preset)
    assert images.image_tokens(m, _setup(images_per_example=1)) == per_image
    assert images.image_tokens(m, _setup(images_per_example=3, seq_len=4096)) == 3 * per_image
    assert images.image_tokens(m, _setup()) == 0


def test_an_image_batch_has_no_closed_form_yet():
    with pytest.raises(NoClosedForm, match="576 image tokens"):
        estimate(resolve_model("llava-1.5-7b"), _setup(images_per_example=1))


@pytest.mark.parametrize("preset, setup, match", [
    ("llama-3.2-1b", {"images_per_example": 1}, "text-only model"),
    ("qwen2-vl-2b-instruct", {"images_per_example": 1}, "dynamic resolution"),
    ("qwen2.5-vl-3b-instruct", {"images_per_example": 1}, "dynamic resolution"),
    ("llava-1.5-7b", {"images_per_example": 2, "seq_len": 1152}, "raise --seq-len above 1152"),
    ("llava-1.5-7b", {"images_per_example": 1, "packing": "rows"}, "--packing rows"),
    ("llava-1.5-7b", {"images_per_example": 1, "objective": "dpo"}, "--objective dpo"),
    ("llava-1.5-7b", {"images_per_example": -1}, "0 \\(text-only\\) or more"),
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
