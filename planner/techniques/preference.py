"""Preference training (TRL >= 1.15 DPOTrainer), modelled from TRL 1.16.0's source
[trl/trainer/dpo_trainer.py _compute_loss, __init__]: each example's chosen and rejected
sequences run as one batch of 2b sequences through the policy, with TRL's fused LM head on the
completion positions (`labels` are -100 on the prompt); then, under no_grad and while the
policy's graph is alive, the reference forward on the same batch. The reference is the policy
with its adapters disabled for peft (no extra weights), none with `precompute_ref_log_probs`,
else a frozen copy loaded in the policy's dtype (`ref_model_init_kwargs["dtype"] = model.dtype`).
Padded batches build an attention mask, whose cost is not modelled yet.

KTO (TRL 1.16.0 trl/trainer/kto_trainer.py `_compute_loss`, `_compute_kl_logps`): one completion per
example through the fused head; before it, a no-grad policy forward on the KL batch (each prompt
with another example's completion: as many sequences), which peaks below the reference moment that
follows (the same forward, on top of the policy's graph); then, under no_grad, the reference's KL
and main forwards one after the other, with the same reference model rules as DPO.
"""
from __future__ import annotations

from ..specs.enums import Objective
from ..specs.model import ModelSpec
from ..specs.params import param_counts
from ..specs.resolved import Resolved
from . import dpo19, grpo, loss, orpo, reward


def sequences_per_example(rs: Resolved) -> int:
    """Sequences one example puts through the policy with gradients: DPO's, ORPO's and reward modelling's
    chosen and rejected."""
    return 2 if rs.setup.objective in (Objective.DPO, Objective.ORPO, Objective.RM) else 1


def time_sequences(rs: Resolved) -> tuple[int, int, str]:
    """(sequences per example through the policy with gradients, sequences per example through a no-grad
    forward, what they are) for the time model, from the same trainer steps this module plans:
    DPO's chosen and rejected through the policy and, unless precomputed, the reference; KTO's completion,
    its no-grad KL forward, and the reference's KL and main forwards; ORPO's and reward modelling's pair.
    GRPO's log-prob passes after generate (the reference's, the old policy's), each a no-grad forward over
    the generation batch, one micro-batch's worth per micro-batch; its generation is timed apart
    (planner/speed/rollout.py)."""
    s = rs.setup
    policy = sequences_per_example(rs)
    if s.objective is Objective.GRPO:
        passes = [n for n, on in (("the reference's", grpo.keeps_reference(s)),
                                  ("the old policy's", grpo.old_policy_pass(s))) if on]
        return policy, len(passes), (" and ".join(passes) + " no-grad log-prob forward after generate") if passes else ""
    ref = s.objective.has_reference and not s.precompute_ref_log_probs
    if s.objective is Objective.KTO:   # the KL completions through the policy, then the reference's KL and main
        return policy, 1 + (2 if ref else 0), ("a no-grad policy forward on the KL completions"
                                                + (", the reference's KL and main forwards" if ref else ""))
    what = "chosen and rejected" if policy == 2 else ""
    if ref:   # DPO: the reference's no-grad forward on the same 2b sequences
        return policy, policy, what + " and the reference's no-grad forward on both"
    return policy, 0, what


def reference_weight_bytes(m: ModelSpec, rs: Resolved) -> int:
    """A frozen reference model's weights, where DPO keeps one."""
    s = rs.setup
    if s.objective is Objective.GRPO:   # beta > 0: a frozen copy (full fine-tuning)
        return grpo.reference_weight_bytes(m, rs)
    if not s.objective.has_reference or not rs.full or s.precompute_ref_log_probs:
        return 0
    return param_counts(m).total * rs.trainable.bytes


def reference_forward_bytes(m: ModelSpec, rs: Resolved, T: int, sequences: int) -> int:
    """The no-grad reference forward's widest moment, on top of the policy's saved graph: a layer's
    input and output and the MLP's two intermediates, or the fused head's forward on the final
    hidden states; plus the reference log-probs it returns (fp32 per position)."""
    s = rs.setup
    if dpo19.applies(rs):   # TRL 1.9's DPOTrainer: the full logits of both models
        return dpo19.reference_forward_bytes(m, rs, T, sequences)
    if not s.objective.has_reference or s.precompute_ref_log_probs:
        return 0
    e, r = rs.compute.bytes, rs.residual.bytes
    layer = T * (2 * r * m.hidden + 2 * e * m.intermediate)
    head = T * r * m.hidden + loss.trl_fused_lm_head(m, rs, T, sequences)[0]
    return int(max(layer, head) + 4 * (T - sequences))


def notes(rs: Resolved) -> list[str]:
    s = rs.setup
    if s.objective is Objective.ORPO:
        return orpo.notes(rs)
    if s.objective is Objective.GRPO:
        return grpo.notes(rs)
    if s.objective is Objective.RM:
        return reward.notes(rs)
    if dpo19.applies(rs):
        return dpo19.notes(rs)
    if not s.objective.has_reference:
        return []
    ref = ("precomputed reference log-probs: no reference model" if s.precompute_ref_log_probs else
           "the reference is the base with adapters disabled" if not rs.full else
           "a frozen reference copy in the policy's dtype")
    if s.objective is Objective.KTO:
        return [f"KTO modelled from TRL 1.16.0's source: {s.batch_size} completions with gradients, a no-grad "
                f"policy forward on as many mismatched KL completions, {ref}; the padding mask's cost is not "
                "modelled yet"]
    return [f"DPO modelled from TRL 1.16.0's source: chosen and rejected in one batch of "
            f"{2 * s.batch_size} sequences, {ref}; the padding mask's cost is not modelled yet"]
