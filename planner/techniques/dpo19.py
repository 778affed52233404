"""TRL 1.8-1.12's DPOTrainer (`--objective dpo --stack-versions trl-1.12`; axolotl 0.19 pins trl==1.9.0),
modelled from TRL 1.9.0's source [trl/trainer/dpo_trainer.py `_compute_loss` l.1329-1655]; `_compute_loss` is
the same in 1.8.0 and differs in 1.12.0 only in per-sequence scalar formulas (the f-divergence scores, l.1404-1427).
What differs in memory from TRL 1.16's DPOTrainer (planner/techniques/preference.py):

- no fused LM head: `outputs = model(**model_kwargs)` (l.1340) returns the model's full (2b, s, V) logits in the
  lm_head's output dtype (no labels, so transformers computes no loss), and `outputs` stays alive until the
  function returns;
- `selective_log_softmax(shift_logits, shift_labels)` (l.1347; trl/trainer/utils.py l.479-523): for 16-bit logits
  a loop over the 2b rows, `F.log_softmax(row_logits, dim=-1)` then `gather`: each row's (s - 1, V) log-softmax
  is saved for backward (all 2b: P x V, P = 2b(s - 1) shifted positions); under CUDA autocast log_softmax runs
  in fp32 (ATen autocast's fp32 set-opt-dtype list): an fp32 copy of the row, an fp32 output saved;
- the reference (l.1364-1385), unless precomputed: under no_grad, `self.ref_model(**ref_model_kwargs)` (full
  fine-tuning: a second copy) or the peft policy with its adapters disabled (`use_adapter(model, None)`), its own
  full (2b, s, V) logits and the same row loop (two rows' log-softmax alive at once, nothing saved); `ref_outputs`
  stays alive until the function returns;
- the metrics, while both logits are alive: `entropy_from_logits(shift_logits.detach())` (l.1587; utils.py
  l.526-560) reshapes the shifted (non-contiguous) view to (P, V), a copy, then runs 128-row chunks
  (log_softmax, exp, their product); then `chosen_logits[chosen_mask.bool()]` (l.1607, l.1609), a (completion
  rows, V) copy of each side in turn;
- backward: each row's gather and log-softmax gradients, the 2b row gradients stacked (UnbindBackward) into one
  (2b, s - 1, V) gradient, then SliceBackward's (2b, s, V) zeros for the logits' gradient.

The defaults TRL 1.9's DPOConfig gives: loss_type ["sigmoid"] (dpo_config.py l.234-235), beta 0.1 (l.283-284),
precompute_ref_log_probs False (l.216-217), max_length 1024 (l.188-189), padding_free False (l.203-204),
disable_dropout True (the policy's and reference's nn.Dropout, LoRA's too, set to 0: dpo_trainer.py l.913-916);
its reference is `create_model_from_path(ref_model_path, **model_init_kwargs)` (l.900-908), which loads float32
unless `model_init_kwargs` names a dtype (utils.py l.1144): the policy's dtype when the policy was loaded from a
path by the same kwargs, as gpuplan plans it (axolotl loads the reference itself with the policy's config and
casts it to `torch_dtype`: axolotl/train.py setup_reference_model, core/builders/rl.py l.332-333).

Checked against the simulator with TRL 1.9.0's own `_compute_loss` (profiler/trl19_dpo.py, matrix `trl19`), without
autocast and under it (CUDA autocast's fp32 log_softmax applied to TRL's calls by the simulator's stand-in).
What is not modelled is refused by TrainingSetup.validate (specs/setup.py _validate_trl19).
"""
from __future__ import annotations

from ..specs.enums import Objective, TrlVersion
from ..specs.errors import PlannerError
from ..specs.model import ModelSpec
from ..specs.resolved import Resolved
from ..specs.stack import Stack

ENTROPY_CHUNK = 128   # entropy_from_logits(chunk_size=128) [trl/trainer/utils.py l.526, TRL 1.9.0]


def applies(rs: Resolved) -> bool:
    return rs.setup.trl_version is TrlVersion.TRL_1_9 and rs.setup.objective is Objective.DPO


def _shapes(m: ModelSpec, rs: Resolved, T: int, sequences: int) -> tuple[int, int, int, int, int]:
    """(logits bytes, log-softmax bytes per position x V, shifted positions, one row's positions, completion
    positions of one side) for T tokens in `sequences` = 2b rows."""
    e = rs.compute.bytes
    P = T - sequences
    row = P // max(sequences, 1)
    labelled = rs.setup.labelled_positions(P, sequences)
    return T * m.vocab * e, 4 if rs.autocast and e < 4 else e, P, row, labelled // 2


def loss_bytes(m: ModelSpec, rs: Resolved, T: int, sequences: int) -> tuple[int, int, int]:
    """(forward peak, saved at forward end, backward temporaries) of TRL 1.9's DPO loss on T tokens in
    `sequences` = 2b rows (chosen then rejected), the reference's logits included (they are alive with the
    policy's through the metrics)."""
    V, e = m.vocab, rs.compute.bytes
    logits, a, P, row, side = _shapes(m, rs, T, sequences)
    saved = P * V * a                              # every row's log-softmax output
    up = row * V * 4 if a != e else 0              # autocast's fp32 copy of one row
    ref = 0 if rs.setup.precompute_ref_log_probs else logits
    rows_fwd = logits + saved + up                 # the policy's row loop, its last row's copy
    entropy = logits + saved + ref + P * V * e + 3 * ENTROPY_CHUNK * V * max(a, e)
    gathered = logits + saved + ref + side * V * e
    fwd = max(rows_fwd, entropy, gathered)
    # backward beyond the saved log-softmax: a row's gather gradient and input gradient, then the rows stacked
    # (2b row gradients and their stack), then the (2b, s, V) zeros beside the stacked gradient
    row_grad = 2 * row * V * a + (row * V * e if a != e else 0)
    stacked = P * V * e + (P * V * e if a == e else 0)
    bwd = max(row_grad, stacked - (saved - P * V * e if a != e else 0), logits)
    return int(fwd), int(saved), int(bwd)


def reference_forward_bytes(m: ModelSpec, rs: Resolved, T: int, sequences: int) -> int:
    """The no-grad reference forward's widest moment beyond the policy's saved log-softmax: the policy's logits
    (alive in `outputs`) and a reference layer's input, output and MLP intermediates, or the reference's
    logits beside, first, autocast's transient cast of its frozen lm_head (no grad: never cached) while the
    matmul writes them, then two rows' log-softmax."""
    if rs.setup.precompute_ref_log_probs:
        return 0
    e, r = rs.compute.bytes, rs.residual.bytes   # the final hidden states', and the lm_head's, dtype
    logits, a, _, row, _ = _shapes(m, rs, T, sequences)
    layer = T * (2 * r * m.hidden + 2 * e * m.intermediate)
    cast = m.vocab * m.hidden * e if rs.autocast and r != e else 0
    rows = 2 * row * m.vocab * a + (row * m.vocab * 4 if a != e else 0)
    head = T * r * m.hidden + logits + max(cast, rows)
    return int(logits + max(layer, head))


# the TRL trainer each stack row's versions run for DPO, KTO and GRPO: None where gpuplan has not read it
_TRAINERS = {Stack.TRL_1_16: TrlVersion.TRL_1_16, Stack.TRL_1_12: TrlVersion.TRL_1_9}
_TRL_ROWS = {Stack.TRL_1_6: "TRL <= 1.6", Stack.TRL_1_14: "TRL 1.13-1.14", Stack.TRANSFORMERS: "no TRL",
             Stack.TORCHTUNE: "torchtune 0.6.1"}


def for_stack(stack: Stack, objective: Objective) -> TrlVersion:
    """The TRL release whose `objective` trainer the stack row describes (PlannerError where none is modelled):
    trl-1.16 -> TRL 1.16's (gpuplan's plans), trl-1.12 -> TRL 1.9's DPOTrainer (1.8-1.12: `_compute_loss` read at
    1.8.0, 1.9.0 and 1.12.0); KTO and GRPO are modelled for TRL 1.16 only."""
    version = _TRAINERS.get(stack)
    if version is None:
        raise PlannerError(f"--objective {objective.value} with --stack-versions {stack.value} ({_TRL_ROWS[stack]}): "
                           f"that stack's {objective.value.upper()} trainer is not modelled; use --stack-versions "
                           "trl-1.16 (or trl-1.12 for DPO)")
    if version is TrlVersion.TRL_1_9 and objective is not Objective.DPO:
        raise PlannerError(f"--objective {objective.value} with --stack-versions trl-1.12 (TRL 1.8-1.12): TRL 1.9's "
                           f"{objective.value.upper()}Trainer is not modelled (gpuplan plans TRL 1.16's); use "
                           "--stack-versions trl-1.16 or drop it")
    return version


def notes(rs: Resolved) -> list[str]:
    s = rs.setup
    ref = ("precomputed reference log-probs: no reference model" if s.precompute_ref_log_probs else
           "the reference is the base with adapters disabled" if not rs.full else
           "a frozen reference copy in the policy's dtype")
    how = "checked against the simulator running TRL 1.9.0's _compute_loss" + (
        " (its log-softmax in fp32, as CUDA autocast runs it)" if rs.autocast else "")
    return [f"DPO modelled from TRL 1.9.0's source (the trl-1.12 stack, TRL 1.8-1.12): chosen and rejected in one "
            f"batch of {2 * s.batch_size} sequences, the model's full logits and a saved log-softmax per row, the "
            f"reference's full logits, {ref}; {how}; the padding mask's cost is not modelled yet"]
