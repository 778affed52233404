"""PPO's training phase on one GPU (TRL 1.12.0 PPOTrainer.train(), l.801-876; planner/techniques/ppo.py):
the step the estimate plans. Checked against profiler/ppo_step.py under the simulator.

One micro-batch: TRL's `forward(model, ...)` runs `PolicyAndValueWrapper.forward`: the value backbone and its
score head first, then the policy, both with `output_hidden_states=True`; the policy's logits are sliced to the
response, divided in place by the temperature and scored by `selective_log_softmax`; the loss is the clipped
policy loss plus `vf_coef` x the clipped value loss; one backward runs through both graphs, the policy's first
(its nodes are the later ones); `optimizer.step()` / `zero_grad()` every `gradient_accumulation_steps`
micro-batches (accelerate's accumulate); then, under no_grad, the entropy statistics over the response logits
(`softmax`, `logsumexp`, their product). The policy's `output` (its logits and hidden states) stays bound from
its forward to the end of the mini-batch (`del` at l.868-875): through backward, the optimizer step, the
statistics and, within a mini-batch of several micro-batches, the next micro-batch's forward.
"""
from __future__ import annotations

from dataclasses import replace

from ..specs.enums import Component as C
from ..specs.enums import Phase
from ..specs.model import ModelSpec
from ..specs.params import param_counts
from ..specs.setup import TrainingSetup
from ..techniques import checkpointing, generation, ppo, reward
from .pieces import terms
from .rollouts import GenerationPhase
from .step import Step, technique_notes


def _policy_setup(setup: TrainingSetup) -> TrainingSetup:
    """The policy as it runs: TRL's disable_dropout_in_model sets every Dropout's p to 0, LoRA's included."""
    return setup.with_(lora=replace(setup.lora, dropout=0.0)) if setup.peft else setup


def head_bytes(m: ModelSpec, e: int, b: int, s: int, R: int) -> tuple[int, int, int]:
    """(forward peak, saved at forward end, backward temporaries beside the bound logits) of the policy's head:
    the (b, s, V) logits in the weights' dtype (no autocast), `logits[:, q-1:-1] /= temperature` in place (a
    view), then TRL 1.12's selective_log_softmax [trl/trainer/utils.py]: 16-bit logits row by row through
    log_softmax, whose (R, V) output each row saves; fp32 logits through gather and a logsumexp per row (its
    (R, V) exponentials one row at a time; it saves its input, the logits). Backward, once the rows are done:
    the rows' gradients and their stack ((b, R, V) each), and for the in-place division on the slice a (b, s, V)
    gradient of the logits and CopySlices' clone of it, which the lm_head's matmul takes (as simulated)."""
    V = m.vocab
    logits, rows = b * s * V * e, b * R * V * e
    if e < 4:
        fwd = saved = logits + rows
    else:
        fwd, saved = logits + R * V * 4, logits
    bwd = 2 * rows + 2 * logits
    return int(fwd), int(saved), int(bwd)


def ppo_step(model: ModelSpec, requested: TrainingSetup, setup: TrainingSetup) -> Step:
    """PPO's training phase on one GPU: the live set of each phase, the rollout's kept tensors included."""
    pset = _policy_setup(setup)
    rs, st, act = terms(model, pset)
    vmodel = reward.score_model(ppo.value_spec(model, setup))
    vset = ppo.value_setup(setup)
    vrs, vst, vact = terms(vmodel, vset)
    rmodel = reward.score_model(ppo.reward_spec(model, setup))
    b, s, R = setup.batch_size, setup.seq_len, setup.response_len
    T, L, H = b * s, model.n_layers, model.hidden
    e, r, ve = rs.compute.bytes, rs.residual.bytes, vrs.compute.bytes
    ref = param_counts(model).total * rs.trainable.bytes if rs.full else 0   # create_reference_model
    frozen_reward = param_counts(rmodel).total * vrs.trainable.bytes
    kept = ppo.kept_bytes(model, setup, ve)
    W = st.weights + vst.weights + ref + frozen_reward
    O = st.optimizer_state + vst.optimizer_state
    G_p, G_v = st.gradients, vst.gradients
    G = G_p + G_v
    g_live = G if setup.grad_accum > 1 else 0

    # the value model: every activation saved (never checkpointed), its (b, s, 1) score kept as vpred_temp
    v_acts = T * (vmodel.n_layers * vact.per_layer + vact.outside)
    vpred = T * vmodel.score_labels * ve
    v_transient = T * (2 * ve * vmodel.hidden + 2 * ve * vmodel.intermediate)
    # embedding_dense_backward's (vocab, hidden) gradient: no lm_head to tie it to in a classifier
    v_embed = vmodel.vocab * vmodel.hidden * vrs.trainable.bytes

    # the policy
    ckpt = checkpointing.enabled(rs)
    p_acts = T * (L * (act.ckpt_per_layer if ckpt else act.per_layer) + act.outside)
    head_fwd, head_saved, head_bwd = head_bytes(model, e, b, s, R)
    hidden = (L + 1) * T * H * r            # output.hidden_states, bound with the logits
    # without checkpointing, a 16-bit run's layer outputs are not what autograd saves (RMSNorm saves its fp32
    # copy): output.hidden_states keeps them beside the saved set (with checkpointing they are the saved inputs)
    if not ckpt and r < 4:
        p_acts += hidden
    logits = T * model.vocab * e
    layer_transient = T * (2 * r * H + 2 * e * model.intermediate)
    # the embedding's backward (step.py single_gpu_phases): tied, its gradient and the lm_head's are summed; with
    # the gradient already accumulated from an earlier micro-batch the sum is a third buffer, not the .grad
    tied = (3 if g_live else 2) if model.tied_embeddings else 1
    p_embed = model.vocab * H * rs.trainable.bytes * tied if rs.full else 0
    # within a mini-batch of several micro-batches, the previous one's tensors are still bound: its output (logits,
    # hidden states) until this forward returns, its softmax probabilities (b, R, V) until this backward is done
    probs = b * R * model.vocab * e if ppo.micro_batches_per_mini(setup) > 1 else 0

    def live(g: int, a: int, lg: int, t: int) -> dict[C, int]:
        return {C.WEIGHTS: W, C.GRADIENTS: g, C.OPTIMIZER_STATE: O, C.ACTIVATIONS: a + kept, C.LOGITS: lg,
                C.TEMPORARIES: t}

    prev_logits, prev_acts = (logits, hidden + probs) if probs else (0, 0)
    forward = [live(g_live, v_acts + vpred + prev_acts, prev_logits, v_transient),
               live(g_live, v_acts + vpred + prev_acts + p_acts, head_fwd + prev_logits, 0)]
    backward = [live(g_live, v_acts + vpred + p_acts + probs, head_saved, 0),       # its start
                live(g_live, v_acts + vpred + p_acts + probs, logits, head_bwd)]    # the head's backward
    if ckpt:   # the last policy layer recomputed (the saved layer inputs are the bound hidden states)
        backward.append(live(g_live, v_acts + vpred + p_acts + probs, logits, T * act.per_layer + layer_transient))
    backward.append(live(G if g_live else G_p, v_acts + vpred + T * act.outside + hidden + probs, logits,
                         layer_transient + p_embed))
    # then the value model's backward, the policy's gradients done and its output still bound
    backward.append(live(G - v_embed, T * vact.outside + hidden + probs, logits, v_transient + v_embed))
    optimizer = [live(G, hidden, logits, st.optimizer_step_temporaries + vst.optimizer_step_temporaries),
                 # the no-grad statistics: softmax's (b, R, V) probabilities and their product with the logits
                 live(g_live, hidden, logits, 2 * b * R * model.vocab * e)]
    phases = {Phase.FORWARD: max(forward, key=lambda c: sum(c.values())),
              Phase.BACKWARD: max(backward, key=lambda c: sum(c.values())),
              Phase.OPTIMIZER: max(optimizer, key=lambda c: sum(c.values()))}
    phases = {p: {c: int(comps.get(c, 0)) for c in C.tensor_components()} for p, comps in phases.items()}
    notes = technique_notes(model, requested, rs, st) + ppo.notes(setup)
    return Step(phases, tuple(notes), st.optimizer_paged + vst.optimizer_paged,
                trainable_params=st.trainable_params + vst.trainable_params)



def rollout_phase(model: ModelSpec, setup: TrainingSetup):
    """PPO's rollout (RunPhase.GENERATE) as a rollouts.GenerationPhase, modelled from TRL 1.12.0's source
    [ppo_trainer.py train(), l.676-800; batch_generation, generate] and checked against the simulated rollout
    (profiler/ppo_step.py _rollout: TRL's own batch_generation, forward and get_reward). Resident: the four models' weights
    and the optimizer state (the gradients were set to None); the previous update's rollout tensors stay bound
    until batch_generation returns (steady state). generate() on chunks of `local_rollout_forward_batch_size`
    queries, `max_new_tokens = response_length`, sampled with `output_scores=True`: each decode step keeps its
    (rows, V) fp32 scores, `torch.stack` copies them, and `pad()` copies every chunk's into the padded
    `logitss` while the list is alive. Then, per chunk, no-grad forwards of the reference (full logits and
    hidden states), value and reward models over query + response."""
    rs, st, _ = terms(model, _policy_setup(setup))
    vmodel = reward.score_model(ppo.value_spec(model, setup))
    vrs, vst, _ = terms(vmodel, ppo.value_setup(setup))
    rmodel = reward.score_model(ppo.reward_spec(model, setup))
    ref = param_counts(model).total * rs.trainable.bytes if rs.full else 0
    weights = st.weights + vst.weights + ref + param_counts(rmodel).total * vrs.trainable.bytes
    opt = st.optimizer_state + vst.optimizer_state
    kept = ppo.kept_bytes(model, setup, vrs.compute.bytes)
    chunks, rows = ppo.rollout_chunks(setup)
    s, R, V = setup.seq_len, setup.response_len, model.vocab
    e, r = rs.compute.bytes, rs.residual.bytes
    chunk_scores = rows * R * V * 4
    g = generation.generation_bytes(model, rs, rows, s - R, R, generation.Casts())
    T = rows * s
    moments = {  # beyond the resident weights and optimizer state
        f"generate ({g.moment})": (kept + (chunks - 1) * chunk_scores + chunk_scores + g.other, g.cache),
        "stack of the scores": (kept + (chunks - 1) * chunk_scores + 2 * chunk_scores, 0),
        "pad of the scores": (kept + 2 * chunks * chunk_scores, 0),
        "reference forward": (kept + T * (V * e + (model.n_layers + 1) * model.hidden * r
                                          + 2 * r * model.hidden + 2 * e * model.intermediate), 0),
    }
    moment = max(moments, key=lambda k: sum(moments[k]))
    acts, cache = moments[moment]
    comps = {C.WEIGHTS: weights, C.GRADIENTS: 0, C.OPTIMIZER_STATE: opt, C.ACTIVATIONS: int(acts + cache),
             C.LOGITS: 0, C.TEMPORARIES: 0}
    note = (f"PPO rollout modelled from TRL 1.12.0's source, checked against the simulator: {ppo.local_batch(setup)} "
            f"queries generated "
            f"in {chunks} chunk(s) of {rows} (local_rollout_forward_batch_size), {R} tokens each (decoded to the full "
            f"length), KV cache {g.cache / 2**30:,.2f} GiB at its peak; every step's fp32 scores kept "
            f"(output_scores=True) and padded into logitss; the previous rollout's tensors still bound; then the "
            f"reference, value and reward forwards per chunk")
    return GenerationPhase(int(sum(comps.values())), comps, ppo.local_batch(setup), g.cache, moment, (note,))
