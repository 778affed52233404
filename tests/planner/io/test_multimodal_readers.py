"""Multimodal wrappers (planner/io/multimodal.py): exact parameter counts against transformers'
meta-device build of small variants of each wrapper (every config path: class defaults filled in,
Qwen's top-level text keys or a text_config, SigLIP's pooling head, LLaVA's feature layers and
projector bias), the fields the readers fill, and one line for what they do not model."""
import copy
import gc
import json
from pathlib import Path

import pytest

from gpuplan.planner import model_from_config, param_counts
from gpuplan.planner.io.catalog import load_preset, resolve_model
from gpuplan.planner.specs.errors import PlannerError
from gpuplan.planner.specs.vision import VisionTower


def _variant(preset, text=None, vision=None, **top):
    cfg = copy.deepcopy(load_preset(preset)["config"])
    cfg.update(top)
    if text:
        if "text_config" in cfg:
            cfg["text_config"].update(text)
        else:
            cfg.update(text)
    if vision:
        cfg["vision_config"] = {**cfg.get("vision_config", {}), **vision}
    return cfg


@pytest.fixture
def meta_count():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")

    def count(config):
        config = copy.deepcopy(config)
        cfg = transformers.AutoConfig.for_model(config.pop("model_type"), **config)
        with torch.device("meta"):
            model = transformers.AutoModelForImageTextToText.from_config(cfg)
        try:
            return sum(p.numel() for p in model.parameters())
        finally:
            del model
            gc.collect()

    return count


SMALL_TEXT = dict(num_hidden_layers=2)
SMALL_VIT = dict(num_hidden_layers=2)


@pytest.mark.parametrize("preset,text,vision,top", [
    ("gemma-3-4b-it-multimodal", SMALL_TEXT, SMALL_VIT, {}),
    ("gemma-3-4b-it-multimodal", SMALL_TEXT, dict(num_hidden_layers=1, vision_use_head=True), {}),   # pooling head
    ("gemma-3-4b-it-multimodal", SMALL_TEXT, dict(num_hidden_layers=1, image_size=448), dict(mm_tokens_per_image=64)),
    ("llava-1.5-7b", SMALL_TEXT, SMALL_VIT, {}),
    ("llava-1.5-7b", SMALL_TEXT, SMALL_VIT, dict(vision_feature_layer=[-2, -5], multimodal_projector_bias=False)),
    ("llava-1.5-7b", dict(num_hidden_layers=2, tie_word_embeddings=True), SMALL_VIT, {}),   # tie from text_config
    ("llava-1.5-7b", dict(num_hidden_layers=2, num_key_value_heads=8), None, dict(vision_config=None)),  # LLaVA's CLIP
    ("qwen2-vl-2b-instruct", SMALL_TEXT, dict(depth=2), {}),
    ("qwen2-vl-2b-instruct", SMALL_TEXT, dict(depth=2, embed_dim=640, mlp_ratio=2), dict(tie_word_embeddings=False)),
    ("qwen2.5-vl-3b-instruct", SMALL_TEXT, dict(depth=2, fullatt_block_indexes=[1]), {}),
    ("qwen2.5-vl-3b-instruct", SMALL_TEXT, dict(depth=2, fullatt_block_indexes=[1], intermediate_size=1024), {}),
])
def test_counts_match_transformers_on_meta(preset, text, vision, top, meta_count):
    cfg = _variant(preset, text, vision, **top)
    if top.get("vision_config", 0) is None:
        cfg.pop("vision_config")
    assert param_counts(model_from_config(cfg)).total == meta_count(cfg)


def test_qwen2_vl_text_config_form(meta_count):
    """transformers-5 saves move Qwen2-VL's text keys into text_config; both forms read alike."""
    flat = _variant("qwen2-vl-2b-instruct", SMALL_TEXT, dict(depth=2))
    text_keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                 "vocab_size", "max_position_embeddings", "rope_scaling", "rope_theta")
    nested = {k: v for k, v in flat.items() if k not in text_keys}
    nested["text_config"] = {"model_type": "qwen2_vl_text", **{k: flat[k] for k in text_keys}}
    assert param_counts(model_from_config(nested)).total == param_counts(model_from_config(flat)).total \
        == meta_count(nested)


def test_fields():
    g = resolve_model("gemma-3-4b-it-multimodal")
    assert g.model_type == "gemma3" and g.vision.tower is VisionTower.SIGLIP and g.vision.image_tokens == 256
    assert (g.n_heads, g.n_kv_heads, g.head_dim, g.vocab) == (8, 4, 256, 262_208)   # Gemma3TextConfig defaults
    assert g.tied_embeddings and g.peft_default_targets == ()       # peft's table has gemma3_text, not gemma3
    assert "mm_input_projection_weight" not in g.vision.linear_names()   # a raw parameter, not an nn.Linear
    llava = resolve_model("llava-1.5-7b")
    assert llava.vision.image_tokens == 576 and llava.vision.tower is VisionTower.CLIP   # (336 / 14)^2
    assert {"linear_1", "linear_2"} <= llava.vision.linear_names()
    q = resolve_model("qwen2-vl-2b-instruct")
    assert q.vision.image_tokens is None and q.vision.merge == 2 and q.hf_config["model_type"] == "qwen2"
    assert param_counts(q).vision == 665_271_296
    q25 = resolve_model("qwen2.5-vl-3b-instruct")
    assert {"gate_proj", "up_proj", "down_proj", "qkv", "mlp.0"} <= q25.vision.linear_names()


def test_checkpoint_dtype_from_the_wrapper():
    from gpuplan.planner.memory.load import checkpoint_dtype_bytes

    g = resolve_model("gemma-3-4b-it-multimodal")     # text_config names no dtype; the wrapper bfloat16
    assert "torch_dtype" not in load_preset("gemma-3-4b-it-multimodal")["config"]["text_config"]
    assert checkpoint_dtype_bytes(g) == 2
    assert checkpoint_dtype_bytes(resolve_model("llava-1.5-7b")) == 2   # float16


def test_refusals():
    with pytest.raises(PlannerError, match="mistral.*not modelled"):
        model_from_config(_variant("llava-1.5-7b", dict(model_type="mistral")))
    with pytest.raises(PlannerError, match="siglip_vision_model.*not modelled"):
        model_from_config(_variant("llava-1.5-7b", vision=dict(model_type="siglip_vision_model")))
    # another wrapper is refused rather than read as its text tower alone
    with pytest.raises(PlannerError, match="multimodal model_type 'llava_onevision' is not supported yet.*text_config alone"):
        model_from_config(_variant("llava-1.5-7b", model_type="llava_onevision"))


LLAVA_NEXT = Path(__file__).resolve().parents[2] / "fixtures" / "models" / "llava-next-mistral-2-layers.config.json"


@pytest.mark.parametrize("text, top", [
    ({}, {}),                                                                    # Mistral tower, sliding_window null
    ({"model_type": "llama", "vocab_size": 32064, "num_hidden_layers": 2}, {}),  # a Llama tower (the config's default)
    (None, {"vision_feature_layer": [-2, -5], "multimodal_projector_bias": False}),
])
def test_llava_next_counts_match_transformers_on_meta(text, top, meta_count):
    cfg = {**json.loads(LLAVA_NEXT.read_text()), **top}
    if text:
        cfg["text_config"] = text
    elif text is None:
        cfg["text_config"] = {"model_type": "mistral", "num_hidden_layers": 2}   # MistralConfig's defaults filled in
    assert param_counts(model_from_config(cfg)).total == meta_count(cfg)


def test_llava_next_fields():
    m = model_from_config(json.loads(LLAVA_NEXT.read_text()), "llava-next")
    v = m.vision
    assert m.model_type == "llava_next" and m.sliding_window is None and v.tower is VisionTower.CLIP
    assert v.image_tokens is None                   # anyres: set by each image's size
    assert v.projector_params == (1024 * 4096 + 4096) + (4096 * 4096 + 4096) + 4096   # linear_1, linear_2, image_newline
    cfg = json.loads(LLAVA_NEXT.read_text())
    cfg["text_config"] = {**cfg["text_config"], "model_type": "qwen2"}
    with pytest.raises(PlannerError, match="LLaVA-NeXT with a 'qwen2' text tower"):
        model_from_config(cfg)
