"""profiler/build.py: the simulator's model carries torchao's real float8 conversion."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("torchao")

from torchao.float8.float8_linear import Float8Linear  # noqa: E402

from gpuplan.planner import TrainingSetup  # noqa: E402
from gpuplan.planner.io.catalog import resolve_model  # noqa: E402
from gpuplan.profiler.build import build_model  # noqa: E402


@pytest.mark.parametrize("linears, head, first", [("skip-first-last", False, False), ("all", True, True)])
def test_converted_linears_follow_the_filter(linears, head, first):
    m = resolve_model("qwen2.5-0.5b")
    setup = TrainingSetup.from_dict({"precision": "bf16-true", "fp8": "rowwise", "fp8_linears": linears})
    lm, _ = build_model(m, setup, torch.device("meta"))
    converted = {n for n, mod in lm.named_modules() if isinstance(mod, Float8Linear)}
    per_layer = len(m.dense_linears)
    assert len(converted) == m.n_layers * per_layer - 1 + int(first) + int(head)
    assert ("lm_head" in converted) is head
    assert ("model.layers.0.self_attn.q_proj" in converted) is first
    assert all(mod.config.cast_config_input.scaling_granularity.value == "axiswise"
               for mod in lm.modules() if isinstance(mod, Float8Linear))


def test_autocast_fp8_is_not_simulated():
    """Float8Linear reads CUDA's autocast flag: under the simulator's CPU autocast its input would
    stay fp32, so the simulator refuses rather than measure a run that never happens."""
    from gpuplan.planner.specs.errors import PlannerError

    setup = TrainingSetup.from_dict({"precision": "bf16-mixed", "fp8": "tensorwise"})
    with pytest.raises(PlannerError, match="cannot be simulated"):
        build_model(resolve_model("qwen2.5-0.5b"), setup, torch.device("meta"), simulated=True)
