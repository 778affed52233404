"""The evaluation phase (RunPhase.EVAL) of an HF Trainer run: what one eval step allocates, and the
usual eval out-of-memory, logits accumulated on the GPU across eval steps.

Trainer.prediction_step runs `model(**inputs)` under `torch.no_grad()` and the training autocast
[transformers/trainer.py prediction_step]: no activation is saved, so a layer's tensors die with
it; the loss is computed as in training (16-bit logits, their fp32 upcast and log_softmax); the
optimizer state stays allocated and the gradients are gone (`zero_grad(set_to_none=True)`).
Under autocast the 16-bit copies of trainable fp32 weights are cached even without grad mode
(`cached_cast` caches leaves that require grad [aten/src/ATen/autocast_mode.cpp]).
With `compute_metrics` (and neither `prediction_loss_only` nor `preprocess_logits_for_metrics`),
evaluation_loop keeps each step's logits and concatenates them on the GPU until
`eval_accumulation_steps` moves them to the host [transformers/trainer.py evaluation_loop,
trainer_pt_utils.EvalLoopContainer.add -> nested_concat]: at step k the k-1 earlier steps'
logits and the k-step concatenation are alive together.
With generation (`predict_with_generate`, a sampling callback), `generate` runs on the eval batch
too, in the same autocast, its prompts the eval sequences: planner/techniques/generation.py; the
phase's peak is the larger of the two.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..specs.engines import engine_of
from ..specs.enums import Component as C
from ..specs.errors import PlannerError
from ..specs.model import ModelSpec
from ..specs.parallel import ParallelSpec
from ..specs.setup import TrainingSetup
from ..techniques import generation, loss
from ..techniques.generation import CacheKind
from .eval_ranks import rank_states
from .pieces import compute_setup, terms

EVAL_BATCH_DEFAULT = 8     # TrainingArguments.per_device_eval_batch_size


@dataclass(frozen=True)
class EvalPlan:
    batch_size: int = EVAL_BATCH_DEFAULT
    seq_len: int | None = None                 # None: the training sequence length
    accumulate_logits: bool = False            # compute_metrics without preprocess_logits_for_metrics
    accumulation_steps: int | None = None      # eval_accumulation_steps (None: the whole evaluation on the GPU)
    eval_batches: int = 1                      # batches one evaluation runs (eval samples / batch size)
    generate_tokens: int = 0                   # new tokens generate() makes per prompt (0: no generation)
    cache: CacheKind = CacheKind.DYNAMIC       # generate's KV cache (cache_implementation)

    def validate(self) -> "EvalPlan":
        for name, value in (("--eval-batch-size", self.batch_size), ("--eval-batches", self.eval_batches),
                            ("--eval-accumulation-steps", self.accumulation_steps or 1), ("--eval-seq-len", self.seq_len or 1)):
            if value < 1:
                raise PlannerError(f"{name} must be at least 1, got {value}")
        if self.generate_tokens < 0:
            raise PlannerError(f"--eval-generate-tokens must be 0 (no generation) or more, got {self.generate_tokens}")
        return self


@dataclass(frozen=True)
class EvalEstimate:
    peak_allocated_bytes: int
    components: dict[C, int]
    steps_on_gpu: int                          # eval steps whose logits are on the GPU at the peak
    notes: tuple[str, ...] = field(default=())
    generation: dict | None = None             # with --eval-generate-tokens: the KV cache and where generate peaks

    def to_dict(self) -> dict:
        out = {"peak_allocated_bytes": self.peak_allocated_bytes,
               "components": {c.value: v for c, v in self.components.items()},
               "steps_on_gpu": self.steps_on_gpu, "notes": list(self.notes)}
        if self.generation is not None:
            out["generation"] = self.generation
        return out


def eval_estimate(model: ModelSpec, setup: TrainingSetup, plan: EvalPlan) -> EvalEstimate:
    """Allocated bytes at the peak of an evaluation, per GPU (on several GPUs: every rank evaluates its own
    eval batch; planner/memory/eval_ranks.py says what each holds beside it)."""
    plan.validate()
    multi = not setup.parallel.single_gpu
    rank = rank_states(model, setup)
    s = plan.seq_len or setup.seq_len
    es = setup.for_model(model).with_(batch_size=plan.batch_size, seq_len=s, grad_accum=1, parallel=ParallelSpec())
    if multi:   # the activations of the dtype the engine computes in (16-bit parameters replace autocast)
        es = compute_setup(es.with_(parallel=setup.parallel), engine_of(setup.parallel))
    rs, st, act = terms(model, es)
    T = plan.batch_size * s
    e, r = rs.compute.bytes, rs.residual.bytes
    # autocast caches copies of trainable fp32 weights only; frozen ones are cast per use and freed
    copies = (act.layer_copies + act.head_copy if rs.full else 0) + act.adapter_copies
    # the two widest moments: inside a layer (its input and output on the residual stream and the
    # MLP's two intermediate tensors: nothing is saved for backward), and the loss, with the final
    # hidden states and the input ids alive
    layer = T * (2 * r * model.hidden + 2 * e * model.intermediate)
    at_loss = T * (r * model.hidden + 8)
    fwd_loss, _, _ = loss.loss_bytes(model, rs, T, plan.batch_size)
    kept = T * model.vocab * e                 # one step's logits, as prediction_step returns them
    D = rank.replicas                          # gather_for_metrics: every rank keeps every replica's logits
    steps = 0
    if plan.accumulate_logits:
        steps = min(plan.accumulation_steps or plan.eval_batches, plan.eval_batches)
    earlier = (steps - 1) * D * kept if steps else 0   # the earlier steps' logits, kept since
    # after the step's forward, at the last step before a flush: on one GPU the concatenation holds old
    # and new together (2k-1 steps' logits, as simulated); on several, each step's logits are first
    # all-gathered (accelerate utils/operations.py _gpu_gather_one: an output of num_processes x the
    # rank's logits) beside the rank's own, then concatenated: old, new and the result (2kD)
    if not steps:
        after = 0
    elif D == 1:
        after = (2 * steps - 1) * kept
    else:
        after = max(D + 1, 2 * steps * D if steps > 1 else 0) * kept
    # the parameters each moment has gathered, beside the resident ones. FSDP2, inside the forward: the
    # root, the layer running and the last all-gather's flat output, which the forward keeps until the
    # next all-gather (_fsdp_param_group.py wait_for_unshard: AllGatherState), and every layer already run
    # under SHARD_GRAD_OP; after it, only SHARD_GRAD_OP's units (the root's post-forward reshards it and
    # frees the last all-gather output, _fsdp_state.py _post_forward). ZeRO-3: its live module and
    # prefetch bucket (the lm_head at the loss), released after the forward.
    held = model.n_layers * rank.layer if rank.held_layers else 0
    w_layer = rank.root + 2 * rank.layer + max(held - rank.layer, 0) if rank.root else rank.layer
    w_loss = rank.root + held + rank.layer
    w_after = rank.root + held if rank.held_layers else 0
    moments = [(w_loss, copies + at_loss, earlier + fwd_loss), (w_after, copies + at_loss, after),
               (w_layer, copies + layer, earlier)]   # a tie goes to the loss
    if rank.root:   # the first layer's all-gather and copy-out while the root's all-gather output is kept
        moments.append((2 * (rank.root + rank.layer), T * r * model.hidden, earlier))   # (sharded.py's 2nd moment)
    gathered, acts, logits = max(moments, key=sum)
    comps = {C.WEIGHTS: rank.weights + gathered, C.GRADIENTS: rank.gradients, C.OPTIMIZER_STATE: rank.optimizer,
             C.ACTIVATIONS: int(acts), C.LOGITS: int(logits), C.TEMPORARIES: 0}
    notes = [rank.note] if rank.note else []
    if steps:
        notes.append(f"compute_metrics keeps {steps} eval steps' logits ({D * kept / 2**30:,.2f} GiB each"
                     + (f", gathered from {D} ranks" if D > 1 else "") + ") on the GPU; "
                     "eval_accumulation_steps or preprocess_logits_for_metrics bounds it")
    gen = None
    if plan.generate_tokens:
        casts = generation.Casts(cached=copies, head_cached=act.head_copy if rs.full else 0,
                                 head_transient=0 if rs.full else act.head_copy,
                                 linear_transient=generation.frozen_mlp_cast(model, rs))
        g = generation.generation_bytes(model, rs, plan.batch_size, s, plan.generate_tokens, casts, plan.cache)
        if multi:   # each rank generates its own eval batch beside what it holds, and gathers as a forward does
            resident = {C.WEIGHTS: rank.weights + w_layer, C.GRADIENTS: rank.gradients, C.OPTIMIZER_STATE: rank.optimizer}
        else:
            resident = {C.WEIGHTS: st.weights, C.GRADIENTS: 0, C.OPTIMIZER_STATE: st.optimizer_state}
        gen = {"new_tokens": plan.generate_tokens, "cache": plan.cache.value, "kv_cache_bytes": g.cache,
               "peak_allocated_bytes": sum(resident.values()) + g.total, "moment": g.moment}
        notes.append(f"generate: {plan.generate_tokens} new tokens per prompt (greedy, no early stop), "
                     f"{plan.cache.value} KV cache {g.cache / 2**30:,.2f} GiB at its peak ({g.moment})")
        if multi:
            notes.append("generation on several GPUs modelled from source, not simulated: every rank generates its "
                         "eval batch to the full length (Seq2SeqTrainer passes synced_gpus=True under ZeRO-3 and FSDP, "
                         "so no rank stops early), gathering the weights at each decode step as its eval forward does "
                         "(FSDP2's forward hooks: the root and a layer at a time; ZeRO-3: module by module, the "
                         "Trainer's generate has no ds3_gather_for_generation) [transformers 5.24 trainer_seq2seq.py "
                         "l.307-308]")
        if gen["peak_allocated_bytes"] > sum(comps.values()):   # the cache is counted with the activations
            comps = {**resident, C.ACTIVATIONS: g.total, C.LOGITS: 0, C.TEMPORARIES: 0}
    return EvalEstimate(sum(comps.values()), comps, steps, tuple(notes), gen)
