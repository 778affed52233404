"""The simulator's answers inside TRL 1.9's DPO step (profiler/trl19_dpo.py): the completion rows of a boolean
index, CUDA autocast's fp32 log_softmax, the host metrics; and, where trl 1.9 is installed, the step itself."""
from __future__ import annotations

import importlib.metadata

import pytest
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode

from gpuplan.profiler.trl19_dpo import _CompletionRows, _CudaLogSoftmax, _Host, completion_tokens


def test_a_boolean_index_of_one_side_gets_the_completion_rows():
    with FakeTensorMode():
        x = torch.empty(2, 7, 50, dtype=torch.bfloat16)
        mask = torch.ones(2, 7, dtype=torch.bool)
        with _CompletionRows((2, 7), 9):
            got = x[mask]
            assert got.shape == (9, 50) and got.dtype is torch.bfloat16
            with pytest.raises(NotImplementedError, match="answers only one side's completion mask"):
                x[torch.ones(1, 7, dtype=torch.bool)]


def test_log_softmax_runs_in_fp32_under_autocast_as_on_cuda():
    x = torch.randn(3, 5, dtype=torch.bfloat16)
    with _CudaLogSoftmax():
        assert F.log_softmax(x, dim=-1).dtype is torch.bfloat16          # no autocast: as called
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert F.log_softmax(x, dim=-1).dtype is torch.float32
            assert F.log_softmax(x.float(), dim=-1).dtype is torch.float32


def test_host_metrics_and_completion_tokens():
    h = _Host()
    assert (h.sum() / h > 0) and h.mean().item() == 0.0
    assert completion_tokens(256, 1.0) == 255 and completion_tokens(256, 0.5) == 128 and completion_tokens(4, 0.01) == 1


def _trl_version() -> str | None:
    try:
        return importlib.metadata.version("trl")
    except importlib.metadata.PackageNotFoundError:
        return None


@pytest.mark.skipif(_trl_version() != "1.9.0", reason="needs trl==1.9.0 (the TRL 1.9 venv)")
def test_the_simulated_step_matches_the_closed_form():
    from gpuplan.planner.io.catalog import resolve_model
    from gpuplan.planner.memory.estimate import estimate
    from gpuplan.planner.specs.setup import TrainingSetup
    from gpuplan.profiler.simulate import simulate

    m = resolve_model("smollm-2-135m")
    s = TrainingSetup.from_dict({"objective": "dpo", "trl_version": "1.9", "loss": "hf", "precision": "bf16-true",
                                 "method": "lora", "batch_size": 2, "seq_len": 128})
    sim = simulate(m, s).peak_allocated_bytes
    assert abs(estimate(m, s).peak_allocated_bytes - sim) / sim < 0.01
