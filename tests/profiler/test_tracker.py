"""StorageTracker: storages not tensors, deaths followed, phases, and a breakdown that adds up."""
from __future__ import annotations

import pytest
import torch

from gpuplan.planner import Checkpointing, Component, Optimizer, Phase, Precision, TrainingSetup
from gpuplan.profiler.build import build_model
from gpuplan.profiler.simulate import simulate
from gpuplan.profiler.tracker import StorageTracker, allocator_bytes

A = Component.ACTIVATIONS


@pytest.mark.parametrize("nbytes, counted", [(0, 0), (1, 512), (512, 512), (513, 1024), (4096, 4096)])
def test_allocator_rounds_to_512(nbytes, counted):
    assert allocator_bytes(nbytes) == counted


def test_views_share_one_storage_and_deaths_are_followed():
    with StorageTracker() as tracker:
        x = torch.empty(1000)                      # 4000 B -> 4096
        views = [x.view(10, 100), x[:5], x.t() if x.dim() == 2 else x[::2]]
        assert tracker.current == 4096
        y = x + 1                                  # a new storage
        assert tracker.current == 2 * 4096
        del x, views
        assert tracker.current == 4096             # y alone
        del y
    assert tracker.current == 0


def test_track_counts_existing_tensors_and_relabels_them():
    w = torch.empty(256)
    with StorageTracker() as tracker:
        tracker.track([w, w.view(16, 16)], Component.WEIGHTS)
        assert tracker.totals[Component.WEIGHTS] == 1024
        tracker.track([w], Component.OPTIMIZER_STATE)
        assert tracker.totals[Component.WEIGHTS] == 0
        assert tracker.totals[Component.OPTIMIZER_STATE] == 1024
        assert tracker.current == 1024


def test_each_phase_keeps_its_own_peak_and_breakdown():
    with StorageTracker() as tracker:
        tracker.mark(Phase.FORWARD, A)
        a = torch.empty(1024)                      # 4096 B activations
        tracker.mark(Phase.BACKWARD, Component.TEMPORARIES)
        b = torch.empty(2048)                      # 8192 B temporaries
        del a, b
        tracker.mark(Phase.OPTIMIZER, Component.TEMPORARIES)
    assert tracker.peaks[Phase.FORWARD].total == 4096
    assert tracker.peaks[Phase.BACKWARD].total == 4096 + 8192
    assert tracker.peaks[Phase.BACKWARD].components[Component.TEMPORARIES] == 8192
    assert tracker.peaks[Phase.OPTIMIZER].total == 0
    assert tracker.peak is tracker.peaks[Phase.BACKWARD]


@pytest.fixture(scope="module")
def fp32_full(tiny):
    setup = TrainingSetup(batch_size=2, seq_len=16, precision=Precision.FP32, optimizer=Optimizer.ADAMW_FUSED,
                          checkpointing=Checkpointing.NONE)
    return setup, simulate(tiny, setup)


def test_components_add_up_to_each_phase_peak(fp32_full):
    _, m = fp32_full
    for phase, total in m.phases.items():
        assert sum(m.phase_components[phase].values()) == total
    assert m.peak_allocated_bytes == max(m.phases.values()) == sum(m.components.values())


def test_states_match_an_independent_count(tiny, fp32_full):
    """Weights, gradients and AdamW state, counted from the model built on `meta`, are what the tracker saw."""
    setup, m = fp32_full
    lm, _ = build_model(tiny, setup, torch.device("meta"))
    tensors = {id(t): t for t in [*lm.parameters(), *lm.buffers()]}.values()
    weights = sum(allocator_bytes(t.numel() * t.element_size()) for t in tensors)
    trainable = [p for p in lm.parameters() if p.requires_grad]
    grads = sum(allocator_bytes(p.numel() * 4) for p in trainable)
    # AdamW: exp_avg and exp_avg_sq in fp32, and a 0-dim fp32 `step` per parameter (fused: on the device)
    adam = sum(2 * allocator_bytes(p.numel() * 4) + allocator_bytes(4) for p in trainable)
    optimizer_phase = m.phase_components[Phase.OPTIMIZER]
    for phase in Phase:
        assert m.phase_components[phase][Component.WEIGHTS] == weights
        assert m.phase_components[phase][Component.OPTIMIZER_STATE] == adam   # steady state: live throughout
    assert optimizer_phase[Component.GRADIENTS] == grads
    assert m.phase_components[Phase.FORWARD][Component.GRADIENTS] == 0      # zero_grad(set_to_none=True)
