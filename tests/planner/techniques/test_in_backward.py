"""The optimizer step inside backward (planner/techniques/in_backward.py): no full gradient set is
live, the loop's optimizer phase holds weights and state only, and what it cannot do is refused."""
from __future__ import annotations

import pytest

from gpuplan.planner import (Checkpointing, Component, Method, Optimizer, Phase, PlannerError, TrainingSetup,
                             estimate, resolve_model)
from gpuplan.planner.specs.parallel import ParallelSpec

BASE = TrainingSetup(batch_size=2, seq_len=256, checkpointing=Checkpointing.NONE)


@pytest.mark.parametrize("name", ["llama-3.2-1b", "tinyllama-1.1b"])   # tied and untied embeddings
@pytest.mark.parametrize("optimizer", [Optimizer.ADAMW_FUSED, Optimizer.ADAMW, Optimizer.ADAMW_8BIT])
def test_no_full_gradient_set_is_live(name, optimizer):
    model = resolve_model(name)
    plain = estimate(model, BASE.with_(optimizer=optimizer))
    inbwd = estimate(model, BASE.with_(optimizer=optimizer, optimizer_in_backward=True))
    one_tensor = model.vocab * model.hidden * 4           # the largest gradient: the fp32 (vocab, hidden) one
    for phase in Phase:
        assert inbwd.phase_components[phase][Component.GRADIENTS] <= one_tensor
    assert inbwd.phase_components[Phase.OPTIMIZER][Component.GRADIENTS] == 0
    assert inbwd.phase_components[Phase.OPTIMIZER][Component.TEMPORARIES] == 0
    full_grads = plain.phase_components[Phase.OPTIMIZER][Component.GRADIENTS]
    assert full_grads > 4 * one_tensor
    assert inbwd.peak_allocated_bytes < plain.peak_allocated_bytes
    # same weights and optimizer state: only where the gradients live changes
    assert inbwd.phase_components[Phase.FORWARD][Component.OPTIMIZER_STATE] == \
        plain.phase_components[Phase.FORWARD][Component.OPTIMIZER_STATE]


def test_the_head_gradient_of_an_untied_model_is_made_while_every_activation_is_saved():
    """Without checkpointing the backward's worst moment is the lm_head's weight gradient, on top
    of the saved activations: it is above the plain step's backward start."""
    model = resolve_model("tinyllama-1.1b")
    est = estimate(model, BASE.with_(optimizer_in_backward=True))
    assert est.peak_phase is Phase.BACKWARD
    assert est.phase_components[Phase.BACKWARD][Component.TEMPORARIES] >= model.vocab * model.hidden * 4


@pytest.mark.parametrize("changes, words", [
    (dict(grad_accum=4), "--grad-accum 1"),
    (dict(method=Method.LORA), "--method full"),
    (dict(parallel=ParallelSpec(gpus=2)), "one GPU"),
])
def test_what_it_cannot_do_is_refused_in_one_line(changes, words):
    with pytest.raises(PlannerError) as err:
        BASE.with_(optimizer_in_backward=True, **changes).validate()
    assert words in str(err.value) and "\n" not in str(err.value)


def test_the_field_shows_in_the_dict_only_when_set_and_round_trips():
    assert "optimizer_in_backward" not in BASE.to_dict() and "optim" not in BASE.to_dict()
    d = BASE.with_(optimizer_in_backward=True).to_dict()
    assert d["optimizer_in_backward"] is True
    assert TrainingSetup.from_dict(d).optimizer_in_backward
    assert TrainingSetup.from_dict(d).to_dict() == d


def test_the_estimate_notes_say_how_it_was_modelled():
    est = estimate(resolve_model("llama-3.2-1b"), BASE.with_(optimizer_in_backward=True))
    assert any("post-accumulate-grad hook" in n for n in est.notes)
