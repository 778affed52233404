"""QLoRA with the real bitsandbytes, for real devices (`--device cuda`, `--device cpu`).

The module surgery is the same as the stand-in's (profiler/kernels/bnb_linear.py): transformers' own
bitsandbytes quantizer replaces the linears on the meta model. Then, layer by layer, each
quantized weight is created with random values in the checkpoint dtype on the host and handed
to bitsandbytes, which quantizes it as it moves to the device (`Params4bit.to` ->
`_quantize`; `Int8Params.to`), exactly what `from_pretrained(quantization_config=...)` does
with a checkpoint's tensors. Everything else stays on meta for build.materialize().
"""
from __future__ import annotations

import bitsandbytes as bnb
import torch
from peft import prepare_model_for_kbit_training
from torch import nn
from transformers.quantizers.auto import AutoHfQuantizer

from gpuplan.planner import Checkpointing, TrainingSetup

from .kernels.bnb_linear import bnb_config


def quantize_real(lm: nn.Module, setup: TrainingSetup, device: torch.device) -> nn.Module:
    """from_pretrained(quantization_config=...) [+ prepare_model_for_kbit_training], real weights."""
    dtype = lm.dtype
    quantizer = AutoHfQuantizer.from_config(bnb_config(setup), pre_quantized=False)
    quantizer.preprocess_model(lm, dtype=dtype, device_map=None)   # replace_with_bnb_linear, on meta
    for module in lm.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            old = module.weight
            data = torch.empty(old.shape, dtype=dtype).normal_(0.0, 0.02)
            module.weight = bnb.nn.Params4bit(
                data, requires_grad=False, quant_type=old.quant_type, compress_statistics=old.compress_statistics,
                blocksize=old.blocksize, quant_storage=old.quant_storage, module=module).to(device)
        elif isinstance(module, bnb.nn.Linear8bitLt):
            data = torch.empty(module.weight.shape, dtype=dtype).normal_(0.0, 0.02)
            module.weight = bnb.nn.Int8Params(data, requires_grad=False, has_fp16_weights=False).to(device)
    lm.hf_quantizer = quantizer
    quantizer.postprocess_model(lm)
    if setup.precision.autocast:
        lm = prepare_model_for_kbit_training(
            lm, use_gradient_checkpointing=setup.checkpointing is not Checkpointing.NONE,
            gradient_checkpointing_kwargs={"use_reentrant": False})
    return lm
