"""Batches with images in the profiler (profiler/images.py): the image tokens and pixel_values a
processor gives, checked by the wrappers' own placeholder check on a real CPU step, and the same
step simulated under FakeTensorMode, where that one check is skipped."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from gpuplan.planner import TrainingSetup, model_from_config  # noqa: E402
from gpuplan.profiler.build import build_model  # noqa: E402
from gpuplan.profiler.images import add_images, fake_placeholder_check, image_tokens  # noqa: E402
from gpuplan.profiler.simulate import simulate  # noqa: E402

import copy  # noqa: E402

from gpuplan.planner.io.catalog import load_preset  # noqa: E402


def _tiny(preset: str, text: dict, vision: dict) -> dict:
    cfg = copy.deepcopy(load_preset(preset)["config"])
    cfg["text_config"].update(text)
    cfg["vision_config"] = {**cfg.get("vision_config", {}), **vision}
    return cfg


TINY_GEMMA3 = _tiny("gemma-3-4b-it-multimodal",
                    dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, head_dim=32, vocab_size=512),
                    dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         image_size=56))
TINY_GEMMA3.update(mm_tokens_per_image=4, image_token_index=500, boi_token_index=501, eoi_token_index=502)

TINY_LLAVA = _tiny("llava-1.5-7b", dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=4, vocab_size=512),
                   dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                        image_size=28, patch_size=14, projection_dim=32))
TINY_LLAVA["image_token_index"] = 500

LORA = {"method": "lora", "lora": {"targets": ["q_proj", "v_proj"], "language_only": True}, "precision": "fp32"}


@pytest.mark.parametrize("config, tokens", [(TINY_LLAVA, 4), (TINY_GEMMA3, 4)], ids=["llava", "gemma3"])
def test_a_real_step_accepts_the_batch(config, tokens):
    """The wrapper's own check (image tokens x hidden == image features) passes on real tensors."""
    m = model_from_config(config, "tiny")
    s = TrainingSetup.from_dict({**LORA, "batch_size": 2, "seq_len": 16, "images_per_example": 2})
    torch.manual_seed(0)
    lm, _ = build_model(m, s, torch.device("cpu"))
    assert image_tokens(lm.config) == tokens == m.vision.image_tokens
    ids = torch.randint(0, 400, (2, 16))
    batch = {"input_ids": ids, "labels": ids}
    add_images(batch, lm.config, s)
    assert int((batch["input_ids"] == lm.config.image_token_id).sum()) == 2 * 2 * tokens
    assert batch["pixel_values"].shape[0] == 4 and int((batch["labels"] == -100).sum()) == 2 * 2 * tokens
    lm(**batch).loss.backward()
    bad = dict(batch, pixel_values=batch["pixel_values"][:3])   # one image short: the wrapper refuses
    with pytest.raises(ValueError, match="do not match"):
        lm(**bad)


def test_the_fake_check_is_skipped_only_under_fake_tensors_and_restored():
    import transformers.models.llava.modeling_llava as llava

    before = llava.torch_compilable_check
    with fake_placeholder_check():
        with pytest.raises(ValueError, match="nope"):
            llava.torch_compilable_check(torch.tensor(False), "nope")
    assert llava.torch_compilable_check is before


@pytest.mark.parametrize("config", [TINY_LLAVA, TINY_GEMMA3], ids=["llava", "gemma3"])
def test_images_are_simulated_and_cost_memory(config):
    m = model_from_config(config, "tiny")
    text = TrainingSetup.from_dict({**LORA, "batch_size": 1, "seq_len": 32})
    with_images = text.with_(images_per_example=2)
    assert simulate(m, with_images).peak_allocated_bytes > simulate(m, text).peak_allocated_bytes
