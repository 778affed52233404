"""GRPO (TRL 1.16.0 trl/trainer/grpo_trainer.py GRPOTrainer, grpo_config.py GRPOConfig) with HF generate,
modelled from its source. The generation phase's generate is checked against transformers' sampling
generate under the simulator (tests/profiler/test_grpo_generation.py); the training step's fused LM head
is TRL's Triton kernel: modelled, not simulated.

A run has two peaks, each its own phase (the run's peak is the larger):

- generation (RunPhase.GENERATE), at the start of every `steps_per_generation x num_iterations` steps
  (`_prepare_inputs`): `unwrapped_model.generate(...)` under `torch.no_grad()` on the local generation batch,
  `per_device_train_batch_size x steps_per_generation` completions (GRPOConfig.__post_init__:
  `steps_per_generation` defaults to `gradient_accumulation_steps`), `do_sample=True` with
  temperature 1, top_p 1, top_k 0: no logits warper, so each decode step adds softmax's (b, V) fp32
  probabilities before `torch.multinomial` [transformers generation/utils.py _sample]. The model is
  accelerate's prepared model, whose forward runs under the mixed-precision autocast. Generation length
  depends on the data: the plan decodes the full `max_completion_length` (as `min_new_tokens =
  max_new_tokens`), the cache and the decode moments of techniques/generation.py. The optimizer state
  stays allocated; the gradients are gone (`zero_grad(set_to_none=True)` before the step begins).
  Then, under no_grad, in chunks of `per_device_train_batch_size` sequences
  (`_generate_and_score_completions`): the reference log-probs when `beta != 0` (a frozen copy for full
  fine-tuning, `create_model_from_path` with the policy's dtype; peft: the adapters disabled) and the
  old policy's when `gradient_accumulation_steps % (steps_per_generation x num_iterations) != 0`, each
  a forward through TRL's fused LM head (`fused_lm_head=True`).
- the training step (the step builder's, RunPhase.STEP): `_compute_loss` runs
  `_get_per_token_logps_and_entropies` on b sequences of prompt + completion with labels on the
  completion only (`labels[:, :-logits_to_keep] = -100`): TRL's fused LM head on b x completion_len
  positions (techniques/loss.py trl_fused_lm_head); no value model; the reference, when kept, adds its
  weights to every phase.

`ds3_gather_for_generation` (ZeRO-3 gathers the whole policy for generate) and vLLM (`use_vllm`,
colocate mode's `vllm_gpu_memory_utilization` of the device) need more than one GPU or an engine the
planner does not model yet: refused. The setup's checks are in specs/setup.py (validate), the generation
phase's bytes in memory/rollouts.py.
"""
from __future__ import annotations

from ..specs.enums import Objective
from ..specs.model import ModelSpec
from ..specs.params import param_counts
from ..specs.resolved import Resolved
from ..specs.setup import TrainingSetup

NUM_ITERATIONS = 1   # GRPOConfig.num_iterations default [trl/trainer/grpo_config.py, TRL 1.16.0]


def steps_per_generation(s: TrainingSetup) -> int:
    return s.steps_per_generation or s.grad_accum


def generation_batch(s: TrainingSetup) -> int:
    """Completions one GPU generates at once: per_device_train_batch_size x steps_per_generation."""
    return s.batch_size * steps_per_generation(s)


def keeps_reference(s: TrainingSetup) -> bool:
    return s.objective is Objective.GRPO and s.kl_beta > 0


def reference_weight_bytes(m: ModelSpec, rs: Resolved) -> int:
    """beta > 0 with full fine-tuning: a frozen copy in the policy's dtype; peft: the adapters disabled (0)."""
    return param_counts(m).total * rs.trainable.bytes if keeps_reference(rs.setup) and rs.full else 0


def old_policy_pass(s: TrainingSetup) -> bool:
    """`gradient_accumulation_steps % generate_every != 0`, or vLLM with its importance-sampling correction
    (`vllm_importance_sampling_correction=True` by default): the old policy's log-probs are computed."""
    return s.grad_accum % (steps_per_generation(s) * NUM_ITERATIONS) != 0 or s.vllm_colocate > 0


def notes(rs: Resolved) -> list[str]:
    s = rs.setup
    ref = ("no reference model (beta = 0)" if not keeps_reference(s) else
           "the reference is the base with adapters disabled" if not rs.full else
           "a frozen reference copy in the policy's dtype")
    return [f"GRPO training step modelled from TRL 1.16.0's source (not simulated): {s.batch_size} prompt + completion "
            f"sequences, TRL's fused LM head on the {s.completion_len} completion tokens of each, no value model, "
            f"{ref}; the generation phase is planned apart (run phases)"]
