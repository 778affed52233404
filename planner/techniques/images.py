"""Batches with images for a multimodal wrapper (specs/vision.py): `images_per_example` images in
every example, each taking a fixed number of positions of the language model's sequence.

The sequence length is the language model's, image tokens included, as the processors expand them
and as TRL's `max_length` and axolotl's `sequence_len` count them:
- LLaVA-1.5: `<image>` becomes (image_size // patch_size)^2 = (336 // 14)^2 = 576 image tokens
  (+1 with vision_feature_select_strategy "full") [transformers 5.24 models/llava/processing_llava.py
  _expand_image_tokens / _get_num_multimodal_tokens; llava-hf/llava-1.5-7b-hf config.json
  vision_config image_size 336, patch_size 14];
- Gemma-3: each image becomes "\\n\\n<start_of_image>" + 256 image soft tokens + "<end_of_image>\\n\\n",
  `image_seq_length` = `mm_tokens_per_image` = 256, SigLIP's 64 x 64 patches of a 896 px image
  average-pooled 4 x 4 [models/gemma3/processing_gemma3.py Gemma3Processor.__init__,
  configuration_gemma3.py Gemma3Config.mm_tokens_per_image, modeling_gemma3.py
  Gemma3MultiModalProjector]. The image's other tokens are text tokens of the sequence.
The images' resolution is the vision config's `image_size` for both (the image processors resize
to it), so no resolution knob applies. Qwen2-VL's image tokens depend on each image's size
(dynamic resolution); it is refused here (see `check_setup`).

What the step runs beside the text-only step [models/llava/modeling_llava.py LlavaModel.forward,
models/gemma3/modeling_gemma3.py Gemma3Model.forward]: the vision tower's forward on every image,
the projector, `masked_scatter` of the image features into the token embeddings; Gemma-3 also
builds a bidirectional attention block per image from token_type_ids. Under gradient checkpointing
with an adapter, transformers' `enable_input_require_grads` hooks every sub-model's input
embeddings, the vision tower's patch embedding included [transformers/modeling_utils.py
PreTrainedModel.enable_input_require_grads], so autograd records the (frozen) vision tower's
forward and its checkpointed layers keep their inputs until the backward reaches them.

The closed form does not model these yet: the simulator answers every image batch (the real
ForConditionalGeneration class on fake pixel_values, profiler/images.py), said as `"source":
"simulated"`.
"""
from __future__ import annotations

from ..specs.enums import Objective, Packing
from ..specs.errors import NoClosedForm, PlannerError
from ..specs.model import ModelSpec
from ..specs.resolved import Resolved
from ..specs.setup import TrainingSetup

# the wrappers whose image batches are simulated (profiler/images.py builds their inputs)
IMAGE_WRAPPERS = ("gemma3", "llava")


def image_tokens(model: ModelSpec, setup: TrainingSetup) -> int:
    """Positions the images of one example take in the language model's sequence."""
    if not setup.images_per_example or model.vision is None or model.vision.image_tokens is None:
        return 0
    return setup.images_per_example * model.vision.image_tokens


def check_setup(model: ModelSpec, setup: TrainingSetup) -> None:
    """Refuses, in one line, image batches that cannot be planned."""
    n = setup.images_per_example
    if not n:
        return
    if model.vision is None:
        raise PlannerError(f"--images-per-example {n}: {model.name} is a text-only model; give a multimodal one "
                           f"({', '.join(IMAGE_WRAPPERS)} wrappers, e.g. llava-1.5-7b, gemma-3-4b-it-multimodal)")
    v = model.vision
    if v.wrapper not in IMAGE_WRAPPERS:
        raise PlannerError(f"--images-per-example on {model.name} ({v.wrapper}): its image tokens depend on each "
                           "image's size (dynamic resolution) and its vision path (rot_pos_emb, cu_seqlens) reads "
                           "tensor values, which the simulator's fake tensors cannot give; image batches are planned "
                           f"for {', '.join(IMAGE_WRAPPERS)}")
    tokens = image_tokens(model, setup)
    if tokens >= setup.seq_len:
        raise PlannerError(f"--images-per-example {n} puts {n} x {v.image_tokens} = {tokens} image tokens in each "
                           f"example, at least --seq-len {setup.seq_len} (the language model's sequence, image "
                           f"tokens included): raise --seq-len above {tokens}")
    if setup.packing is not Packing.NONE:
        raise PlannerError(f"--packing {setup.packing.value} with --images-per-example: packed rows of image examples "
                           "are not modelled (axolotl and TRL's vision SFT pad them); use --padding or neither")
    if setup.objective is not Objective.SFT:
        raise PlannerError(f"--objective {setup.objective.value} with --images-per-example: image batches are planned "
                           "for supervised fine-tuning (sft) only")


def check(model: ModelSpec, rs: Resolved) -> None:
    """NoClosedForm for an image batch: the simulator, which runs the real wrapper on them, answers."""
    n = rs.setup.images_per_example
    if n and model.vision is not None:
        raise NoClosedForm(f"batches with images ({n} per example, {image_tokens(model, rs.setup)} image tokens) on "
                           f"{model.name} have no closed form yet")


def notes(model: ModelSpec, rs: Resolved) -> list[str]:
    n = rs.setup.images_per_example
    if not n or model.vision is None:
        return []
    return [f"{n} image(s) per example: {image_tokens(model, rs.setup)} of the {rs.setup.seq_len} positions are "
            f"image tokens, each image run through the {model.vision.tower.value} vision tower and projector"]
