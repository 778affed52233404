"""axolotl's TiledMLP in the simulated step (profiler/tiled_mlp.py): its autograd Function on every layer's
MLP, and the simulated peak against the estimate (needs axolotl, `pip install axolotl --no-deps`)."""
from __future__ import annotations

import pytest

pytest.importorskip("axolotl")

from gpuplan.planner import TrainingSetup, estimate, resolve_model  # noqa: E402
from gpuplan.profiler.simulate import simulate  # noqa: E402


def test_simulated_tiled_mlp_saves_less_and_matches_the_estimate():
    m = resolve_model("llama-3.2-1b")
    base = TrainingSetup.from_dict({"method": "lora", "checkpointing": "none", "batch_size": 1, "seq_len": 512})
    tiled = base.with_(tiled_mlp=True, tiled_mlp_shards=2)
    plain, sim = simulate(m, base).peak_allocated_bytes, simulate(m, tiled).peak_allocated_bytes
    assert sim < plain
    est = estimate(m, tiled).peak_allocated_bytes
    assert abs(est - sim) / sim < 0.01
