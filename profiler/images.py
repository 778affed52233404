"""Batches with images for a multimodal wrapper (planner/techniques/images.py): the image tokens the
processor writes into input_ids, and the pixel_values (and Gemma-3's token_type_ids) it returns.

- LLaVA (LlavaProcessor): `<image>` expanded to (image_size // patch)^2 image tokens (+1 with
  vision_feature_select_strategy "full"); pixel_values (images, 3, image_size, image_size)
  [transformers 5.24 models/llava/processing_llava.py _get_num_multimodal_tokens].
- Gemma-3 (Gemma3Processor): each image becomes "\\n\\n<start_of_image>" + image_seq_length (256)
  image soft tokens + "<end_of_image>\\n\\n"; token_type_ids are 1 on the image soft tokens, which the
  model turns into a bidirectional block per image [models/gemma3/processing_gemma3.py,
  modeling_gemma3.py get_block_sequence_ids_for_mask].

Under FakeTensorMode one host-side check cannot run: the wrappers' get_placeholder_mask compares the
count of image tokens in input_ids with the image features (`torch_compilable_check(n_image_tokens *
hidden == image_features.numel())`), and a fake tensor has no value to compare. The batch below is
built so that the counts agree, so `fake_placeholder_check` skips that one comparison when its
condition is a fake tensor and runs every other check as before.
"""
from __future__ import annotations

import contextlib
import importlib
from typing import Iterator

import torch
from torch._subclasses.fake_tensor import FakeTensor

from gpuplan.planner import TrainingSetup

# the wrappers whose get_placeholder_mask calls transformers' torch_compilable_check
_MODULES = ("transformers.models.llava.modeling_llava", "transformers.models.gemma3.modeling_gemma3")


def image_tokens(config) -> int:
    """Positions one image takes in the language model's sequence, as the processor counts them."""
    if config.model_type == "gemma3":
        return int(config.mm_tokens_per_image)
    v = config.vision_config
    full = getattr(config, "vision_feature_select_strategy", "default") == "full"
    return (int(v.image_size) // int(v.patch_size)) ** 2 + (1 if full else 0)


def add_images(batch: dict[str, torch.Tensor], config, setup: TrainingSetup) -> None:
    """Writes `setup.images_per_example` images into every row of `batch` (in place): their image
    tokens after the first position (the BOS), pixel_values for each, token_type_ids for Gemma-3."""
    n = setup.images_per_example
    ids = batch["input_ids"]
    rows = ids.shape[0]
    first, last = 1, 1 + n * image_tokens(config)
    ids[:, first:last] = config.image_token_id
    v = config.vision_config
    size = int(v.image_size)
    batch["pixel_values"] = torch.randn(rows * n, int(getattr(v, "num_channels", 3)), size, size, device=ids.device)
    if config.model_type == "gemma3":
        types = torch.zeros_like(ids)
        types[:, first:last] = 1
        batch["token_type_ids"] = types
    labels = ids.clone()   # the collators mask image tokens out of the loss [trl/trainer/sft_trainer.py]
    labels[:, first:last] = -100
    batch["labels"] = labels


@contextlib.contextmanager
def fake_placeholder_check() -> Iterator[None]:
    """transformers' torch_compilable_check in the wrappers' modules, skipping a condition that is a
    fake tensor (no value to read; the batch's counts agree by construction), every other one run."""
    saved = []
    for name in _MODULES:
        module = importlib.import_module(name)
        original = module.torch_compilable_check

        def check(cond, msg, error_type=ValueError, _original=original):
            if isinstance(cond, FakeTensor):
                return None
            return _original(cond, msg, error_type)

        saved.append((module, original))
        module.torch_compilable_check = check
    try:
        yield
    finally:
        for module, original in saved:
            module.torch_compilable_check = original
