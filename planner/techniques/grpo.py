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
planner does not model yet: refused.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..specs.enums import Component as C
from ..specs.enums import Loss, Objective
from ..specs.errors import PlannerError
from ..specs.model import ModelSpec
from ..specs.params import param_counts
from ..specs.resolved import Resolved
from . import generation, loss

if TYPE_CHECKING:
    from ..specs.setup import TrainingSetup

NUM_ITERATIONS = 1   # GRPOConfig.num_iterations default [trl/trainer/grpo_config.py, TRL 1.16.0]


def validate(s: "TrainingSetup") -> None:
    """What GRPOConfig / GRPOTrainer raise, and what the plan does not model yet."""
    if s.loss is not Loss.TRL:
        raise PlannerError("TRL's GRPOTrainer scores completions with its fused LM head (fused_lm_head=True): use "
                           "--loss trl with --objective grpo")
    if s.loss_token_fraction != 1.0:
        raise PlannerError("GRPO's labelled positions are its completions (--max-completion-length): drop --loss-tokens")
    if not 0 < s.completion_len < s.seq_len:
        raise PlannerError(f"--max-completion-length {s.completion_len} must be positive and below --seq-len "
                           f"{s.seq_len} (prompt + completion)")
    if s.num_generations < 2:
        raise PlannerError("GRPO needs at least 2 generations per prompt (TRL raises otherwise): "
                           "--num-generations 2 or more")
    if (s.steps_per_generation or 1) < 1:
        raise PlannerError("--steps-per-generation must be at least 1")
    if not 0.0 <= s.vllm_colocate < 1.0:
        raise PlannerError(f"--vllm-colocate is vLLM's gpu_memory_utilization, a fraction in [0, 1), got {s.vllm_colocate}")
    if s.kl_beta < 0:
        raise PlannerError(f"--kl-beta must be 0 or more, got {s.kl_beta}")
    if generation_batch(s) % s.num_generations:
        raise PlannerError(f"the generation batch ({s.batch_size} x {steps_per_generation(s)} steps per generation = "
                           f"{generation_batch(s)}) must be a multiple of --num-generations {s.num_generations} "
                           "(GRPOConfig raises otherwise): change --batch-size, --steps-per-generation or "
                           "--num-generations")
    if not s.parallel.single_gpu:
        raise PlannerError("--objective grpo is planned for one GPU only for now (ZeRO-3's ds3_gather_for_generation "
                           "and FSDP's summon_full_params are not modelled yet); drop the multi-GPU flags")


def steps_per_generation(s: "TrainingSetup") -> int:
    return s.steps_per_generation or s.grad_accum


def generation_batch(s: "TrainingSetup") -> int:
    """Completions one GPU generates at once: per_device_train_batch_size x steps_per_generation."""
    return s.batch_size * steps_per_generation(s)


def labelled_positions(s: "TrainingSetup", positions: int, sequences: int) -> int:
    """Positions whose label is not -100 among `positions` shifted ones: GRPO's completion tokens, every
    sequence's `completion_len` (`labels[:, :-logits_to_keep] = -100`); else loss_token_fraction of them."""
    if s.objective is Objective.GRPO:
        return sequences * s.completion_len
    return max(1, math.ceil(s.loss_token_fraction * positions))


def keeps_reference(s: "TrainingSetup") -> bool:
    return s.objective is Objective.GRPO and s.kl_beta > 0


def reference_weight_bytes(m: ModelSpec, rs: Resolved) -> int:
    """beta > 0 with full fine-tuning: a frozen copy in the policy's dtype; peft: the adapters disabled (0)."""
    return param_counts(m).total * rs.trainable.bytes if keeps_reference(rs.setup) and rs.full else 0


def old_policy_pass(s: "TrainingSetup") -> bool:
    """`gradient_accumulation_steps % generate_every != 0`, or vLLM with its importance-sampling correction
    (`vllm_importance_sampling_correction=True` by default): the old policy's log-probs are computed."""
    return s.grad_accum % (steps_per_generation(s) * NUM_ITERATIONS) != 0 or s.vllm_colocate > 0


@dataclass(frozen=True)
class GenerationPhase:
    peak_allocated_bytes: int
    components: dict[C, int]
    completions: int                   # the generation batch
    kv_cache_bytes: int
    moment: str
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        return {"peak_allocated_bytes": self.peak_allocated_bytes,
                "components": {c.value: v for c, v in self.components.items()},
                "completions": self.completions, "kv_cache_bytes": self.kv_cache_bytes, "moment": self.moment,
                "notes": list(self.notes)}


def generation_phase(model: ModelSpec, setup: "TrainingSetup") -> GenerationPhase:
    """Allocated bytes at the peak of GRPO's generation phase on one GPU."""
    from ..memory.pieces import terms   # lazy: memory builds on techniques

    setup = setup.for_model(model)
    rs, st, act = terms(model, setup)
    # generate runs the model's own lm_head (logits_to_keep=1), not TRL's fused head: its casts are the plain step's
    _, _, act = terms(model, setup.with_(objective=Objective.SFT, loss=Loss.HF))
    B, s, N = generation_batch(setup), setup.seq_len, setup.completion_len
    prompt = s - N
    e, r, V = rs.compute.bytes, rs.residual.bytes, model.vocab
    copies = (act.layer_copies + act.head_copy if rs.full else 0) + act.adapter_copies
    casts = generation.Casts(cached=copies, head_cached=act.head_copy if rs.full else 0,
                             head_transient=0 if rs.full else act.head_copy,
                             linear_transient=generation.frozen_mlp_cast(model, rs))
    g = generation.generation_bytes(model, rs, B, prompt, N, casts)
    ids = B * prompt * (8 + 8)                       # the prompts' input_ids and attention_mask (int64)
    probs = B * V * 4                                # sampling: softmax's fp32 probabilities, each decode step
    gen = g.total + ids + (probs if g.moment in ("decode", "after decode") else 0)
    if setup.vllm_colocate:   # vLLM generates inside its own share of the device (vllm_reserved_bytes)
        g, gen = generation.GenerationBytes(0, 0, "vLLM"), 0
    resident = st.weights + st.optimizer_state + reference_weight_bytes(model, rs)
    kept = B * s * (8 + 8) + B * N * 4 * 2           # prompt_completion_ids and its mask; logps buffers (fp32)
    passes = []
    if keeps_reference(setup):
        passes.append("reference")
    if old_policy_pass(setup):
        passes.append("old policy")
    logps = 0
    if passes:   # one no-grad forward on b sequences: a layer's widest moment, or the fused head's forward
        T, b = setup.batch_size * s, setup.batch_size
        layer = T * (2 * r * model.hidden + 2 * e * model.intermediate)
        head = T * r * model.hidden + loss.trl_fused_lm_head(model, rs, T, b)[0]
        logps = copies + kept + max(layer, head)
    moment, other = ("generate", gen) if gen >= logps else (f"{passes[0]} log-probs", logps)
    comps = {C.WEIGHTS: resident - st.optimizer_state, C.GRADIENTS: 0, C.OPTIMIZER_STATE: st.optimizer_state,
             C.ACTIVATIONS: int(other), C.LOGITS: 0, C.TEMPORARIES: 0}
    notes = [] if not setup.vllm_colocate else [
        f"vLLM colocate mode modelled from source, not simulated: vLLM holds vllm_gpu_memory_utilization = "
        f"{setup.vllm_colocate:g} of the device's memory in every phase (\"the fraction of GPU memory to be used for "
        "the model executor ... a per-instance limit\", docs.vllm.ai engine args --gpu-memory-utilization), its "
        "weights, cache and activations inside it; the training side fits in the rest"]
    if not setup.vllm_colocate:
        notes.append(f"GRPO generation modelled from TRL 1.16.0's source (its generate checked against transformers' "
                     f"sampling generate under the simulator): generate() samples {B} completions "
             f"({setup.batch_size} x {steps_per_generation(setup)} steps per generation) of {N} tokens after "
             f"{prompt}-token prompts, decoded to full length (as min_new_tokens = max_new_tokens; real lengths "
             f"depend on the data), {generation.CacheKind.DYNAMIC.value} KV cache "
             f"{g.cache / 2**30:,.2f} GiB at its peak ({g.moment}); sampling's fp32 probabilities added")
    if passes:
        notes.append(f"no-grad log-prob passes after generate, {setup.batch_size} sequences at a time: "
                     + ", ".join(passes))
    return GenerationPhase(int(sum(comps.values())), comps, B, g.cache, moment if moment != "generate" else g.moment,
                           tuple(notes))


def notes(rs: Resolved) -> list[str]:
    s = rs.setup
    ref = ("no reference model (beta = 0)" if not keeps_reference(s) else
           "the reference is the base with adapters disabled" if not rs.full else
           "a frozen reference copy in the policy's dtype")
    return [f"GRPO training step modelled from TRL 1.16.0's source (not simulated): {s.batch_size} prompt + completion "
            f"sequences, TRL's fused LM head on the {s.completion_len} completion tokens of each, no value model, "
            f"{ref}; the generation phase is planned apart (run phases)"]
