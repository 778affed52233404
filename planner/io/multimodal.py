"""Config readers for multimodal wrappers whose text tower is a supported family, as transformers
5.24's native classes build them (never remote code): Gemma3ForConditionalGeneration (gemma3),
LlavaForConditionalGeneration (llava), LlavaNextForConditionalGeneration (llava_next),
Qwen2VLForConditionalGeneration (qwen2_vl) and Qwen2_5_VLForConditionalGeneration (qwen2_5_vl). The text tower is read by its family's reader
(architectures.py); the vision tower and projector become a VisionSpec (specs/vision.py).

Hub configs often leave sub-config keys at their class defaults, so each reader fills what is
absent from the defaults of the class transformers builds [models/<type>/configuration_<type>.py].
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from ..specs.errors import PlannerError
from ..specs.model import ModelSpec
from ..specs.vision import VisionLinear, VisionSpec, VisionTower

# sub-config class defaults, transformers 5.24 [configuration_llama.py LlamaConfig,
# configuration_mistral.py MistralConfig, configuration_gemma3.py Gemma3TextConfig, configuration_qwen2_vl.py Qwen2VLTextConfig,
# configuration_qwen2_5_vl.py Qwen2_5_VLTextConfig]; keys the text readers read
_TEXT_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                  num_attention_heads=32, max_position_embeddings=2048, tie_word_embeddings=False),
    "gemma3_text": dict(vocab_size=262_208, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                        num_attention_heads=8, num_key_value_heads=4, head_dim=256, max_position_embeddings=131_072,
                        sliding_window=4096, tie_word_embeddings=True),
    # MistralConfig's sliding_window (4096) is filled only where the key is absent: hub configs give null
    "mistral": dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                    num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=4096 * 32,
                    tie_word_embeddings=False),
    "qwen2": dict(vocab_size=152_064, hidden_size=8192, intermediate_size=29568, num_hidden_layers=80,
                  num_attention_heads=64, num_key_value_heads=8, max_position_embeddings=32768,
                  use_sliding_window=False, sliding_window=4096, max_window_layers=80),
}
# [configuration_siglip.py SiglipVisionConfig, configuration_clip.py CLIPVisionConfig,
# configuration_qwen2_vl.py Qwen2VLVisionConfig, configuration_qwen2_5_vl.py Qwen2_5_VLVisionConfig]
_VISION_DEFAULTS: dict[VisionTower, dict[str, Any]] = {
    VisionTower.SIGLIP: dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_channels=3,
                             image_size=224, patch_size=16, vision_use_head=True),
    VisionTower.CLIP: dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_channels=3,
                           image_size=224, patch_size=32),
    VisionTower.QWEN2_VL: dict(depth=32, embed_dim=1280, hidden_size=3584, mlp_ratio=4, in_channels=3,
                               patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
    VisionTower.QWEN2_5_VL: dict(depth=32, hidden_size=3584, intermediate_size=3420, in_channels=3, patch_size=14,
                                 spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=3584),
}
# LlavaConfig builds CLIP ViT-L/14-336 when vision_config is absent [configuration_llava.py sub_configs]
_LLAVA_VISION = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, image_size=336, patch_size=14)


def _filled(defaults: Mapping[str, Any], given: Mapping[str, Any] | None) -> dict[str, Any]:
    given = dict(given or {})
    return {**defaults, **{k: v for k, v in given.items() if v is not None}}


def clip_vision_config(given: Mapping[str, Any] | None) -> dict[str, Any]:
    """A LLaVA config's CLIP vision_config with the reader's defaults filled in (LLaVA-1.5's ViT-L/14-336
    when the config gives none): what techniques/images.py sizes the image tokens and tower by."""
    return _filled(_VISION_DEFAULTS[VisionTower.CLIP], given if given is not None else _LLAVA_VISION)


def _vit_layers(h: int, inter: int, n: int) -> tuple[VisionLinear, ...]:
    """SigLIP's and CLIP's encoder layer: q/k/v/out_proj and fc1/fc2, all with biases
    [modeling_siglip.py SiglipAttention, SiglipMLP; modeling_clip.py CLIPAttention, CLIPMLP]."""
    return (VisionLinear("q_proj", h, h, True, n), VisionLinear("k_proj", h, h, True, n),
            VisionLinear("v_proj", h, h, True, n), VisionLinear("out_proj", h, h, True, n),
            VisionLinear("fc1", h, inter, True, n), VisionLinear("fc2", inter, h, True, n))


def _linear_params(linears: tuple[VisionLinear, ...]) -> int:
    return sum(lin.weight_count + (lin.count * lin.out_features if lin.bias else 0) for lin in linears)


def _vit_tower(kind: VisionTower, v: Mapping[str, Any]) -> tuple[int, tuple[VisionLinear, ...], int, int]:
    """(parameters, linears, patches per image, patch size) of a SigLIP or CLIP vision model: a
    Conv2d patch embedding (SigLIP with a bias, CLIP without), learned positions (CLIP one more for
    its class token, plus class_embedding and pre_layrnorm), per layer two LayerNorms and the
    linears, a post LayerNorm; SigLIP's attention-pooling head where `vision_use_head`
    [modeling_siglip.py SiglipVisionEmbeddings, SiglipMultiheadAttentionPoolingHead;
    modeling_clip.py CLIPVisionEmbeddings, CLIPVisionTransformer]."""
    h, inter, n = int(v["hidden_size"]), int(v["intermediate_size"]), int(v["num_hidden_layers"])
    p, c = int(v["patch_size"]), int(v.get("num_channels") or 3)
    patches = (int(v["image_size"]) // p) ** 2
    linears = _vit_layers(h, inter, n)
    layer_norms = n * 2 * 2 * h + 2 * h                      # two per layer, the post norm
    if kind is VisionTower.SIGLIP:
        embed = c * p * p * h + h + patches * h
        head = 0
        if v.get("vision_use_head", True):   # probe, nn.MultiheadAttention (in_proj 3h x h, out_proj), norm, MLP
            head = h + (3 * h * h + 3 * h) + (h * h + h) + 2 * h + (h * inter + inter) + (inter * h + h)
        return embed + layer_norms + _linear_params(linears) + head, linears, patches, p
    embed = h + c * p * p * h + (patches + 1) * h + 2 * h    # class_embedding, conv, positions, pre_layrnorm
    return embed + layer_norms + _linear_params(linears), linears, patches, p


def _gemma3(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], VisionSpec]:
    """Gemma-3: SigLIP (no head in released checkpoints), projector = a (vision, text) weight used
    by torch.matmul (not an nn.Linear: no LoRA target) and a Gemma RMSNorm of the vision width;
    `mm_tokens_per_image` (default 256) positions per image after average pooling
    [modeling_gemma3.py Gemma3MultiModalProjector]."""
    text = _filled(_TEXT_DEFAULTS["gemma3_text"], cfg.get("text_config"))
    text["model_type"] = "gemma3_text"
    text.setdefault("tie_word_embeddings", True)
    v = _filled(_VISION_DEFAULTS[VisionTower.SIGLIP], cfg.get("vision_config"))
    tower, linears, _, p = _vit_tower(VisionTower.SIGLIP, v)
    hv, ht = int(v["hidden_size"]), int(text["hidden_size"])
    return text, VisionSpec("gemma3", VisionTower.SIGLIP, tower, hv * ht + hv, linears,
                            int(cfg.get("mm_tokens_per_image") or 256), p, config=dict(cfg))


def _llava(cfg: Mapping[str, Any], text_types: tuple[str, ...] = ("llama",), what: str = "LLaVA",
           wrapper: str = "llava") -> tuple[dict[str, Any], VisionSpec]:
    """LLaVA(-1.5): CLIP (every layer built, `vision_feature_layer` only selects which hidden state
    is projected), projector linear_1 (vision width x feature layers -> text width) and linear_2
    with biases per `multimodal_projector_bias`; (image/patch)^2 positions per image, one more
    with `vision_feature_select_strategy` "full" (the class token kept)
    [modeling_llava.py LlavaMultiModalProjector, LlavaModel.get_image_features]."""
    given_text = dict(cfg.get("text_config") or {})
    text_type = given_text.get("model_type", "llama")
    if text_type not in text_types:
        raise PlannerError(f"{what} with a {text_type!r} text tower is not modelled yet; modelled: {', '.join(text_types)}")
    text = _filled(_TEXT_DEFAULTS[text_type], given_text)
    text["model_type"] = text_type
    if text_type == "mistral" and "sliding_window" not in given_text:
        text["sliding_window"] = 4096   # MistralConfig's default [configuration_mistral.py]
    # LlavaConfig forwards the text config's tie to the outer config [configuration_llava.py __post_init__]
    text["tie_word_embeddings"] = bool(cfg.get("tie_word_embeddings") or text.get("tie_word_embeddings"))
    kind = VisionTower.CLIP
    given_vision = cfg.get("vision_config")
    if given_vision is not None and given_vision.get("model_type", "clip_vision_model") != "clip_vision_model":
        raise PlannerError(f"{what} with a {given_vision['model_type']!r} vision tower is not modelled yet; modelled: "
                           "clip_vision_model")
    v = _filled(_VISION_DEFAULTS[kind], given_vision) if given_vision is not None else \
        _filled(_VISION_DEFAULTS[kind], _LLAVA_VISION)
    tower, linears, patches, p = _vit_tower(kind, v)
    layers = cfg.get("vision_feature_layer", -2)
    n_feat = len(layers) if isinstance(layers, (list, tuple)) else 1
    hv, ht = int(v["hidden_size"]), int(text["hidden_size"])
    bias = bool(cfg.get("multimodal_projector_bias", True))
    proj = (VisionLinear("linear_1", hv * n_feat, ht, bias, 1, "projector"),
            VisionLinear("linear_2", ht, ht, bias, 1, "projector"))
    tokens = patches + (1 if cfg.get("vision_feature_select_strategy", "default") == "full" else 0)
    return text, VisionSpec(wrapper, kind, tower, _linear_params(proj), linears + proj, tokens, p, config=dict(cfg))


def _llava_next(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], VisionSpec]:
    """LLaVA-NeXT (LLaVA-1.6): LLaVA's CLIP tower and two-linear projector, a Llama or Mistral text tower
    (LlavaNextConfig's default text config is Llama's), and `image_newline`, a parameter of the text
    width [modeling_llava_next.py LlavaNextMultiModalProjector, LlavaNextModel.__init__]. Its image
    tokens are not a constant: anyres tiling picks a grid from `image_grid_pinpoints` by each image's
    size, then unpads the tiles' features and appends newline tokens [LlavaNextModel.pack_image_features,
    image_processing_llava_next.py]: image_tokens None (batches with images refused, techniques/images.py)."""
    text, v = _llava(cfg, ("llama", "mistral"), "LLaVA-NeXT", "llava_next")
    newline = int(text["hidden_size"])
    return text, dataclasses.replace(v, projector_params=v.projector_params + newline, image_tokens=None)


def _qwen_text(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Qwen2-VL's text tower is Qwen2's decoder (q/k/v biases, multimodal rope); hub configs keep its
    keys at the top level, which Qwen2VLConfig moves into text_config [configuration_qwen2_vl.py
    __post_init__]; the tie from either level [the same, 'BC: pre-v5 saves']."""
    given = cfg.get("text_config")
    if given is None:
        given = {k: v for k, v in cfg.items() if k not in ("vision_config", "model_type", "architectures")}
    text = _filled(_TEXT_DEFAULTS["qwen2"], given)
    text["model_type"] = "qwen2"
    text["tie_word_embeddings"] = bool(cfg.get("tie_word_embeddings") or given.get("tie_word_embeddings"))
    return text


def _qwen2_vl(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], VisionSpec]:
    """Qwen2-VL's vision transformer: a Conv3d patch embedding without bias (channels x temporal x
    patch^2 -> embed_dim), per block two LayerNorms, attn.qkv and attn.proj, mlp.fc1 / fc2 (mlp_ratio)
    with biases; the merger (a LayerNorm, mlp.0 of embed * merge^2 square, mlp.2 to the text width)
    [modeling_qwen2_vl.py PatchEmbed, Qwen2VLVisionBlock, PatchMerger]."""
    text = _qwen_text(cfg)
    v = _filled(_VISION_DEFAULTS[VisionTower.QWEN2_VL], cfg.get("vision_config"))
    e, n, m = int(v["embed_dim"]), int(v["depth"]), int(v["spatial_merge_size"])
    inter, out = e * int(v["mlp_ratio"]), int(v["hidden_size"])
    return text, _qwen_vision(VisionTower.QWEN2_VL, "qwen2_vl", v, e, n, m, out, 2 * e, (
        VisionLinear("qkv", e, 3 * e, True, n), VisionLinear("proj", e, e, True, n),
        VisionLinear("fc1", e, inter, True, n), VisionLinear("fc2", inter, e, True, n)), 2 * 2 * e, cfg)


def _qwen2_5_vl(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], VisionSpec]:
    """Qwen2.5-VL's vision transformer: Qwen2-VL's with RMSNorms and a gated MLP with biases
    (gate_proj, up_proj, down_proj: the text tower's names, so a name targets both towers), windowed
    attention [modeling_qwen2_5_vl.py Qwen2_5_VLVisionBlock, Qwen2_5_VLMLP, Qwen2_5_VLPatchMerger]."""
    text = _qwen_text(cfg)
    v = _filled(_VISION_DEFAULTS[VisionTower.QWEN2_5_VL], cfg.get("vision_config"))
    e, n, m = int(v["hidden_size"]), int(v["depth"]), int(v["spatial_merge_size"])
    inter, out = int(v["intermediate_size"]), int(v["out_hidden_size"])
    return text, _qwen_vision(VisionTower.QWEN2_5_VL, "qwen2_5_vl", v, e, n, m, out, e, (
        VisionLinear("qkv", e, 3 * e, True, n), VisionLinear("proj", e, e, True, n),
        VisionLinear("gate_proj", e, inter, True, n), VisionLinear("up_proj", e, inter, True, n),
        VisionLinear("down_proj", inter, e, True, n)), 2 * e, cfg)


def _qwen_vision(kind: VisionTower, wrapper: str, v: Mapping[str, Any], e: int, n: int, m: int, out: int,
                 merger_norm: int, blocks: tuple[VisionLinear, ...], block_norms: int,
                 cfg: Mapping[str, Any]) -> VisionSpec:
    p, t, c = int(v["patch_size"]), int(v["temporal_patch_size"]), int(v.get("in_channels") or 3)
    wide = e * m * m
    merger = (VisionLinear("mlp.0", wide, wide, True, 1, "projector"), VisionLinear("mlp.2", wide, out, True, 1, "projector"))
    tower = c * t * p * p * e + n * block_norms + _linear_params(blocks) + merger_norm + _linear_params(merger)
    # the merger sits inside the visual module (model.visual.merger): counted with the tower
    return VisionSpec(wrapper, kind, tower, 0, blocks + merger, None, p, m, config=dict(cfg))


_WRAPPERS: dict[str, Callable[[Mapping[str, Any]], tuple[dict[str, Any], VisionSpec]]] = {
    "gemma3": _gemma3, "llava": _llava, "llava_next": _llava_next, "qwen2_vl": _qwen2_vl, "qwen2_5_vl": _qwen2_5_vl,
}
MULTIMODAL_MODEL_TYPES = tuple(sorted(_WRAPPERS))


def from_multimodal(name: str, cfg: Mapping[str, Any],
                    text_reader: Callable[[str, Mapping[str, Any]], ModelSpec]) -> ModelSpec:
    """The wrapper's ModelSpec: its text tower as `text_reader` reads it, with the vision tower and
    projector beside it; peft has no default target_modules for the wrappers' model_types (its table
    lists gemma3_text, not gemma3), so none is taken [peft/utils/constants.py
    TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING, lora/model.py _prepare_adapter_config]."""
    text, vision = _WRAPPERS[cfg["model_type"]](cfg)
    dtype = cfg.get("dtype") or cfg.get("torch_dtype")   # the checkpoint's, where the text_config names none
    if dtype and not (text.get("dtype") or text.get("torch_dtype")):
        text["torch_dtype"] = dtype
    spec = text_reader(name, text)
    return dataclasses.replace(spec, model_type=cfg["model_type"], vision=vision, peft_default_targets=())
