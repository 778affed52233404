"""FSDP1's LoRA step (planner/memory/fsdp1_lora.py): what it holds against FSDP2's and full fine-tuning's, and
what it refuses. Its estimates against real FSDP1 over gloo are the `lora` rows of
data/measurements/fsdp1_step_gloo.json, checked in test_fsdp1.py."""
from __future__ import annotations

from dataclasses import replace

import pytest

from gpuplan.planner import Fsdp, Method, ParallelSpec, PlannerError, TrainingSetup, estimate, resolve_model
from gpuplan.planner.memory.sharded import padded
from gpuplan.planner.memory.fsdp1_lora import adapters_unmodelled, attention_input_backward
from gpuplan.planner.memory.sharded import sharded_states
from gpuplan.planner.specs.engines import Engine
from gpuplan.planner.specs.enums import Component, Phase, Precision
from gpuplan.planner.specs.setup import LoraSpec


def _lora(version: int, n: int = 8, **kw) -> TrainingSetup:
    return TrainingSetup(parallel=ParallelSpec(gpus=n, fsdp=Fsdp.FULL, fsdp_version=version), method=Method.LORA,
                         precision=Precision.BF16_MIXED, batch_size=1, seq_len=2048, **kw)


def test_frozen_units_have_no_gradient_and_one_layer_less_is_gathered_in_forward():
    m = resolve_model("llama-3.1-8b")
    e1, e2 = estimate(m, _lora(1)), estimate(m, _lora(2))
    layer = padded((m.n_heads * m.head_dim * 2 + m.n_kv_heads * m.head_dim * 2) * m.hidden
                   + 3 * m.hidden * m.intermediate + 2 * m.hidden, 8) * 2          # one bf16 decoder layer
    w1, w2 = (e.phase_components[Phase.FORWARD][Component.WEIGHTS] for e in (e1, e2))
    assert w2 - w1 >= layer                                                     # FSDP2 keeps its last all-gather
    # the adapters' sharded gradients only: no flat gradient of a frozen FlatParameter anywhere in the step
    assert e1.components[Component.GRADIENTS] * 8 < 4 * 30_000_000
    assert any("peft's wrap policy" in n for n in e1.notes)


def test_two_layers_gathered_only_from_the_attention_inputs_backward():
    m = resolve_model("llama-3.1-8b")
    setup = _lora(1)
    sh = sharded_states(m, setup, Engine.FSDP_FULL)
    T = setup.batch_size * setup.seq_len
    # the point the layer below is prefetched holds less than the layer's recompute and MLP backward
    assert attention_input_backward(m, sh, T) < sh.pz.recompute + sh.pz.layer_transient
    # the first adapted of q/k/v prefetches (its backward runs last): v_proj alone leaves a narrower gradient
    # (GQA: 1024 wide against q's 4096) than q_proj's
    v_only = replace(setup, lora=LoraSpec(targets=("v_proj",)))
    assert attention_input_backward(m, sharded_states(m, v_only, Engine.FSDP_FULL), T) < attention_input_backward(m, sh, T)


def test_memory_falls_with_more_gpus():
    m = resolve_model("llama-3.1-8b")
    totals = [estimate(m, _lora(1, n)).peak_allocated_bytes for n in (2, 4, 8)]
    assert totals[0] > totals[1] > totals[2]


def test_what_it_does_not_model_is_named():
    m = resolve_model("llama-3.1-8b")
    assert adapters_unmodelled(m, _lora(1)) is None
    assert "QLoRA" in adapters_unmodelled(m, replace(_lora(1), method=Method.QLORA))
    assert "DoRA" in adapters_unmodelled(m, replace(_lora(1), lora=LoraSpec(use_dora=True)))
    with pytest.raises(PlannerError, match="not DoRA: drop --fsdp-version 1"):
        estimate(m, replace(_lora(1), lora=LoraSpec(use_dora=True)))


def test_mlp_only_targets_take_the_whole_layer_backward_as_the_bound():
    m = resolve_model("llama-3.1-8b")
    setup = replace(_lora(1), lora=LoraSpec(targets=("gate_proj", "up_proj", "down_proj")))
    sh = sharded_states(m, setup, Engine.FSDP_FULL)
    assert attention_input_backward(m, sh, 2048) == sh.pz.recompute + sh.pz.layer_transient
