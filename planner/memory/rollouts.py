"""GRPO's generation phase (RunPhase.GENERATE), as TRL 1.16.0's GRPOTrainer runs it with HF generate
(planner/techniques/grpo.py says what it does and which source lines): generate() on the local generation
batch under the prepared model's autocast, then the no-grad log-prob passes through TRL's fused head, with
the weights, the optimizer state and a kept reference resident and no gradients. Its generate is checked
against transformers' sampling generate under the simulator (tests/profiler/test_grpo_generation.py). On
several GPUs each rank holds what memory/eval_ranks.py says beside its generation batch, plus what generate
gathers (`_gathers`) and the reference as TRL prepares it (memory/preference_ranks.py): modelled from source.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..specs.engines import Engine, engine_of
from ..specs.enums import Component as C
from ..specs.enums import Loss, Objective
from ..specs.model import ModelSpec
from ..specs.params import param_counts
from ..specs.setup import TrainingSetup
from ..techniques import generation, loss
from ..techniques.grpo import (generation_batch, keeps_reference, old_policy_pass, reference_weight_bytes,
                               steps_per_generation)
from .eval_ranks import RankStates, rank_states
from .pieces import compute_setup, terms
from .preference_ranks import check as check_parallel
from .preference_ranks import reference_on_rank


@dataclass(frozen=True)
class GenerationPhase:
    peak_allocated_bytes: int
    components: dict[C, int]
    completions: int                   # the generation batch
    kv_cache_bytes: int
    moment: str
    notes: tuple[str, ...] = field(default=())
    vllm_server_gpus: int = 0          # vllm_mode server: GPUs beside the training ones (shown only when set)

    def to_dict(self) -> dict:
        out = {"peak_allocated_bytes": self.peak_allocated_bytes,
               "components": {c.value: v for c, v in self.components.items()},
               "completions": self.completions, "kv_cache_bytes": self.kv_cache_bytes, "moment": self.moment,
               "notes": list(self.notes)}
        if self.vllm_server_gpus:
            out["vllm_server_gpus"] = self.vllm_server_gpus
        return out


def _gathers(model: ModelSpec, setup: TrainingSetup, rank: RankStates) -> tuple[int, int]:
    """(bytes generate gathers beside the rank's resident states, bytes a no-grad log-prob forward of the
    policy gathers) on several GPUs, as TRL 1.14.0's `unwrap_model_for_generation` runs generate
    [trl/models/utils.py _unwrap_model_for_generation l.132-151]: under ZeRO-3 with ds3_gather_for_generation
    (GRPOConfig's default) `deepspeed.zero.GatheredParameters(model.parameters())` gathers the whole 16-bit
    policy and removes the per-module hooks for the whole generate; without it, ZeRO-3 gathers module by
    module as in a forward; FSDP2's forward hooks gather the root and one layer at a time at every decode
    step (TRL's `summon_full_params(recurse=False)` is FSDP1's only: trl/distributed.py l.74-91); SHARD_GRAD_OP
    keeps each layer gathered once run (no backward reshards it before the step); DDP and ZeRO-1/2 hold the
    whole module already (memory/eval_ranks.py)."""
    eng = engine_of(setup.parallel)
    held = model.n_layers * rank.layer if rank.held_layers else 0
    forward = rank.root + 2 * rank.layer + max(held - rank.layer, 0) if rank.root else rank.layer
    if eng is Engine.ZERO3 and setup.ds3_gather_for_generation:
        return param_counts(model).total * setup.precision.compute_dtype.bytes, forward
    return forward, forward


def generation_phase(model: ModelSpec, setup: TrainingSetup) -> GenerationPhase:
    """Allocated bytes at the peak of GRPO's generation phase, per GPU (on several GPUs: each rank generates
    its own generation batch)."""
    setup = setup.for_model(model)
    multi = not setup.parallel.single_gpu
    check_parallel(setup)
    eng = engine_of(setup.parallel)
    rank = rank_states(model, setup)
    # the dtypes the engine computes in: 16-bit parameters replace autocast under FSDP2 / DeepSpeed
    local = compute_setup(setup, eng) if multi else setup
    rs, st, act = terms(model, local)
    # generate runs the model's own lm_head (logits_to_keep=1), not TRL's fused head: its casts are the plain step's
    _, _, act = terms(model, local.with_(objective=Objective.SFT, loss=Loss.HF))
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
    if setup.vllm_colocate or setup.vllm_server_gpus:   # vLLM generates: in its share of the device, or elsewhere
        g, gen = generation.GenerationBytes(0, 0, "vLLM"), 0
    gen_gather = logps_gather = 0
    if multi:   # the rank's shards (or module) and buckets, the reference as TRL prepares it
        ref_resident, ref_gathered = reference_on_rank(model, setup, eng)
        resident = rank.weights + rank.optimizer + rank.gradients + ref_resident
        gen_gather, logps_gather = _gathers(model, setup, rank)
        if not gen:
            gen_gather = 0
        if keeps_reference(setup):
            logps_gather = max(logps_gather if old_policy_pass(setup) else 0, ref_gathered or logps_gather)
        gen += gen_gather
        opt_state = rank.optimizer
    else:
        resident = st.weights + st.optimizer_state + reference_weight_bytes(model, rs)
        opt_state = st.optimizer_state
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
        logps = copies + kept + max(layer, head) + logps_gather
    moment, other = ("generate", gen) if gen >= logps else (f"{passes[0]} log-probs", logps)
    gathered = gen_gather if moment == "generate" else logps_gather   # weights, not activations
    comps = {C.WEIGHTS: resident - opt_state + gathered - (rank.gradients if multi else 0),
             C.GRADIENTS: rank.gradients if multi else 0, C.OPTIMIZER_STATE: opt_state,
             C.ACTIVATIONS: int(other - gathered), C.LOGITS: 0, C.TEMPORARIES: 0}
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
    if setup.vllm_server_gpus:
        notes.append(f"vLLM server mode (trl vllm-serve) modelled from source, not simulated: generation runs on "
                     f"{setup.vllm_server_gpus} other GPU(s), which hold no training state; the training GPUs hold no "
                     "vLLM share, and the run needs those GPUs too (count them in the cost)")
    if multi:
        notes.append(rank.note + "; generation on several GPUs modelled from TRL 1.14.0's source, not simulated"
                     + (" (ZeRO-3: ds3_gather_for_generation gathers the whole 16-bit policy for generate)"
                        if eng is Engine.ZERO3 and setup.ds3_gather_for_generation and gen_gather else ""))
    return GenerationPhase(int(sum(comps.values())), comps, B, g.cache, moment if moment != "generate" else g.moment,
                           tuple(notes), setup.vllm_server_gpus)
