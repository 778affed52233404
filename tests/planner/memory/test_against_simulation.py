"""The estimate against the real HF training step under FakeTensorMode (profiler.simulate)."""
import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")

from gpuplan.planner import Checkpointing, Loss, Method, Optimizer, Precision, TrainingSetup, estimate  # noqa: E402
from gpuplan.planner.io.catalog import resolve_model  # noqa: E402
from gpuplan.profiler.simulate import simulate  # noqa: E402

CASES = [
    ("qwen-2.5-0.5b", dict(checkpointing=Checkpointing.NONE)),
    ("tinyllama-1.1b", dict()),
    ("llama-3.2-1b", dict(precision=Precision.BF16_TRUE, checkpointing=Checkpointing.NONE)),
    ("qwen-2.5-0.5b", dict(precision=Precision.BF16_TRUE)),
    ("qwen-2.5-0.5b", dict(precision=Precision.BF16_TRUE, checkpointing=Checkpointing.NONE)),
    ("qwen-2.5-0.5b", dict(method=Method.LORA)),
    ("llama-3.2-1b", dict(precision=Precision.FP32, checkpointing=Checkpointing.NONE)),
    ("llama-3.2-1b", dict(precision=Precision.BF16_TRUE, optimizer=Optimizer.ADAMW_8BIT)),
    ("llama-3.2-1b", dict(precision=Precision.BF16_TRUE, optimizer=Optimizer.PAGED_ADAMW_8BIT)),
    ("qwen-2.5-0.5b", dict(method=Method.QLORA)),
    ("qwen-2.5-0.5b", dict(method=Method.LORA, loss=Loss.CHUNKED, checkpointing=Checkpointing.NONE)),
]


@pytest.mark.parametrize("model,kw", CASES, ids=lambda x: str(x))
def test_estimate_within_two_percent_of_simulated_step(model, kw):
    m = resolve_model(model)
    s = TrainingSetup(batch_size=2, seq_len=256, **kw)
    est, sim = estimate(m, s).peak_allocated_bytes, simulate(m, s).peak_allocated_bytes
    assert abs(est - sim) / sim < 0.02, (est, sim)
