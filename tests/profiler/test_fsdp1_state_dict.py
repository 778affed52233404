"""planner/memory/state_dicts.py against FSDP1's real `model.state_dict()` on two CPU processes (gloo):
rank 0's bytes during the call and what the returned dict keeps (profiler/state_dict_check.py)."""
from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from gpuplan.planner import Fsdp, ParallelSpec, TrainingSetup, model_from_config  # noqa: E402
from gpuplan.planner.memory.pieces import terms  # noqa: E402
from gpuplan.planner.memory.state_dicts import StateDictPlan, StateDictType, fsdp_save_memory  # noqa: E402
from gpuplan.profiler.state_dict_check import measure_fsdp1_state_dicts  # noqa: E402

CONFIG = dict(model_type="llama", hidden_size=256, intermediate_size=512, num_attention_heads=4, num_key_value_heads=2,
              num_hidden_layers=4, vocab_size=8192, max_position_embeddings=128, tie_word_embeddings=False)


@pytest.mark.slow
def test_fsdp1_state_dicts_match_the_real_hooks():
    measured = measure_fsdp1_state_dicts(CONFIG, world=2)
    model = model_from_config(CONFIG, name="tiny-llama")
    setup = TrainingSetup(parallel=ParallelSpec(gpus=2, fsdp=Fsdp.FULL))
    _, st, _ = terms(model, TrainingSetup())
    resident = (st.weights + st.optimizer_state) // 2

    def planned(plan: StateDictPlan) -> int:
        return fsdp_save_memory(model, setup, plan, with_optimizer=False).gpu_bytes - resident

    full = StateDictPlan(1, offload_to_cpu=False)
    assert planned(full) == measured["full-rank0"][0]                       # the clones beside the root unit
    assert planned(StateDictPlan(1, offload_to_cpu=False, rank0_only=False)) == measured["full-all"][0]
    assert measured["full-rank0"][1] == st.weights                          # the whole state dict, kept
    sharded = StateDictPlan(1, StateDictType.SHARDED, offload_to_cpu=False)
    assert planned(sharded) == measured["sharded"][0]                       # the root with every rank's chunks
    assert measured["sharded"][1] == st.weights // 2
    # the optimizer's full state dict on the device: the root's two AdamW moments cloned beside its gathered
    # buffer (the embedding's FlatParameter comes first), or the whole dict kept beside the last layer's
    opt = fsdp_save_memory(model, setup, full).gpu_bytes - resident
    peak, kept = measured["optim-full"]
    assert kept == pytest.approx(st.optimizer_state, rel=0.001)            # + 39 one-element step tensors
    assert opt == pytest.approx(peak, rel=0.001), (opt, peak)
