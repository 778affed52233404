"""Library-version stacks (planner/specs/stack.py): gpuplan's defaults are the trl-1.6 row, each row
cites its sources, and the installed versions pick a row only when asked."""
from __future__ import annotations

import pytest

from gpuplan.planner import TrainingSetup, resolve_model
from gpuplan.planner.specs.errors import PlannerError
from gpuplan.planner.specs.setup import Checkpointing
from gpuplan.planner.specs.stack import (DEFAULT_STACK, STACKS, Stack, config_dtype, describe, stack_for_versions,
                                         stack_options)
from gpuplan.planner.specs.enums import DType

LLAMA = resolve_model("llama-3.2-1b")


def test_gpuplan_defaults_are_the_default_rows():
    d = TrainingSetup()
    assert stack_options(DEFAULT_STACK, LLAMA) == {"loss": d.loss.value, "precision": d.precision.value,
                                                   "grad_ckpt": d.checkpointing is Checkpointing.FULL}


def test_every_row_names_its_libraries_and_sources():
    assert set(STACKS) == set(Stack) - {Stack.INSTALLED}
    for stack, row in STACKS.items():
        libs = dict(row.libraries)
        assert libs.get("transformers", "5.24") == "5.24" and libs["torch"] == "2.13" and len(row.sources) >= 3
        assert ("trl" in libs) == stack.value.startswith("trl")
        assert describe(stack)["name"] == stack.value


def test_the_rows_differ_where_the_libraries_do():
    assert stack_options(Stack.TRL_1_16, LLAMA)["loss"] == "trl"
    assert stack_options(Stack.TRL_1_14, LLAMA)["loss"] == "chunked-nll"
    assert stack_options(Stack.TRL_1_12, LLAMA)["loss"] == "chunked-nll-fp32"
    plain = stack_options(Stack.TRANSFORMERS, LLAMA)     # bf16 config, Trainer bf16=False, no checkpointing
    assert plain == {"loss": "hf", "precision": "bf16-true", "grad_ckpt": False}
    assert stack_options(Stack.TORCHTUNE, LLAMA) == {"loss": "hf", "precision": "bf16-true", "grad_ckpt": False}
    gpt2 = resolve_model("gpt-2-small")                  # no dtype in its config
    assert config_dtype(gpt2) is DType.FP32 and stack_options(Stack.TRANSFORMERS, gpt2)["precision"] == "fp32"


@pytest.mark.parametrize("versions, stack", [
    ({"trl": "1.6.0", "transformers": "5.24.0"}, Stack.TRL_1_6),
    ({"trl": "0.19.1"}, Stack.TRL_1_6),
    ({"trl": "1.8.0"}, Stack.TRL_1_12),
    ({"trl": "1.12.1"}, Stack.TRL_1_12),
    ({"trl": "1.13.0"}, Stack.TRL_1_14),
    ({"trl": "1.14.2"}, Stack.TRL_1_14),
    ({"trl": "1.15.0"}, Stack.TRL_1_16),
    ({"trl": "1.20.0"}, Stack.TRL_1_16),
    ({"transformers": "5.24.0"}, Stack.TRANSFORMERS),
])
def test_installed_versions_pick_a_row(versions, stack):
    assert stack_for_versions(versions) is stack
    assert describe(stack, versions)["installed"] == versions


def test_trl_1_7_s_boolean_mask_gather_is_refused_naming_it():
    with pytest.raises(PlannerError, match="1.7.*boolean mask"):
        stack_for_versions({"trl": "1.7.0"})


def test_an_unreadable_installed_version_is_one_line():
    with pytest.raises(PlannerError, match="not a version gpuplan can read"):
        stack_for_versions({"trl": "main"})
