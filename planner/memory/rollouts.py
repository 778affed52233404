"""GRPO's generation phase (RunPhase.GENERATE), as TRL 1.16.0's GRPOTrainer runs it with HF generate
(planner/techniques/grpo.py says what it does and which source lines): generate() on the local generation
batch under the prepared model's autocast, then the no-grad log-prob passes through TRL's fused head, with
the weights, the optimizer state and a kept reference resident and no gradients. Its generate is checked
against transformers' sampling generate under the simulator (tests/profiler/test_grpo_generation.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..specs.enums import Component as C
from ..specs.enums import Loss, Objective
from ..specs.model import ModelSpec
from ..specs.setup import TrainingSetup
from ..techniques import generation, loss
from ..techniques.grpo import (generation_batch, keeps_reference, old_policy_pass, reference_weight_bytes,
                               steps_per_generation)
from .pieces import terms


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


def generation_phase(model: ModelSpec, setup: TrainingSetup) -> GenerationPhase:
    """Allocated bytes at the peak of GRPO's generation phase on one GPU."""
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
