"""The torch.compile switches of the training configs -> the `compile` option (app/options.py;
planner/techniques/compile.py models it).

- HF `TrainingArguments` / TRL: `torch_compile`, switched on by `torch_compile_backend` or
  `torch_compile_mode` too; the backend defaults to inductor off HPU/Neuron [transformers 5.24
  training_args.py __post_init__ L1621-1629]; accelerate then calls `torch.compile(model, backend=, mode=)`
  on the whole model [accelerate 1.15 accelerator.py prepare_model L2068-2073].
- accelerate's launcher config: `dynamo_config.dynamo_backend` / `dynamo_mode`, the same call
  [accelerate 1.15 commands/config/cluster.py; utils/launch.py ACCELERATE_DYNAMO_*].
- axolotl: `torch_compile`, `torch_compile_backend`, `torch_compile_mode` are handed to HF's
  TrainingArguments as they are [src/axolotl/core/builders/base.py _configure_torch_compile].

Modes "reduce-overhead" and "max-autotune" capture CUDA graphs, whose static memory pools are not
modelled: refused; "default" and "max-autotune-no-cudagraphs" run the same partitioner.
"""
from __future__ import annotations

from typing import Any

from .common import Options
from .rules import on, show

MODES = (None, "default", "max-autotune-no-cudagraphs")


def read(switch: str, value: Any, backend: Any, mode: Any, o: Options,
         keys: tuple[str, str] = ("torch_compile_backend", "torch_compile_mode")) -> None:
    """`switch: value` with its backend and mode (their config keys `keys`) -> --compile inductor, or one
    refusal naming the key."""
    backend_key, mode_key = keys
    rep = o.report
    if not (on(value) or backend or mode):
        if value is not None:   # off: worded as before it was modelled
            rep.set(switch, f"{show(value)}: as gpuplan plans")
        return
    if backend not in (None, "inductor"):
        rep.refuse(backend_key, backend, "a torch.compile backend other than inductor, whose saved set "
                   "was not counted", "use inductor")
    elif mode not in MODES:
        rep.refuse(mode_key, mode, "CUDA graphs keep static memory pools gpuplan does not model",
                   "use default or max-autotune-no-cudagraphs")
    else:
        o.use(switch if on(value) else (backend_key if backend else mode_key), "compile", "inductor")
