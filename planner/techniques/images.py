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

Closed form (LLaVA, vision tower and projector without trainable parameters: `--lora-language-only`
or targets that name no vision-side linear; checked against the simulator: profiler/matrix.py
VISION2_MATRIX). Per micro-batch of n = batch x images_per_example images of P patches (N = P + 1
positions with CLIP's class token), vision width hv, text width H:
- with checkpointing and an adapter (the hook above), what autograd keeps until the backward
  reaches it: the token embeddings' output and the patch embedding's output, both leaves made to
  require grad and held by their AccumulateGrad nodes (b x s x H in the embedding's dtype; n x P x hv
  in the compute dtype); pre_layrnorm's input, mean and rstd; the input of every CLIP layer up to
  the projected feature layer (`vision_feature_layer` -2: 23 of 24), N x hv in the residual's dtype
  (the class and position embeddings' dtype); GELU's input in the projector (n x P x H, the linear's
  output dtype); masked_scatter's mask (b x s bools); under autocast over fp32 frozen weights, the
  16-bit copies of the projector's two weights (its matmuls save them; the CLIP layers' are dropped
  by their checkpoints);
- without checkpointing nothing on the vision side requires grad, so nothing is kept;
- until the loss (the forward's peak), the model output also holds the feature layer's and the last
  layer's hidden states, the projected features (image_outputs.pooler_output) and the batch's fp32
  pixel_values (n x 3 x image_size^2, as the image processor returns them);
- QLoRA: bitsandbytes casts a quantized linear's bias to the compute dtype in its first forward
  and keeps it [bitsandbytes/nn/modules.py Linear4bit.forward], so the vision linears' biases,
  upcast to fp32 by prepare_model_for_kbit_training, drop to 16 bit once images run.
The vision forward's own transients (attention, MLP) come before any language-model activation
exists and are far below the step's peak; they are not charged. The vision backward (after the
language model's) frees as it goes and is likewise below the peak.
Anything else on images (Gemma-3's bidirectional image masks, trained vision towers, full
fine-tuning, 8-bit bases, selective or attention-saving checkpointing, offloading, compile, fp8)
has no closed form: the simulator answers it (the real ForConditionalGeneration class on fake
pixel_values, profiler/images.py), said as `"source": "simulated"`.
"""
from __future__ import annotations

from ..specs.enums import Compile, Fp8, Objective, Packing, QuantType
from ..specs.enums import Component as C
from ..specs.enums import Phase
from ..specs.errors import NoClosedForm, PlannerError
from ..specs.model import ModelSpec
from ..specs.resolved import AdapterKind, Resolved
from ..specs.setup import ActivationOffload, Checkpointing, TrainingSetup
from ..specs.vision import VisionTower
from ..io.multimodal import clip_vision_config
from . import quantization
from .vision_adapters import idle_params

ALLOC_GRANULE = 512   # the CUDA caching allocator rounds every block up to 512 bytes [c10/cuda/CUDACachingAllocator.cpp kMinBlockSize]

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
    if v.wrapper == "llava_next":   # [modeling_llava_next.py LlavaNextModel.pack_image_features]
        raise PlannerError(f"--images-per-example on {model.name} (llava_next): LLaVA-NeXT's anyres tiling sets each "
                           "image's tokens by its size (a grid from image_grid_pinpoints, unpadded, plus newline "
                           "tokens), so no per-image count exists; image batches are planned for "
                           f"{', '.join(IMAGE_WRAPPERS)} (text-only batches of {model.name} are planned)")
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


def _why_no_closed_form(model: ModelSpec, rs: Resolved) -> str | None:
    s, v = rs.setup, model.vision
    if v.tower is not VisionTower.CLIP:
        return f"{v.wrapper}'s image batches (its bidirectional image attention blocks)"
    if idle_params(model, rs):
        return "a vision tower or projector with trainable parameters on image batches"
    if rs.adapters is None or rs.adapters.kind is not AdapterKind.LORA:
        return "this method on image batches"
    if rs.quantized is not None and rs.quantized.quant_type is QuantType.INT8:
        return "an 8-bit base on image batches (bitsandbytes keeps every int8 linear's input)"
    if not isinstance(v.config.get("vision_feature_layer", -2), int):
        return "a list of vision feature layers"
    if s.checkpointing not in (Checkpointing.NONE, Checkpointing.FULL) or s.ckpt_every > 1:
        return f"--ckpt-policy {s.checkpointing.value} / --ckpt-every on image batches"
    if s.activation_offload is not ActivationOffload.NONE or s.compile is not Compile.NONE \
            or s.fp8 is not Fp8.NONE or s.tiled_mlp or s.optimizer_in_backward:
        return "activation offloading, compile, fp8, tiled MLP or the optimizer in backward on image batches"
    return None


def check(model: ModelSpec, rs: Resolved) -> None:
    """NoClosedForm for an image batch the closed form does not cover: the simulator, which runs the
    real wrapper on them, answers."""
    n = rs.setup.images_per_example
    if not n or model.vision is None:
        return
    why = _why_no_closed_form(model, rs)
    if why:
        raise NoClosedForm(f"{why} on {model.name} ({n} image(s) per example, {image_tokens(model, rs.setup)} "
                           "image tokens) has no closed form")


def _alloc(nbytes: float) -> int:
    return -(-int(nbytes) // ALLOC_GRANULE) * ALLOC_GRANULE


def _clip(model: ModelSpec) -> tuple[int, int, int, int, int, int]:
    """(hidden, layers, patches, image_size, projector in, projector layers on the loss path) of LLaVA's CLIP."""
    cfg = model.vision.config
    given = cfg.get("vision_config")
    vc = clip_vision_config(given)   # the reader's defaults
    hv, layers, size = int(vc["hidden_size"]), int(vc["num_hidden_layers"]), int(vc["image_size"])
    patches = (size // int(vc["patch_size"])) ** 2
    # hidden_states[i] is layer i's input (i < layers), [layers] the last output: the layers whose
    # input the projected feature depends on
    used = int(cfg.get("vision_feature_layer", -2)) % (layers + 1)
    return hv, layers, patches, size, int(vc.get("num_channels") or 3), used


def extra_bytes(model: ModelSpec, rs: Resolved) -> tuple[int, int, int]:
    """(forward, backward, weights) bytes an image batch adds to the text-only step's phases: the
    forward's at the loss, the backward's throughout the language model's backward, and the change
    of the weights (QLoRA's biases cast to 16 bit)."""
    s, v = rs.setup, model.vision
    if not s.images_per_example or v is None:
        return 0, 0, 0
    b, seq, H = s.batch_size, s.seq_len, model.hidden
    n = b * s.images_per_example
    hv, layers, patches, size, channels, used = _clip(model)
    tokens = patches + 1                                     # CLIP's class token
    r_v, e, r_emb = rs.frozen.bytes, rs.compute.bytes, rs.residual.bytes
    r_p = quantization.base_linear_out_bytes(rs)             # the projector linears' output dtype
    hidden_state = n * tokens * hv * r_v
    kept = 0
    if s.checkpointing is not Checkpointing.NONE and s.peft:   # enable_input_require_grads' hooks
        kept += b * seq * H * r_emb + n * patches * hv * e         # the two leaves
        kept += hidden_state + 2 * _alloc(n * tokens * 4)          # pre_layrnorm: input, mean, rstd
        kept += used * hidden_state                                # checkpointed layers' inputs
        kept += n * patches * H * r_p                              # GELU's input
        kept += _alloc(b * seq)                                    # masked_scatter's mask
        if rs.autocast and rs.quantized is None and rs.frozen.bytes != e:   # saved 16-bit weight copies
            kept += sum(lin.in_features * lin.out_features for lin in v.linears if lin.part == "projector") * e
    forward = kept + (layers + 1 - used) * hidden_state + n * patches * H * r_p + n * channels * size * size * 4
    weights = 0
    if rs.quantized is not None and rs.frozen.bytes > e:
        biases = sum(lin.count * lin.out_features for lin in v.linears if lin.bias)
        weights = -biases * (rs.frozen.bytes - e)
    return forward, kept, weights


def with_images(model: ModelSpec, rs: Resolved, phases: dict) -> dict:
    """The text-only step's phases plus what an image batch adds (extra_bytes)."""
    forward, backward, weights = extra_bytes(model, rs)
    if not (forward or backward or weights):
        return phases
    out = {p: dict(c) for p, c in phases.items()}
    out[Phase.FORWARD][C.ACTIVATIONS] += forward
    out[Phase.BACKWARD][C.ACTIVATIONS] += backward
    for comps in out.values():
        comps[C.WEIGHTS] += weights
    return out


def notes(model: ModelSpec, rs: Resolved) -> list[str]:
    n = rs.setup.images_per_example
    if not n or model.vision is None:
        return []
    out = [f"{n} image(s) per example: {image_tokens(model, rs.setup)} of the {rs.setup.seq_len} positions are "
           f"image tokens, each image run through the frozen {model.vision.tower.value} vision tower and projector"]
    if rs.setup.checkpointing is not Checkpointing.NONE:
        out.append("gradient checkpointing with an adapter: transformers' enable_input_require_grads hooks the vision "
                   "tower's patch embedding too, so its checkpointed layers keep their inputs until the backward")
    return out
