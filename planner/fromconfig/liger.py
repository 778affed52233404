"""The Liger Kernel switches of the training configs -> the `liger` / `liger_kernels` / `liger_before_load`
options (app/options.py; planner/techniques/liger.py models the kernels).

- HF `TrainingArguments.use_liger_kernel` / TRL: `apply_liger_kernel(model, liger_kernel_config)` on the
  built model [transformers 5.24 integrations/liger.py; trainer.py L1494], i.e.
  `_apply_liger_kernel_to_instance(model, **liger_kernel_config)`: the family's defaults (rope, rms_norm,
  swiglu/geglu, fused_linear_cross_entropy on; cross_entropy off) unless the dict says otherwise (both
  cross_entropy and fused_linear_cross_entropy on is Liger's own assertion error, refused by the options)
  [Liger-Kernel v0.8.2 transformers/monkey_patch.py].
- axolotl's LigerPlugin.pre_model_load [src/axolotl/integrations/liger/plugin.py @ 02063210]: calls the
  family's apply function before the model is built, with rope=liger_rope, rms_norm=liger_rms_norm,
  swiglu or geglu=liger_glu_activation (liger_swiglu its deprecated name, args.py), layer_norm=liger_layer_norm,
  cross_entropy / fused_linear_cross_entropy: each off unless set (LigerArgs defaults None).
- LLaMA-Factory `enable_liger_kernel` [src/llamafactory/model/model_utils/liger_kernel.py @ 9174a7a8,
  called by model/loader.py load_model before the model is built]: the family's apply function with its
  defaults for stage pt/sft; other stages swap the fused linear cross-entropy for `cross_entropy=True`.
"""
from __future__ import annotations

from typing import Any

from .common import Options
from .rules import on

# liger_kernel_config keys an apply_liger_kernel_to_<family> of the families gpuplan reads takes, with its
# default [monkey_patch.py]; layer_norm is in none of their signatures (filtered out: no effect)
_HF_DEFAULTS = {"rope": True, "rms_norm": True, "swiglu": True, "geglu": True, "fused_linear_cross_entropy": True,
                "cross_entropy": False, "layer_norm": True}
_NAMES = {"fused_linear_cross_entropy": "flce"}


def hf(kc: Any, o: Options) -> None:
    """`use_liger_kernel: true` with its `liger_kernel_config` (a dict or None)."""
    if not kc:
        o.use("use_liger_kernel", "liger", True)
        return
    rep = o.report
    if not isinstance(kc, dict):
        rep.refuse("liger_kernel_config", kc, "a liger_kernel_config that is not a dict", "inline it as a dict")
        return
    unknown = sorted(set(kc) - set(_HF_DEFAULTS))
    if unknown:
        rep.refuse("liger_kernel_config", ", ".join(unknown), "Liger kernels gpuplan does not model",
                   "remove them to plan the rest")
    names = [_NAMES.get(k, k) for k, default in _HF_DEFAULTS.items()
             if k != "layer_norm" and on(kc.get(k, default))]
    o.use("liger_kernel_config", "liger_kernels", ",".join(names))


_AXOLOTL = {"liger_rope": "rope", "liger_rms_norm": "rms_norm", "liger_glu_activation": "swiglu,geglu",
            "liger_swiglu": "swiglu,geglu", "liger_fused_linear_cross_entropy": "flce",
            "liger_cross_entropy": "cross_entropy"}


def axolotl(d: dict[str, Any], todo: set[str], o: Options) -> None:
    """The LigerPlugin's keys of an axolotl config."""
    names = [_AXOLOTL[k] for k in _AXOLOTL if k in todo and on(d[k])]
    if not names:
        return
    keys = [k for k in _AXOLOTL if k in todo and on(d[k])]
    for key in keys:
        o.use(key, "liger_kernels", ",".join(names))
    if set(names) - {"flce", "cross_entropy"}:   # per-layer kernels: the classes are patched before load
        o.use(keys[0], "liger_before_load", True)


def llamafactory(o: Options) -> None:
    """`enable_liger_kernel: true` at stage sft: the family's defaults, patched before the model is built."""
    o.use("enable_liger_kernel", "liger", True)
    o.use("enable_liger_kernel", "liger_before_load", True)
