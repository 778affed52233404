"""Level 2: one module per training technique, each owning its parameter counts, saved bytes,
state bytes and FLOPs. Imports planner.specs and planner.io.

| module | technique | owns |
|---|---|---|
| lora | LoRA adapters (peft) | trainable parameters, saved inputs, autocast copies of fp32 adapters, FLOP weights |
| dora | DoRA (LoRA's use_dora) | magnitude vectors, the weight-norm rescale's saved outputs |
| outer | LoRA on embed_tokens / lm_head, modules_to_save copies | their parameters, saved inputs, copies |
| ia3 | (IA)^3 (peft IA3Config) | scaling vectors, the saved inputs/outputs they scale |
| prompt | prompt tuning (peft PromptTuningConfig) | the virtual tokens' embedding (the step runs on s + n) |
| quantization | bitsandbytes 4-bit / 8-bit frozen base | stored bytes, output dtype, 8-bit ctx inputs, MoE note |
| optimizers | AdamW (foreach/fused), 8-bit/paged, Adafactor, SGD, Lion | state, step temporaries, bytes streamed |
| loss | HF fp32-logits loss, chunked fused linear cross-entropy | loss bytes per phase |
| attention | SDPA/flash, eager | kernel saves, score FLOPs, fallbacks |
| precision | autocast (`*-mixed`) | 16-bit weight copies |
| checkpointing | full activation checkpointing | saved bytes per layer, recompute |

The adapter kinds are registered in ADAPTERS: the step builder asks the setup's adapter module
for its terms.
"""
from ..specs.resolved import AdapterKind
from . import ia3, lora, prompt

ADAPTERS = {AdapterKind.LORA: lora, AdapterKind.IA3: ia3, AdapterKind.PROMPT_TUNING: prompt}
