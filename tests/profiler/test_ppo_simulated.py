"""PPO's training phase under the simulator (profiler/ppo_step.py): TRL 1.12.0's own functions where TRL 1.12 is
installed (trl.experimental.ppo is gone from 1.13 on: CI's TRL refuses it in one line)."""
import importlib.util

import pytest

from gpuplan.planner import TrainingSetup, estimate, resolve_model
from gpuplan.planner.specs.errors import PlannerError
from gpuplan.profiler.device import Device
from gpuplan.profiler.run import measure


def _has_trl_ppo() -> bool:
    try:
        return importlib.util.find_spec("trl.experimental.ppo") is not None
    except ModuleNotFoundError:   # no trl, or no trl.experimental
        return False


SETUP = TrainingSetup.from_dict({"objective": "ppo", "precision": "bf16-true", "method": "lora", "batch_size": 2,
                                 "seq_len": 64, "response_len": 16, "checkpointing": "none", "grad_accum": 2})


@pytest.mark.skipif(_has_trl_ppo(), reason="TRL 1.12 installed: the simulation runs instead")
def test_without_trl_112_the_simulation_is_refused_in_one_line():
    with pytest.raises(PlannerError, match="trl==1.12.0"):
        measure(resolve_model("smollm-2-135m"), SETUP, Device.SIMULATE)


def test_ppo_is_simulated_only():
    with pytest.raises(PlannerError, match="simulated only"):
        measure(resolve_model("smollm-2-135m"), SETUP, Device.CPU)


@pytest.mark.skipif(not _has_trl_ppo(), reason="needs trl==1.12.0 (trl.experimental.ppo)")
def test_the_simulated_training_phase_meets_the_estimate():
    model = resolve_model("smollm-2-135m")
    measured = measure(model, SETUP, Device.SIMULATE)
    est = estimate(model, SETUP).peak_allocated_bytes
    assert abs(est - measured.peak_allocated_bytes) / measured.peak_allocated_bytes < 0.01
