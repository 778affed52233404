"""Per-module attribution: saved activations add up, weights add up, the timeline is JSON."""
from __future__ import annotations

import json

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from gpuplan.planner import Checkpointing, Component, Method, Phase, TrainingSetup
from gpuplan.profiler.build import build
from gpuplan.profiler.hooks import ROOT, attributed
from gpuplan.profiler.simulate import simulate
from gpuplan.profiler.step import run_steps
from gpuplan.profiler.tracker import StorageTracker, allocator_bytes

NO_CKPT = TrainingSetup(batch_size=2, seq_len=16, checkpointing=Checkpointing.NONE)


def _run(model, setup):
    """(tracker, attribution) after two simulated steps with the hooks on."""
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    built = build(model, setup, torch.device("cpu"), fake)
    with fake:
        tracker = StorageTracker()
        with tracker, attributed(built.model, tracker) as attribution:
            run_steps(built, setup, tracker, 2)
    return tracker, attribution


@pytest.fixture(scope="module")
def full(tiny):
    return _run(tiny, NO_CKPT)


@pytest.fixture(scope="module")
def lora(tiny):
    return _run(tiny, NO_CKPT.with_(method=Method.LORA))


@pytest.mark.parametrize("which", ["full", "lora"])
def test_saved_activations_add_up_to_the_live_set_at_backward(which, request):
    """At the start of backward every live byte is a weight, optimizer state, a gradient (none yet),
    a tensor saved for backward (credited to exactly one module), or the loss (one 512-B block)."""
    tracker, attribution = request.getfixturevalue(which)
    live_at_backward = next(live for phase, live in tracker.timeline if phase == Phase.BACKWARD.value)
    states = tracker.peaks[Phase.FORWARD].components
    others = states[Component.WEIGHTS] + states[Component.OPTIMIZER_STATE]
    loss = allocator_bytes(4)
    assert attribution.saved_bytes > 0
    assert attribution.saved_bytes + loss + others == live_at_backward


def test_weights_add_up_to_the_tracked_weights(full, lora):
    for tracker, attribution in (full, lora):
        assert attribution.param_bytes == tracker.peaks[Phase.FORWARD].components[Component.WEIGHTS]


def test_table_and_timeline_are_json_and_name_real_modules(full, tiny):
    tracker, attribution = full
    d = json.loads(json.dumps(attribution.to_dict()))
    names = {row["name"] for row in d["modules"]}
    assert {"lm_head", "model.embed_tokens", "model.layers.1.mlp.down_proj"} <= names
    assert sum(r["saved_bytes"] for r in d["modules"]) == d["saved_bytes"]
    events = {(e["event"], e["phase"]) for e in d["timeline"]}
    assert {("forward_pre", "forward"), ("forward", "forward"), ("backward_pre", "backward")} <= events
    assert set(d["timeline"][0]) == {"event", "phase", "module", "live_bytes"}
    assert d["timeline"][0]["module"] == ROOT               # the last step's timeline only
    assert sum(e["module"] == ROOT and e["event"] == "forward_pre" for e in d["timeline"]) == 1


def test_checkpointed_layers_save_only_their_input(tiny):
    _, attribution = _run(tiny, NO_CKPT.with_(checkpointing=Checkpointing.FULL))
    rows = attribution.rows
    assert rows["model.layers.0.mlp.down_proj"].saved_bytes == 0   # recomputed in backward
    hidden_fp32 = allocator_bytes(2 * 16 * 64 * 4)                # (b, s, h) fp32 residual stream
    assert rows["model.layers.0"].saved_bytes == hidden_fp32


def test_hooks_change_no_byte(tiny):
    plain = simulate(tiny, NO_CKPT)
    hooked = simulate(tiny, NO_CKPT, per_module=True)
    assert hooked.phase_components == plain.phase_components
    assert hooked.per_module["param_bytes"] == plain.components[Component.WEIGHTS]
    assert plain.per_module is None and "per_module" not in plain.to_dict()


def test_disabled_attribution_registers_nothing():
    lin = torch.nn.Linear(4, 4)
    with attributed(lin, StorageTracker(), enabled=False) as attribution:
        assert attribution is None
        assert not lin._forward_hooks and not lin._forward_pre_hooks
    with attributed(lin, StorageTracker()):
        assert lin._forward_hooks
    assert not lin._forward_hooks and not lin._forward_pre_hooks    # removed on exit
