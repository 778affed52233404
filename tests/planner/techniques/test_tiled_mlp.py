"""axolotl's tiled MLP (planner/techniques/tiled_mlp.py): saved bytes and the tiled backward, derived by hand
from TiledMLP.forward/backward (axolotl @ 067b021c monkeypatch/tiled_mlp/base.py) on Llama-3.2-1B: hidden
2048, intermediate 8192, 16 layers; bf16 autocast over fp32 weights, so an fp32 residual stream (r = 4)
and bf16 linear outputs (o = 2)."""
from __future__ import annotations

import pytest

from gpuplan.planner.io.catalog import resolve_model
from gpuplan.planner.memory.estimate import estimate
from gpuplan.planner.memory.pieces import terms
from gpuplan.planner.specs.enums import Attention, Loss, Method
from gpuplan.planner.specs.errors import PlannerError
from gpuplan.planner.specs.parallel import Fsdp, ParallelSpec
from gpuplan.planner.specs.setup import Checkpointing, LigerSpec, LoraSpec, TrainingSetup
from gpuplan.planner.techniques import tiled_mlp

MiB = 2**20
H, I = 2048, 8192


@pytest.fixture(scope="module")
def m():
    return resolve_model("llama-3.2-1b")


def _setup(method=Method.FULL, seq=16384, ckpt=Checkpointing.FULL, **kw) -> TrainingSetup:
    return TrainingSetup(method=method, seq_len=seq, batch_size=1, attention=Attention.FLASH, loss=Loss.CHUNKED,
                         checkpointing=ckpt, **kw)


def _per_layer(m, setup):
    return terms(m, setup.for_model(m))[2].per_layer


def test_full_fine_tuning_saves_only_the_mlp_input(m):
    # untiled: gate, act output, up (3 o I) and down_proj's input (o I); the norm output's bf16 casts for gate
    # and up (2 e H) go too; TiledMLP saves x itself, fp32 (4 H): 8192 - 8192 - 65536 bytes per token
    s = _setup()
    assert _per_layer(m, s.with_(tiled_mlp=True)) - _per_layer(m, s) == 4 * H - 2 * 2 * H - 4 * 2 * I


def test_lora_saves_the_input_whatever_is_adapted(m):
    qv = _setup(Method.LORA)
    assert _per_layer(m, qv.with_(tiled_mlp=True)) - _per_layer(m, qv) == 4 * H - 3 * 2 * I
    # adapters on gate/up/down save their inputs without tiling; under TiledMLP's no_grad forward nothing
    every = qv.with_(lora=LoraSpec(targets=("q_proj", "v_proj", "gate_proj", "up_proj", "down_proj")))
    assert _per_layer(m, every) > _per_layer(m, qv)
    assert _per_layer(m, every.with_(tiled_mlp=True)) == _per_layer(m, qv.with_(tiled_mlp=True))


def test_tiles_follow_axolotl_default(m):
    rs = terms(m, _setup(tiled_mlp=True).for_model(m))[0]
    assert tiled_mlp.shards(rs, 16384) == 1 and tiled_mlp.shards(rs, 131072) == 4 and tiled_mlp.shards(rs, 32769) == 2
    rs8 = terms(m, _setup(tiled_mlp=True, tiled_mlp_shards=8).for_model(m))[0]
    assert tiled_mlp.shards(rs8, 16384) == 8


def test_backward_by_hand(m):
    rs = terms(m, _setup(tiled_mlp=True).for_model(m))[0]
    T = 131072
    # x_grad (fp32, T H), the fp32 accumulators of gate/up/down (3 H I x 4), one tile of T / 4 tokens
    # recomputed outside autocast, so in fp32: gate, act output, up and down's input (4 x 4 I), and its
    # backward workspace (2 x 4 H + 2 x 4 I)
    tile = T // 4 * (4 * 4 * I + 2 * 4 * H + 2 * 4 * I)
    assert tiled_mlp.backward_bytes(m, rs, T, T, 4) == T * 4 * H + 3 * H * I * 4 + tile


def test_checkpointed_lora_at_one_tile_recomputes_the_mlp_in_fp32(m):
    # checkpointing, one tile of 16384 tokens: the recomputed layer saves 40960 bytes per token less and
    # holds one layer's MLP weight copies less (gate's and up's, 2 H I x 2: the eager MLP has released
    # down_proj's by its peak), but TiledMLP's backward, outside autocast, adds x_grad (4 H), the fp32 tile
    # (3 x 4 I saved, 2 x 4 H + 2 x 4 I workspace) in place of the eager MLP's MulBackward gradients (3 x 2 I;
    # the layer output's fp32 gradient and the reused fp32 input cancel, memory/layers.py mlp_backward_bytes);
    # at 131072 tokens (4 tiles) it wins
    lora = _setup(Method.LORA)
    per_token = -40960 + 4 * H + (3 * 4 * I + 2 * 4 * H + 2 * 4 * I) - 3 * 2 * I
    assert estimate(m, lora.with_(tiled_mlp=True)).peak_allocated_bytes - estimate(m, lora).peak_allocated_bytes \
        == 16384 * per_token - 2 * H * I * 2
    long = _setup(Method.LORA, seq=131072)
    assert estimate(m, long.with_(tiled_mlp=True)).peak_allocated_bytes < estimate(m, long).peak_allocated_bytes


def test_without_checkpointing_every_layer_saves_less(m):
    s = _setup(ckpt=Checkpointing.NONE)
    tiled = estimate(m, s.with_(tiled_mlp=True))
    assert tiled.peak_allocated_bytes < estimate(m, s).peak_allocated_bytes
    assert any("tiled MLP" in n and "axolotl's TiledMLP in the simulated step" in n for n in tiled.notes)


@pytest.mark.parametrize("model, setup, match", [
    ("gpt2", _setup(tiled_mlp=True), "Llama-style gated dense MLP"),
    ("mixtral-8x7b", _setup(Method.LORA, tiled_mlp=True), "Llama-style gated dense MLP"),
    ("llama-3.2-1b", _setup(tiled_mlp=True, liger=LigerSpec(swiglu=True)), "Liger's SwiGLU"),
    ("llama-3.2-1b", _setup(tiled_mlp=True, parallel=ParallelSpec(gpus=2, fsdp=Fsdp.FULL)), "one GPU only"),
    ("llama-3.2-1b", _setup(tiled_mlp_shards=4), "with --tiled-mlp"),
])
def test_refusals(model, setup, match):
    with pytest.raises(PlannerError, match=match):
        estimate(resolve_model(model), setup)


def test_setup_dict_round_trip():
    s = _setup(tiled_mlp=True, tiled_mlp_shards=4)
    d = s.to_dict()
    assert d["tiled_mlp"] is True and d["tiled_mlp_shards"] == 4
    back = TrainingSetup.from_dict(d)
    assert (back.tiled_mlp, back.tiled_mlp_shards) == (True, 4) and back.to_dict() == d
    assert "tiled_mlp" not in _setup().to_dict()
