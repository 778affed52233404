"""The optimizer step inside backward: torchtune `optimizer_in_bwd` and transformers' `*_layerwise`
optimizers. One optimizer per parameter; a post-accumulate-grad hook steps it and frees its
gradient (`optim_dict[param].step(); optim_dict[param].zero_grad()`) [torchtune
training/_memory.py register_optim_in_bwd_hooks; transformers 5.24 trainer_optimizer.py
_setup_low_rank_optimizer, `optimizer_hook`]. So no full gradient set is ever live:

- a parameter's gradient lives from its AccumulateGrad until its own hook has stepped it;
- the one exception is a weight used twice (tied embeddings): autograd keeps the lm_head's
  contribution in the AccumulateGrad node's input buffer through the whole backward, until the
  embedding's backward adds its own (the input buffer's sum is out of place: both terms and the
  sum are live together, three (vocab, hidden) tensors, as the simulated step shows);
- each step's temporaries are one parameter's (the per-parameter optimizer's foreach list has one
  tensor), the largest one's at worst: the embedding's, stepped last;
- the loop's optimizer.step() does nothing (LayerWiseDummyOptimizer): the optimizer phase holds
  the weights and the state only.

It refuses gradient accumulation (specs/optim.py validate_optimizer).
"""
from __future__ import annotations

from ..specs.enums import Component as C
from ..specs.model import ModelSpec
from ..specs.resolved import Resolved
from . import optimizers


def one_tensor_step_temporaries(model: ModelSpec, rs: Resolved, largest: int, shapes: tuple[int, int]) -> int:
    """Step temporaries of the optimizer over the largest trainable tensor alone."""
    dtype = rs.trainable if rs.full else rs.adapters.dtype
    rows, cols = shapes
    opt, o = rs.setup.optimizer, rs.setup.optim
    if opt in optimizers.EXTRA:   # a per-parameter optimizer over that tensor alone (GaLore: its targets' too)
        return optimizers.extra_state_bytes(opt, model, [(largest, 1)], dtype, o.rank, o.update_proj_gap,
                                            o.targets, o.block_size)[2]
    # a single (rows, cols) tensor: the largest is the (vocab, hidden) embedding for full fine-tuning
    return optimizers.state_bytes(opt, largest, dtype, largest, (rows, cols))[2]


def backward_candidates(model: ModelSpec, rs: Resolved, candidates: list[dict], largest: int,
                        outside_acts: int, saved_head: int, tokens: int) -> list[dict]:
    """The backward's live sets with the step inside it (full fine-tuning). `candidates` are the
    plain step's: its start, (under checkpointing) the last layer's recompute, and its end.

    The lm_head's backward adds one moment the plain step has no reason to look at: its weight
    gradient (vocab x hidden, in the trainable dtype) is made while the activations are all still
    saved; the loss's saved logits and the autocast copy of the head weight are freed by then, and
    the gradient of the head's input (tokens x hidden, residual dtype) is live (as the simulated
    step counts them, at two sequence lengths to tell the terms apart). Untied, the head then
    steps at once (its step temporaries, the logits' gradients gone); tied, its gradient waits in
    the input buffer until the embedding's backward.
    """
    p = rs.trainable.bytes
    head_grad = model.vocab * model.hidden * p
    tied = head_grad if model.tied_embeddings else 0
    start = candidates[0]
    e = rs.compute.bytes
    input_grads = tokens * model.hidden * rs.residual.bytes
    acts_after_head = start[C.ACTIVATIONS] - saved_head
    # under autocast the head's matmul makes its weight gradient in the compute dtype and the
    # autocast copy's backward casts it to the trainable dtype: both live; without autocast the
    # gradient is made directly while the logits' compute-dtype gradient is still live
    beside = model.vocab * model.hidden * e if rs.setup.precision.autocast else tokens * model.vocab * e
    out = [dict(start), {C.GRADIENTS: 0, C.ACTIVATIONS: acts_after_head, C.LOGITS: 0,
                         C.TEMPORARIES: head_grad + beside + input_grads}]
    temp = one_tensor_step_temporaries(model, rs, largest, (model.vocab, model.hidden))
    if temp and not tied:
        out.append({C.GRADIENTS: head_grad, C.ACTIVATIONS: acts_after_head, C.LOGITS: 0,
                    C.TEMPORARIES: input_grads + temp})
    for c in candidates[1:-1]:          # after the head's backward: a tied gradient waits in the input buffer
        out.append({**c, C.GRADIENTS: tied})
    out.append({**candidates[-1], C.GRADIENTS: tied})   # plain step: every gradient but the untied embedding's
    # the last hook: the largest tensor (the embedding) steps while its gradient is live
    if temp:
        out.append({C.GRADIENTS: largest * p, C.ACTIVATIONS: outside_acts, C.LOGITS: 0, C.TEMPORARIES: temp})
    return out


def optimizer_phase(phase: dict) -> dict:
    """The loop's optimizer.step(): nothing runs; no gradient is live."""
    return {**phase, C.GRADIENTS: 0, C.TEMPORARIES: 0}


def notes(rs: Resolved) -> list[str]:
    if not rs.setup.optimizer_in_backward:
        return []
    return ["optimizer step inside backward (torchtune optimizer_in_bwd / HF *_layerwise): one optimizer per "
            "parameter stepped by its post-accumulate-grad hook, so no full gradient set is live"]
