"""QLoRA with the real bitsandbytes, for real devices (`--device cuda`, `--device cpu`).

The module surgery is the same as the stand-in's (profiler/quantize.py): transformers' own
bitsandbytes quantizer replaces the linears on the meta model. Then, layer by layer, each
quantized weight is created with random values in the checkpoint dtype on the host and handed
to bitsandbytes, which quantizes it as it moves to the device (`Params4bit.to` ->
`_quantize`; `Int8Params.to`), exactly what `from_pretrained(quantization_config=...)` does
with a checkpoint's tensors. Everything else stays on meta for build.materialize().
"""
from __future__ import annotations

import torch
from torch import nn

from gpuplan.planner.specs.setup import Checkpointing, TrainingSetup


def quantize_real(lm: nn.Module, setup: TrainingSetup, device: torch.device) -> nn.Module:
    """from_pretrained(quantization_config=...) [+ prepare_model_for_kbit_training], real weights."""
    import bitsandbytes as bnb
    from transformers.quantizers.auto import AutoHfQuantizer

    from .quantize import bnb_config

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
        from peft import prepare_model_for_kbit_training

        lm = prepare_model_for_kbit_training(
            lm, use_gradient_checkpointing=setup.checkpointing is Checkpointing.FULL,
            gradient_checkpointing_kwargs={"use_reentrant": False})
    return lm


def quant_state_tensors(lm: nn.Module) -> list[torch.Tensor]:
    """Tensors bitsandbytes keeps beside quantized weights (absmax, code, nested state, SCB): held on
    the device with the weights but neither parameters nor buffers."""
    out: list[torch.Tensor] = []
    for p in lm.parameters():
        qs = getattr(p, "quant_state", None)
        for state in (qs, getattr(qs, "state2", None)):
            if state is not None:
                out.extend(v for v in vars(state).values() if isinstance(v, torch.Tensor))
        scb = getattr(p, "SCB", None)
        if isinstance(scb, torch.Tensor):
            out.append(scb)
    return out
