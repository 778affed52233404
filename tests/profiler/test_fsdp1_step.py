"""profiler/fsdp1_step.py: real FSDP1 FULL_SHARD steps on two CPU processes (gloo) against the estimate."""
from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from gpuplan.planner import Fsdp, ParallelSpec, Phase, TrainingSetup, estimate, model_from_config  # noqa: E402
from gpuplan.planner.specs.enums import Precision  # noqa: E402
from gpuplan.profiler.fsdp1_step import measure_fsdp1_steps  # noqa: E402

CONFIG = dict(model_type="llama", hidden_size=256, intermediate_size=512, num_attention_heads=4, num_key_value_heads=2,
              num_hidden_layers=4, vocab_size=8192, max_position_embeddings=128, tie_word_embeddings=False)


@pytest.mark.slow
def test_real_fsdp1_ranks_match_each_other_and_the_estimate():
    model = model_from_config(CONFIG, name="tiny-llama")
    setup = TrainingSetup(parallel=ParallelSpec(gpus=2, fsdp=Fsdp.FULL, fsdp_version=1),
                          precision=Precision.BF16_MIXED, batch_size=2, seq_len=64)
    ranks = measure_fsdp1_steps(model, setup)
    est = estimate(model, setup)
    for rank in ranks:   # the ranks' shards hold different pieces of the parameters: rounded apart by bytes
        for phase in Phase:
            assert est.phases[phase] == pytest.approx(rank[phase.value]["total"], rel=0.01), phase
