"""planner/io/hf_vocabulary.py: each table against the library whose names it holds, and both
directions of each mapping consistent."""
from __future__ import annotations

import pytest

from gpuplan.planner import Attention, DType, Optimizer
from gpuplan.planner.io import hf_vocabulary as V

# in the table for --from-config, but no member of transformers 5's OptimizerNames (see the table)
NOT_IN_OPTIMIZER_NAMES = {"adamw_hf", "bnb_8bit", "paged_adamw"}
# gpuplan choices no TrainingArguments.optim builds (Adam-mini: LLaMA-Factory's use_adam_mini; Muon: torch's)
NO_HF_NAME = {Optimizer.ADAM_MINI, Optimizer.MUON, Optimizer.LORAFA}   # LoRA-FA: peft.optimizers.create_lorafa_optimizer


@pytest.mark.parametrize("table, reverse, enum", [
    (V.HF_OPTIM, V.OPTIM_NAMES, Optimizer),
    (V.HF_ATTENTION, V.ATTENTION_NAMES, Attention),
])
def test_every_choice_has_one_hf_name_that_maps_back(table, reverse, enum):
    assert set(reverse) == set(enum) - NO_HF_NAME
    for value, name in reverse.items():
        assert table[name] is value
        assert name == next(n for n, v in table.items() if v is value)   # the first listed


def test_dtype_names_map_back_and_leave_out_the_packed_4_bit_types():
    assert set(V.DTYPE_TORCH_NAMES) == set(DType) - {DType.NF4, DType.FP4}
    for dtype, name in V.DTYPE_TORCH_NAMES.items():
        assert V.TORCH_DTYPE_NAMES[name] is dtype and V.torch_dtype_name(dtype) == name
    assert (V.hf_optim_name(Optimizer.ADAMW_FUSED), V.hf_attention_name(Attention.FLASH)) == \
        ("adamw_torch_fused", "flash_attention_2")


def test_optim_names_are_transformers_optimizer_names():
    training_args = pytest.importorskip("transformers.training_args")
    names = {m.value for m in training_args.OptimizerNames}
    assert set(V.HF_OPTIM) - NOT_IN_OPTIMIZER_NAMES <= names
    assert not NOT_IN_OPTIMIZER_NAMES & names   # if one came back, its comment is wrong


def test_attention_names_are_registered_with_transformers():
    modeling_utils = pytest.importorskip("transformers.modeling_utils")
    registered = set(modeling_utils.AttentionInterface._global_mapping) | {"eager"}
    assert set(V.HF_ATTENTION) <= registered


def test_dtype_names_are_torch_dtypes():
    torch = pytest.importorskip("torch")
    for name in V.TORCH_DTYPE_NAMES:
        assert isinstance(getattr(torch, name), torch.dtype) and str(getattr(torch, name)) == f"torch.{name}"
