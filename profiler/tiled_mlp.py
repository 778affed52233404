"""axolotl's TiledMLP in the simulated step: its own autograd Function (axolotl/monkeypatch/tiled_mlp/
base.py, the file `pip install axolotl --no-deps` ships; it imports only torch), wired to each decoder
layer's MLP as axolotl's `patch_tiled_mlp` wires it to the MLP class (monkeypatch/tiled_mlp/patch.py
tiled_mlp_forward: shards from `tiled_mlp_num_shards`, else ceil(seqlen / 32768); the MLP's trainable
parameters as compute_params; the non-DeepSpeed `TiledMLP`)."""
from __future__ import annotations

import importlib.util
import math
import types
from pathlib import Path

import torch

from gpuplan.planner import PlannerError, TrainingSetup
from gpuplan.planner.techniques.tiled_mlp import TOKENS_PER_SHARD


def tiled_mlp_function() -> type:
    """axolotl's TiledMLP autograd Function, loaded from its file: axolotl's package __init__ chain pulls
    its whole training stack (evaluate, datasets...), which the simulator does not need."""
    spec = importlib.util.find_spec("axolotl")
    if spec is None or not spec.submodule_search_locations:
        raise PlannerError("--tiled-mlp is simulated with axolotl's own TiledMLP: pip install axolotl --no-deps")
    path = Path(list(spec.submodule_search_locations)[0]) / "monkeypatch" / "tiled_mlp" / "base.py"
    module_spec = importlib.util.spec_from_file_location("_axolotl_tiled_mlp_base", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.TiledMLP


def apply_tiled_mlp(lm: torch.nn.Module, setup: TrainingSetup) -> None:
    """Every decoder layer's `mlp` runs through TiledMLP, as axolotl's class patch makes it."""
    tiled = tiled_mlp_function()
    for layer in lm.base_model.model.model.layers if hasattr(lm, "peft_config") else lm.model.layers:
        mlp = layer.mlp
        inner = type(mlp).forward                 # use_original_mlp (axolotl's default): the family's own forward

        def forward(self, x, inner=inner):
            shards = setup.tiled_mlp_shards or max(1, math.ceil(x.shape[-2] / TOKENS_PER_SHARD))
            params = [p for p in self.parameters() if p.requires_grad]
            return tiled.apply(inner, self, x, shards, params)

        mlp.forward = types.MethodType(forward, mlp)
