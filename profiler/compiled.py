"""What `torch.compile` saves for backward: AOTAutograd's partitioner run on the real HF model's
fake-tensor graph, its saved tensors counted by storage.

torch.compile's inductor backend traces the joint forward/backward graph with inductor's
decompositions and splits it with `min_cut_rematerialization_partition(compiler="inductor")`
[torch 2.13 torch/_inductor/compile_fx.py partition_fn]; the forward graph's outputs beyond the
model's own are what autograd keeps for backward. `aot_eager_decomp_partition` [torch/_dynamo/
backends/debugging.py] runs exactly that with a no-op compiler, which needs no C++ compiler or GPU:
this module does the same through `aot_function` on fake tensors. Inductor's later fusion changes
temporaries, not the saved set. The default partitioner (`aot_eager_default_partitioner`) saves
what eager autograd saves: the two are returned side by side.

Saved tensors are counted by storage (views of one another counted once); the graph's inputs
(parameters, input ids, RoPE's inv_freq) are left out, and so are tensors computed from parameters
alone (autocast's 16-bit weight copies, counted apart in `weight_copies`), which do not scale with tokens.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from gpuplan.planner import ModelSpec, TrainingSetup
from gpuplan.planner.specs.enums import Compile
from gpuplan.planner.io.architectures import model_from_config
from gpuplan.planner.specs.resolved import resolve
from gpuplan.planner.techniques import compile as compiled

from .build import build_model, materialize
from .dtypes import TORCH_DTYPES
from .kernels.attention import packed_sequences


@dataclass(frozen=True)
class SavedSet:
    """Bytes the forward graph keeps for backward, by storage."""

    activations: int        # tensors computed from the batch (scale with tokens)
    weight_copies: int      # tensors computed from parameters only (autocast's casts)
    tensors: tuple[tuple[str, tuple[int, ...], str, int], ...]   # (node, shape, dtype, bytes) of each activation


def truncated(model: ModelSpec, layers: int) -> ModelSpec:
    """`model` with its first `layers` decoder layers only, read again from its config (planner and profiler alike)."""
    return model_from_config({**model.hf_config, "num_hidden_layers": layers}, name=f"{model.name}[:{layers}]")


def _partition(name: str):
    from functorch.compile import default_partition, min_cut_rematerialization_partition   # lazy: AOTAutograd only to count

    if name == "inductor":
        return functools.partial(min_cut_rematerialization_partition, compiler="inductor")
    return default_partition


def saved_for_backward(model: ModelSpec, setup: TrainingSetup, partitioner: str = "inductor") -> SavedSet:
    """The tensors the forward graph of one training step of `model` (loss included) saves for
    backward, under `partitioner` ("inductor": torch.compile's; "default": what eager saves)."""
    from functorch.compile import aot_function, make_boxed_func   # lazy: AOTAutograd only to count
    from torch._inductor.compile_fx import select_decomp_table    # lazy: inductor's tables only to count

    lm, _ = build_model(model, setup, torch.device("meta"))   # the real SDPA: traceable, unlike the stand-in
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    with fake:
        materialize(lm, torch.device("cpu"))
    params = dict(lm.named_parameters())
    state = {**params, **dict(lm.named_buffers())}
    names = list(state)
    graphs: dict[str, torch.fx.GraphModule] = {}

    def forward_compiler(gm, _inputs):
        graphs["fw"] = gm
        return make_boxed_func(gm)

    autocast = (torch.autocast("cpu", dtype=TORCH_DTYPES[setup.recipe.compute]) if setup.recipe.autocast
                else contextlib.nullcontext())

    def step(tensors, ids):
        with autocast:
            return torch.func.functional_call(lm, dict(zip(names, tensors)), (ids,), {"labels": ids}).loss

    kwargs = {"decompositions": select_decomp_table()} if partitioner == "inductor" else {}
    compiled = aot_function(step, fw_compiler=forward_compiler, bw_compiler=make_boxed_func,
                            partition_fn=_partition(partitioner), **kwargs)
    with fake, packed_sequences(False):
        ids = torch.zeros(setup.batch_size, setup.seq_len, dtype=torch.long)
        compiled([state[n] for n in names], ids)
    return _count(graphs["fw"], n_params=len(params))


def _count(gm: torch.fx.GraphModule, n_params: int) -> SavedSet:
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    inputs = {id(n.meta["val"].untyped_storage()) for n in placeholders if isinstance(n.meta.get("val"), torch.Tensor)}
    from_params: set[torch.fx.Node] = set(placeholders[:n_params])
    for node in gm.graph.nodes:   # nodes whose every input derives from parameters alone
        if node.op == "call_function" and node.all_input_nodes and all(i in from_params for i in node.all_input_nodes):
            from_params.add(node)
    out = next(n for n in gm.graph.nodes if n.op == "output").args[0]
    seen: set[int] = set()
    acts = copies = 0
    rows = []
    for node in out[1:]:   # out[0] is the loss
        v = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
        if not isinstance(v, torch.Tensor):
            continue
        storage = v.untyped_storage()
        if id(storage) in inputs or id(storage) in seen:
            continue
        seen.add(id(storage))
        if node in from_params:
            copies += storage.nbytes()
        else:
            acts += storage.nbytes()
            rows.append((node.name, tuple(v.shape), str(v.dtype).removeprefix("torch."), storage.nbytes()))
    return SavedSet(acts, copies, tuple(rows))


def per_layer(model: ModelSpec, setup: TrainingSetup, partitioner: str = "inductor") -> tuple[float, float]:
    """(saved bytes per token of one decoder layer, saved bytes per token outside the layers), from
    the difference of a 2-layer and a 1-layer model's saved sets (a whole-model compile's cut)."""
    T = setup.batch_size * setup.seq_len
    one = saved_for_backward(truncated(model, 1), setup, partitioner).activations
    two = saved_for_backward(truncated(model, 2), setup, partitioner).activations
    return (two - one) / T, (2 * one - two) / T


def planned_saved_bytes(model: ModelSpec, setup: TrainingSetup) -> int:
    """The planner's closed form for the same count (planner/techniques/compile.py): the layers, the
    final norm and the first layer's recompute, and the loss; the input ids (a graph input) left out."""
    setup = setup.with_(compile=Compile.INDUCTOR) if setup.compile is Compile.NONE else setup
    rs = resolve(model, setup)
    compiled.check(model, setup, rs)
    T, s = setup.batch_size * setup.seq_len, setup.seq_len
    per_token = model.n_layers * compiled.layer_bytes(model, rs, s) + compiled.outside_bytes(model, rs) - 8
    return int(T * per_token) + compiled.loss_bytes(model, rs, T, s)[1]


def compare(model: ModelSpec, setup: TrainingSetup, layers: int) -> dict:
    """Planner vs partitioner on `model` cut to `layers` decoder layers: saved activation bytes
    and the signed error in percent of the partitioner's count."""
    m = truncated(model, layers)
    counted = saved_for_backward(m, setup).activations
    planned = planned_saved_bytes(m, setup)
    return {"model": model.name, "layers": layers, "setup": setup.to_dict(m), "partitioner_bytes": counted,
            "estimate_bytes": planned, "error_pct": round(100 * (planned - counted) / counted, 3)}


NO_CKPT = {"checkpointing": "none"}
ALL_LINEAR = {"targets": ["all-linear"]}
# (preset, decoder layers kept, setup overrides): truncated models, batch 2 x 128 tokens
CASES: tuple[tuple[str, int, dict], ...] = (
    ("qwen-2.5-0.5b", 4, {"precision": "bf16-mixed"}),
    ("qwen-2.5-0.5b", 4, {"precision": "bf16-true"}),
    ("qwen-2.5-0.5b", 4, {"precision": "fp32"}),
    ("qwen-2.5-0.5b", 4, {"precision": "fp16-mixed", "attention": "flash"}),
    ("qwen-2.5-0.5b", 4, {"method": "lora", "precision": "bf16-mixed"}),
    ("qwen-2.5-0.5b", 4, {"method": "lora", "precision": "bf16-mixed", "lora": ALL_LINEAR}),
    ("qwen-2.5-0.5b", 4, {"method": "lora", "precision": "bf16-true", "lora": ALL_LINEAR}),
    ("llama-3.2-1b", 4, {"precision": "bf16-mixed"}),
    ("llama-3.2-1b", 4, {"precision": "bf16-true"}),
    ("llama-3.2-1b", 4, {"method": "lora", "precision": "bf16-mixed"}),
    ("llama-3.2-1b", 4, {"method": "lora", "precision": "bf16-true", "lora": {"r": 16, **ALL_LINEAR}}),
    ("qwen-2.5-1.5b", 2, {"precision": "bf16-true"}),
    ("mistral-7b-v0.3", 2, {"precision": "bf16-mixed"}),
    ("mistral-7b-v0.3", 2, {"method": "lora", "precision": "bf16-true", "lora": ALL_LINEAR}),
)


def case_setup(overrides: dict) -> TrainingSetup:
    return TrainingSetup.from_dict({**NO_CKPT, "batch_size": 2, "seq_len": 128, **overrides, "compile": "inductor"})
