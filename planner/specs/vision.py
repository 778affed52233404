"""VisionSpec: the vision tower and projector of a multimodal wrapper (Gemma-3, LLaVA, Qwen2-VL,
Qwen2.5-VL) around a supported text tower, as transformers' native ForConditionalGeneration
class builds them. The text tower is the ModelSpec itself; this holds what sits beside it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .enums import Choice


class VisionTower(Choice):
    SIGLIP = "siglip"            # SiglipVisionModel (Gemma-3)
    CLIP = "clip"                # CLIPVisionModel (LLaVA)
    QWEN2_VL = "qwen2-vl"        # Qwen2VisionTransformerPretrainedModel
    QWEN2_5_VL = "qwen2.5-vl"    # Qwen2_5_VisionTransformerPretrainedModel (windowed attention, gated MLP)


@dataclass(frozen=True)
class VisionLinear:
    """`count` nn.Linear modules of one name in the vision tower or projector, named by the last
    component(s) peft's suffix match sees (`mlp.0` for a Sequential's first linear)."""

    name: str
    in_features: int
    out_features: int
    bias: bool
    count: int
    part: str = "tower"           # "tower" or "projector"

    @property
    def weight_count(self) -> int:
        return self.count * self.in_features * self.out_features


@dataclass(frozen=True)
class VisionSpec:
    """The wrapper's non-text parameters; counts are exact against transformers' meta build."""

    wrapper: str                  # the wrapper's model_type: gemma3, llava, llava_next, qwen2_vl, qwen2_5_vl
    tower: VisionTower
    tower_params: int             # every vision-tower parameter (patch embedding, positions, norms, linears)
    projector_params: int         # the projector's (Gemma-3's projection weight and norm; LLaVA's MLP; Qwen's merger is in the tower)
    linears: tuple[VisionLinear, ...]
    image_tokens: int | None      # text-tower positions one image takes; None: dynamic (Qwen2-VL, LLaVA-NeXT: set by the image size)
    patch: int                    # pixels per patch side
    merge: int = 1                # Qwen2-VL: patches merged per side into one token
    config: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)   # the wrapper's config.json

    @property
    def params(self) -> int:
        return self.tower_params + self.projector_params

    def linear_names(self) -> set[str]:
        return {lin.name for lin in self.linears}
