"""Activation offloading (planner/techniques/activation_offload.py): modelled from source, checked
against numbers derived by hand from the offloaders' code."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from gpuplan.app.cli import cli
from gpuplan.planner import ActivationOffload as A
from gpuplan.planner import Method, PlannerError, TrainingSetup, estimate, resolve_gpu, resolve_model, step_time
from gpuplan.planner.specs.enums import Component as C
from gpuplan.planner.specs.enums import Phase
from gpuplan.planner.specs.parallel import ParallelSpec
from gpuplan.planner.specs.setup import Checkpointing

LLAMA_1B = resolve_model("llama-3.2-1b")     # 16 layers, hidden 2048, vocab 128256
B, S = 8, 4096
T = B * S
# LoRA under bf16-mixed loads fp32 weights: the residual stream (each layer's input) is fp32
X = T * 2048 * 4                              # one checkpointed layer's input: 256 MiB


def _est(off: A, **kw):
    return estimate(LLAMA_1B, TrainingSetup(method=Method.LORA, batch_size=B, seq_len=S, activation_offload=off, **kw))


def _acts(e, phase):
    return e.phase_components[phase][C.ACTIVATIONS]


def test_off_is_today_and_shows_nothing():
    none = _est(A.NONE)
    assert none == estimate(LLAMA_1B, TrainingSetup(method=Method.LORA, batch_size=B, seq_len=S))
    assert none.activation_host_bytes == 0
    assert "activation_host_bytes" not in none.to_dict() and "activation_offload" not in none.setup


@pytest.mark.parametrize("off, moved", [
    (A.TRL, 16 * X),            # every layer input (_NoopSaveInputs) through TRL's pack hook
    (A.TRL_SYNC, 16 * X),
    (A.TORCHTUNE, 16 * X),
    (A.LAYER_INPUTS, 16 * X),   # save_on_cpu around each checkpoint
    (A.UNSLOTH, 15 * X - 2 * X),   # all but the last layer's input, less GPU_BUFFERS + GPU_BUFFERS_B
])
def test_forward_end_gpu_bytes_by_hand(off, moved):
    none, on = _est(A.NONE), _est(off)
    assert _acts(none, Phase.FORWARD) - _acts(on, Phase.FORWARD) == moved


def test_host_bytes_by_hand():
    """TRL copies the layer inputs, the tensors outside the layers and the loss's saved fp32
    log-softmax output (the context spans the loss); torchtune's spans the model forward only;
    Unsloth copies all inputs but the last layer's."""
    logits = T * 4 * 128256
    trl, tt, un, li = (_est(k).activation_host_bytes for k in (A.TRL, A.TORCHTUNE, A.UNSLOTH, A.LAYER_INPUTS))
    assert li == 16 * X and un == 15 * X
    assert trl - tt == logits and tt > 16 * X   # torchtune: inputs + the final norm's and RoPE's tensors
    assert _est(A.TRL).to_dict()["activation_host_bytes"] == trl


def test_recompute_keeps_the_layers_in_flight():
    """During the highest layer's recompute TRL/torchtune hold two layers' inputs (the previous
    node's is dropped only after the next node ran); the compute-stream variants one."""
    from gpuplan.planner.memory.pieces import terms
    from gpuplan.planner.specs.resolved import resolve
    from gpuplan.planner.techniques import activation_offload, loss

    for off, back in ((A.TRL, 2), (A.TORCHTUNE, 2), (A.TRL_SYNC, 1), (A.LAYER_INPUTS, 1)):
        setup = TrainingSetup(method=Method.LORA, batch_size=B, seq_len=S, activation_offload=off)
        rs, _, act = terms(LLAMA_1B, setup)
        o = activation_offload.offloaded(LLAMA_1B, rs, act, T, loss.loss_bytes(LLAMA_1B, rs, T, B)[1])
        assert o.recompute == (16 - back) * X, off


def test_without_checkpointing_trl_moves_every_saved_tensor():
    none = _est(A.NONE, checkpointing=Checkpointing.NONE)
    trl = _est(A.TRL, checkpointing=Checkpointing.NONE)
    assert trl.peak_allocated_bytes < none.peak_allocated_bytes
    assert trl.activation_host_bytes > 16 * X * 5   # whole layers, not only their inputs
    for off in (A.TORCHTUNE, A.LAYER_INPUTS, A.UNSLOTH):
        with pytest.raises(PlannerError, match="--no-grad-ckpt"):
            TrainingSetup(checkpointing=Checkpointing.NONE, activation_offload=off).validate()


def test_unsloth_leaves_small_inputs_alone():
    small = estimate(LLAMA_1B, TrainingSetup(method=Method.LORA, batch_size=1, seq_len=256, activation_offload=A.UNSLOTH))
    assert small.activation_host_bytes == 0   # 256 x 2048 elements <= MINIMUM_SIZE (2 MiB / 2)


def test_multi_gpu_is_refused():
    with pytest.raises(PlannerError, match="one GPU only"):
        TrainingSetup(activation_offload=A.TRL, parallel=ParallelSpec(gpus=2)).validate()


def test_pcie_time_streams_hide_what_compute_covers():
    h100 = resolve_gpu("h100")
    base = TrainingSetup(method=Method.LORA, batch_size=B, seq_len=S)
    t = {k: step_time(LLAMA_1B, base.with_(activation_offload=k), h100) for k in A}
    assert t[A.NONE].offload == 0
    host = _est(A.TRL_SYNC).activation_host_bytes
    link = next(a for a in t[A.TRL_SYNC].assumptions if a.name == "activation_offload_link").value
    assert t[A.TRL_SYNC].offload == pytest.approx(2 * host / link)   # both copies on the compute stream
    assert t[A.TRL].offload < t[A.TRL_SYNC].offload                  # the side stream hides some
    assert 0 <= t[A.TORCHTUNE].offload < 2 * _est(A.TORCHTUNE).activation_host_bytes / link


def test_cli_flag_json_and_table():
    r = CliRunner().invoke(cli, ["estimate", "-m", "llama-3.2-1b", "--method", "lora", "-b", "8", "-s", "4096",
                                 "--activation-offload", "trl", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["setup"]["activation_offload"] == "trl" and d["activation_host_bytes"] > 0
    assert any("modelled from source, not simulated" in n for n in d["notes"])
    table = CliRunner().invoke(cli, ["estimate", "-m", "llama-3.2-1b", "--activation-offload", "unsloth"])
    assert table.exit_code == 0 and "pinned host" in table.output
    plain = CliRunner().invoke(cli, ["estimate", "-m", "llama-3.2-1b"])
    assert "pinned host" not in plain.output
    bad = CliRunner().invoke(cli, ["estimate", "-m", "llama-3.2-1b", "--no-grad-ckpt", "--activation-offload", "torchtune"])
    assert bad.exit_code == 2 and "RuntimeError" in bad.output


def test_round_trip():
    s = TrainingSetup(activation_offload=A.TORCHTUNE)
    assert TrainingSetup.from_dict(s.to_dict(LLAMA_1B)).activation_offload is A.TORCHTUNE
