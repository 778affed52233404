"""PPO as TRL 1.12.0's `trl.experimental.ppo.PPOTrainer` runs it (removed in TRL 1.13, huggingface/trl#7020),
modelled from its source [trl/experimental/ppo/ppo_trainer.py, ppo_config.py, TRL 1.12.0]; the training
and rollout phases are checked against the simulator (profiler/ppo_step.py, which runs TRL 1.12's own functions).

Four models, on one GPU, all resident in every phase:
- the policy (the causal LM being trained; peft's LoRA when `peft_config` is given),
- the value model: `AutoModelForSequenceClassification(num_labels=1)` as TRL's examples load it
  (examples/scripts/ppo/ppo.py), trained in full whatever the policy's method (peft wraps the policy only),
  and joined to the policy by `PolicyAndValueWrapper`, so one optimizer holds both models' states;
  `PolicyAndValueWrapper.gradient_checkpointing_enable` reaches the policy only: the value backbone saves
  every activation,
- the reference: `create_reference_model(policy)`, a frozen deepcopy in the policy's dtype; None with peft
  (`null_ref_context`: the policy with its adapters disabled),
- the reward model: a frozen sequence-classification model.
TRL's `disable_dropout_in_model` runs on all four (LoRA's dropout included).

PPOTrainer never calls `gradient_checkpointing_enable` (it skips Trainer.__init__) and builds
`Accelerator(gradient_accumulation_steps=...)` without `mixed_precision`: the models run in the dtype they
were loaded in unless `accelerate launch --mixed_precision` says otherwise; the plan takes both from the
setup, and models runs without autocast.

Each update (`train()`): the rollout on `local_batch_size = per_device_train_batch_size x
gradient_accumulation_steps` queries (generate in chunks of `local_rollout_forward_batch_size`,
`output_scores=True`, then no-grad forwards of the reference, value and reward models over query + response),
then `num_ppo_epochs` epochs of `num_mini_batches` mini-batches, each of micro-batches of
`per_device_train_batch_size` through policy and value with gradients. The training phase is the step the
estimate plans (memory/ppo_step.py); the rollout is a run phase of its own (RunPhase.GENERATE). Both are
checked against the simulator, which runs the rollout with TRL 1.12's batch_generation, forward and get_reward.
"""
from __future__ import annotations

from ..io.catalog import resolve_model
from ..specs.errors import PlannerError
from ..specs.model import ModelSpec
from ..specs.setup import TrainingSetup

TRL_VERSION = "1.12.0"
VERSION_NOTE = ("PPO modelled from TRL 1.12.0's trl.experimental.ppo (removed in 1.13, huggingface/trl#7020)")
# PPOConfig defaults [trl/experimental/ppo/ppo_config.py, TRL 1.12.0]; they shape no tensor the plan counts
TEMPERATURE = 0.7
KL_COEF = 0.05
CLIPRANGE = 0.2
CLIPRANGE_VALUE = 0.2
VF_COEF = 0.1
GAMMA = 1.0
LAM = 0.95
# per-token (local batch, response_length) tensors train() keeps bound through the training phase [l.690-800]:
# int64 responses, postprocessed_responses, response_idxs; fp32 logprobs, ref_logprobs, logr, kl,
# non_score_reward, rewards, advantages, returns; bool padding_mask, padding_mask_p1; values in the value
# model's dtype; the GAE loop's list holds one fp32 (local batch) tensor per response position
KEPT_INT64, KEPT_FP32, KEPT_BOOL = 3, 8, 2
# how the simulator (profiler/ppo_step.py) reports the rollout phase's peak beside the training phase's
ROLLOUT_NOTE = "rollout phase peak allocated bytes (simulated): "


def local_batch(s: TrainingSetup) -> int:
    """Queries one GPU rolls out per update: `per_device_train_batch_size x gradient_accumulation_steps`."""
    return s.batch_size * s.grad_accum


def rollout_chunks(s: TrainingSetup) -> tuple[int, int]:
    """(chunks, rows of the widest) of `batch_generation`, `local_rollout_forward_batch_size` queries each."""
    n = local_batch(s)
    rows = min(s.rollout_batch, n)
    return -(-n // rows), rows


def micro_batches_per_mini(s: TrainingSetup) -> int:
    """Micro-batches in one mini-batch: `local_mini_batch_size / per_device_train_batch_size`."""
    return s.grad_accum // s.mini_batches


def value_spec(m: ModelSpec, s: TrainingSetup) -> ModelSpec:
    """The value model's causal-LM spec (its score head added by reward.score_model): the policy's, or --value-model."""
    return _resolve(s.value_model) if s.value_model else m


def reward_spec(m: ModelSpec, s: TrainingSetup) -> ModelSpec:
    return _resolve(s.reward_model) if s.reward_model else m


def _resolve(name: str) -> ModelSpec:
    return resolve_model(name)


def value_setup(s: TrainingSetup) -> TrainingSetup:
    """The value model's setup: a sequence-classification model trained in full, never checkpointed."""
    return s.ppo_value_setup()


def kept_bytes(m: ModelSpec, s: TrainingSetup, value_bytes: int) -> int:
    """Bytes the rollout leaves bound through the training phase [ppo_trainer.py train(), l.676-800]:
    the batch's input_ids and attention_mask (int64), the padded query_responses (int64) and sampled scores
    `logitss` ((chunks x rows, response_length, vocab) fp32, never deleted), the per-token tensors and the
    per-query ones (sequence lengths, their + 1, actual_start, actual_end int64; scores; contain_eos bool)."""
    n, R = local_batch(s), s.response_len
    q = s.seq_len - R
    chunks, rows = rollout_chunks(s)
    batch = 2 * n * q * 8
    padded = chunks * rows * (s.seq_len * 8 + R * m.vocab * 4)
    per_token = n * R * (KEPT_INT64 * 8 + KEPT_FP32 * 4 + KEPT_BOOL + value_bytes) + R * n * 4
    per_query = n * (4 * 8 + value_bytes + 1)
    return batch + padded + per_token + per_query


def notes(s: TrainingSetup) -> list[str]:
    ref = "the reference is the policy with adapters disabled" if s.peft else "a frozen reference copy of the policy"
    value = s.value_model or "the policy's model"
    reward = s.reward_model or "the policy's model"
    return [f"{VERSION_NOTE}: training phase simulated with TRL 1.12.0's own functions (profiler/ppo_step.py); "
            f"{local_batch(s)} queries per rollout, {s.response_len}-token responses, micro-batches of {s.batch_size} "
            f"in {s.mini_batches} mini-batch(es); value model ({value}, sequence classification, trained in full, not "
            f"checkpointed) and reward model ({reward}, frozen) resident, {ref}; the rollout's sampled fp32 scores "
            "(local batch x response x vocab) stay bound through the training phase; the rollout is planned apart "
            "(run phases)",
            "PPOTrainer (TRL 1.12) enables neither autocast (Accelerator() without mixed_precision) nor gradient "
            "checkpointing (it skips Trainer.__init__): --precision and --checkpointing are taken as the run sets "
            "them on the models"]


def check_stack(stack: str, installed_trl: str | None) -> None:
    """PlannerError when the library versions described have no PPOTrainer: TRL 1.13 and later
    (huggingface/trl#7020 removed trl.experimental.ppo); the plan models TRL 1.12.0's."""
    if stack not in ("trl-1.14", "trl-1.16"):
        return
    which = f"installed trl {installed_trl}" if installed_trl else f"--stack-versions {stack}"
    raise PlannerError(f"--objective ppo: {which} has no PPOTrainer (huggingface/trl#7020 removed "
                       f"trl.experimental.ppo in 1.13); the plan models TRL {TRL_VERSION}'s: run it with trl 1.12, "
                       "or use --stack-versions trl-1.12")
