"""Multimodal wrappers in the profiler: the real ForConditionalGeneration class with peft's adapters,
trainable counts exact against what peft builds, and a real CPU step of a tiny Qwen2-VL on a
text-only batch leaving every vision-side parameter without a gradient (the closed form's
assumption, planner/techniques/multimodal.py)."""
from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from gpuplan.planner import TrainingSetup, estimate, model_from_config  # noqa: E402
from gpuplan.planner.io.catalog import load_preset  # noqa: E402
from gpuplan.profiler.build import build_model  # noqa: E402


def _tiny(preset: str, text: dict, vision: dict) -> dict:
    cfg = copy.deepcopy(load_preset(preset)["config"])
    if "text_config" in cfg:
        cfg["text_config"].update(text)
    else:
        cfg.update(text)
    cfg["vision_config"] = {**cfg.get("vision_config", {}), **vision}
    return cfg


TINY_QWEN2_VL = _tiny("qwen2-vl-2b-instruct",
                      dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, vocab_size=512, rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}),
                      dict(depth=1, embed_dim=32, num_heads=2, hidden_size=64))
TINY_GEMMA3 = _tiny("gemma-3-4b-it-multimodal",
                    dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, head_dim=32, vocab_size=512),
                    dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         image_size=56))
TINY_GEMMA3["mm_tokens_per_image"] = 4
TINY_GEMMA3["image_token_index"] = 500
TINY_GEMMA3["boi_token_index"], TINY_GEMMA3["eoi_token_index"] = 501, 502


@pytest.mark.parametrize("config", [TINY_QWEN2_VL, TINY_GEMMA3], ids=["qwen2_vl", "gemma3"])
@pytest.mark.parametrize("setup", [
    {"method": "lora", "lora": {"targets": ["q_proj", "v_proj"]}},
    {"method": "lora", "lora": {"targets": ["all-linear"]}},
    {"method": "lora", "lora": {"targets": ["fc1"], "use_dora": True}},     # a vision-only name
    {"method": "lora", "lora": {"targets": ["q_proj", "v_proj", "lm_head"], "language_only": True}},   # a regex
    {"method": "full"},
], ids=["qv", "all-linear", "fc1-dora", "qv-language-only", "full"])
def test_trainable_counts_are_peft_s(config, setup):
    m = model_from_config(config, "tiny")
    s = TrainingSetup.from_dict({**setup, "batch_size": 1, "seq_len": 16})
    lm, _ = build_model(m, s, torch.device("meta"))
    assert type(lm.get_base_model() if hasattr(lm, "get_base_model") else lm).__name__.endswith("ForConditionalGeneration")
    assert estimate(m, s).trainable_params == sum(p.numel() for p in lm.parameters() if p.requires_grad)


def test_text_only_step_leaves_the_vision_side_without_gradients():
    m = model_from_config(TINY_QWEN2_VL, "tiny")
    s = TrainingSetup.from_dict({"method": "lora", "lora": {"targets": ["all-linear"]}, "checkpointing": "none",
                                 "precision": "fp32", "batch_size": 1, "seq_len": 16})
    torch.manual_seed(0)
    lm, _ = build_model(m, s, torch.device("cpu"))
    ids = torch.randint(0, 500, (1, 16))
    lm(input_ids=ids, labels=ids).loss.backward()
    trained = {n: p.grad is not None for n, p in lm.named_parameters() if p.requires_grad}
    vision = [n for n in trained if ".visual." in n]
    assert vision and not any(trained[n] for n in vision)
    assert all(trained[n] for n in trained if n not in vision)


def test_the_answer_cache_keys_the_whole_wrapper():
    import dataclasses

    from gpuplan.profiler.answer import cache_key

    m = model_from_config(TINY_QWEN2_VL, "tiny")
    other = copy.deepcopy(TINY_QWEN2_VL)
    other["vision_config"]["depth"] = 2          # the same text tower, a deeper vision tower
    s = TrainingSetup.from_dict({"method": "lora", "lora": {"targets": ["q_proj"]}, "batch_size": 1, "seq_len": 16})
    assert cache_key(m, s, "step") != cache_key(model_from_config(other, "tiny"), s, "step")
    text = dataclasses.replace(m, vision=None)
    assert cache_key(text, s, "step") != cache_key(m, s, "step")
