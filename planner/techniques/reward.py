"""Reward modelling (TRL 1.14 trl/trainer/reward_trainer.py RewardTrainer), modelled from its source and
checked against its own `compute_loss` under the simulator (profiler/trl_steps.py reward_loss).

- The model: `create_model_from_path(model, AutoModelForSequenceClassification, num_labels=1)`
  (`RewardTrainer.__init__`, l.394-398): the decoder with a score head `nn.Linear(hidden, num_labels,
  bias=False)` in place of the lm_head, untied from the embedding [transformers 5.24
  modeling_layers.py GenericForSequenceClassification.__init__]: no vocabulary weight or logits. The
  plan runs on that architecture (`score_model`: ModelSpec.score_labels = 1): weights, gradients,
  optimizer state and the embedding's backward (one (V, H) buffer, nothing tied to add it into) follow.
- With peft the score head is a `modules_to_save` copy: TRL's docstring asks for
  `modules_to_save=["score"]` (l.324-327) and `task_type="SEQ_CLS"` adds it by itself
  [peft/peft_model.py PeftModelForSequenceClassification: classifier_module_names]; the plan trains it.
- The batch: `DataCollatorForPreference.torch_call` (l.203-229) stacks the chosen then the rejected
  ids, 2b sequences padded to the longest, with an attention mask (--padding: its cost as any padded
  batch's, techniques/masks.py); no packing (RewardConfig has none).
- The forward (GenericForSequenceClassification.forward): `logits = self.score(hidden_states)`,
  (2b, s, 1) in the compute dtype; the last non-pad token from `(input_ids != pad_token_id).to(int32)`
  times an int32 `arange(s)`, `argmax(-1)`; `pooled_logits = logits[arange(2b), last_non_pad_token]`
  (its backward keeps the two int64 index vectors, not the logits).
- The loss (`compute_loss`, l.757-797): `torch.chunk(pooled.squeeze(-1), 2)`, `-logsigmoid(chosen -
  rejected [- margin]).mean()`, plus `center_rewards_coefficient * mean((chosen + rejected) ** 2)` when
  set: tensors of b elements; its metrics are no-grad scalars. `center_rewards_coefficient` and
  `margin` change no memory the plan counts.
- Backward: IndexBackward's zeros of the (2b, s, 1) logits, then the score's input gradient (2b, s, H),
  the decoder's backward as in the causal step.
"""
from __future__ import annotations

from dataclasses import replace

from ..specs.enums import Objective, Padding
from ..specs.memo import per_model
from ..specs.model import ModelSpec
from ..specs.resolved import Resolved
from ..specs.setup import TrainingSetup

# RewardTrainer.__init__: `model_init_kwargs["num_labels"] = 1  # the only output of the model is the
# reward score` [trl/trainer/reward_trainer.py l.394, TRL 1.14.0]
SCORE_LABELS = 1

_SCORED: dict[int, tuple] = {}


def score_model(m: ModelSpec) -> ModelSpec:
    """`m` as AutoModelForSequenceClassification(num_labels=1) builds it: the score head, no lm_head,
    the embedding untied (memoized per model object, so the planner's per-model caches hit)."""
    if m.score_labels:
        return m
    return per_model(_SCORED, id(m), m, lambda: replace(m, score_labels=SCORE_LABELS, tied_embeddings=False,
                                                        lm_head_bias=False, final_logit_softcap=None))


def model_for(m: ModelSpec, setup: TrainingSetup) -> ModelSpec:
    """The architecture `setup` trains: the sequence-classification model for reward modelling, else `m`."""
    return score_model(m) if setup.objective is Objective.RM else m


def loss_bytes(m: ModelSpec, rs: Resolved, T: int, sequences: int) -> tuple[int, int, int]:
    """(forward peak, saved at forward end, backward temporaries) of the score head and RewardTrainer's loss
    on T tokens in `sequences` = 2b sequences (chosen then rejected)."""
    e, h = rs.compute.bytes, m.hidden
    scores = T * m.score_labels * e                    # self.score(hidden_states): (2b, s, 1)
    # the last non-pad token: the (2b, s) int32 mask and its product with the int32 arange(s)
    last_token = T * (4 + 4)
    index = 2 * sequences * 8                          # arange(2b) and argmax(-1): int64, kept by IndexBackward
    fwd = scores + last_token + index
    # backward: IndexBackward's zeros of the scores, then the score's input gradient (2b, s, H)
    bwd = scores + T * h * e
    return int(fwd), int(index), int(bwd)


def notes(rs: Resolved) -> list[str]:
    peft = (" its modules_to_save copy of the score head trained beside the adapters," if rs.setup.peft else "")
    padded = "" if rs.setup.padding is Padding.NONE else ", padded with their attention mask"
    out = []
    if rs.setup.recipe.kbit_upcast:   # reward_trainer.py casts the trainable parameters to bf16 only (l.535-538)
        out.append("RewardTrainer (TRL 1.14) does not call prepare_model_for_kbit_training: for its QLoRA path add "
                   "--no-kbit-prepare (the plan keeps the upcast asked for)")
    return out + [f"reward modelling modelled from TRL 1.14's RewardTrainer source (simulated with its own compute_loss): "
            f"AutoModelForSequenceClassification(num_labels=1), a score head (hidden x 1) in place of the lm_head "
            f"(no vocabulary logits),{peft} chosen and rejected in one batch of {2 * rs.setup.batch_size} sequences "
            f"of --seq-len tokens{padded}"]
