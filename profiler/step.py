"""Runs training steps exactly as a plain transformers loop does, telling the tracker the phase:

    for each micro-batch: loss = model(input_ids, labels=labels).loss / grad_accum; loss.backward()
    optimizer.step(); optimizer.zero_grad(set_to_none=True)

Step 1 allocates the optimizer state lazily; the peaks are read from the last step (steady state).
"""
from __future__ import annotations

import contextlib
import statistics
import time

import torch

from gpuplan.planner import Component, Loss, ModelSpec, Phase, TrainingSetup
from gpuplan.planner.specs.enums import Objective, Packing, Padding, TrlVersion

from .batch import micro_batch
from .images import add_images, fake_placeholder_check
from .build import Built
from .kernels.attention import packed_sequences
from .kernels.chunked_loss import chunked_loss
from .torchtune_loss import chunked_output_loss
from .trl_chunked_nll import answered_chunk_count, chunked_nll_forward
from .trl_steps import orpo_loss, reward_loss
from .hooks import attributed
from .measurement import Measurement, from_tracker
from .tracker import NullTracker, StorageTracker


def quant_state_tensors(lm: torch.nn.Module) -> list[torch.Tensor]:
    """Tensors bitsandbytes keeps beside quantized weights (absmax, code, nested state, SCB): held on
    the device with the weights but neither parameters nor buffers."""
    out: list[torch.Tensor] = []
    for p in lm.parameters():
        qs = getattr(p, "quant_state", None)
        for state in (qs, getattr(qs, "state2", None)):
            if state is not None:
                out.extend(v for v in vars(state).values() if isinstance(v, torch.Tensor))
        scb = getattr(p, "SCB", None)
        if isinstance(scb, torch.Tensor):
            out.append(scb)
    return out


def _host_step_counters(opt: torch.optim.Optimizer) -> bool:
    """torch's Adam/AdamW keep `step` as a 0-dim CPU tensor unless fused or capturable
    [torch/optim/adamw.py _init_group]: on a GPU run it is host memory, not the device's."""
    if not isinstance(opt, torch.optim.Adam | torch.optim.AdamW):
        return False
    return not any(g.get("fused") or g.get("capturable") for g in opt.param_groups)


def _host_steps(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    inner = getattr(opt, "optimizers", None)   # the optimizer step inside backward: one per parameter
    if inner is not None:
        return [t for o in inner.values() for t in _host_steps(o)]
    if not _host_step_counters(opt):
        return []
    return [s["step"] for s in opt.state.values() if isinstance(s.get("step"), torch.Tensor)]


def _optimizer_state(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The optimizer's device-resident state. Left out: paged states (bitsandbytes unified
    memory, outside the allocator), host-side step counters, meta placeholders."""
    out = []
    host = {id(t) for t in _host_steps(opt)}
    for state in opt.state.values():
        for v in state.values():
            if isinstance(v, torch.Tensor):
                out.append(v)
            elif hasattr(v, "__dict__"):  # bitsandbytes keeps state in plain attributes sometimes
                out.extend(x for x in vars(v).values() if isinstance(x, torch.Tensor))
    return [t for t in out if id(t) not in host and not getattr(t, "is_paged", False) and t.device.type != "meta"]


def _score_head(lm: torch.nn.Module) -> torch.nn.Module:
    """A sequence-classification model's score head (peft: its modules_to_save wrapper), where the logits start."""
    base = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
    return base.score


def run_steps(built: Built, setup: TrainingSetup, tracker: StorageTracker, steps: int = 2) -> None:
    """Runs `steps` optimizer steps under `tracker` (which must be the innermost dispatch mode)."""
    lm = built.model
    trainable = [p for p in lm.parameters() if p.requires_grad]
    handles = [p.register_post_accumulate_grad_hook(lambda p: tracker.track([p.grad], Component.GRADIENTS))
               for p in trainable]
    tracker.track(list(lm.parameters()) + list(lm.buffers()) + quant_state_tensors(lm), Component.WEIGHTS)
    if built.reference is not None:   # TRL 1.9 DPO's frozen reference copy [profiler/trl19_dpo.py]
        tracker.track(list(built.reference.parameters()) + list(built.reference.buffers()), Component.WEIGHTS)
    head = lm.get_output_embeddings() if setup.objective is not Objective.RM else _score_head(lm)

    def logits_start(module, inputs, output) -> None:
        tracker.track([output], Component.LOGITS)
        tracker.mark(Phase.FORWARD, Component.LOGITS)

    handles.append(head.register_forward_hook(logits_start))
    if setup.optimizer_in_backward:   # after the tracker's hooks: each gradient is counted, then stepped and freed
        handles += built.optimizer.register(trainable)
    loss_patch = (chunked_nll_forward(lm, lambda: tracker.mark(Phase.FORWARD, Component.LOGITS), setup.loss)
                  if setup.loss.trl_chunked else contextlib.nullcontext())
    try:   # packed-sequence detection answered as a real run answers it (fake position_ids cannot be read)
        images = fake_placeholder_check() if setup.images_per_example else contextlib.nullcontext()
        with packed_sequences(setup.packing is not Packing.NONE), loss_patch, images:
            _steps(built, setup, tracker, steps)
    finally:   # the model may be profiled again (find_max_batch): no hooks of this run may stay
        for handle in handles:
            handle.remove()


def _steps(built: Built, setup: TrainingSetup, tracker: StorageTracker, steps: int) -> None:
    lm, opt = built.model, built.optimizer
    vocab = lm.config.get_text_config().vocab_size   # a multimodal wrapper: its text tower's
    for step in range(steps):
        if step == steps - 1:
            tracker.reset_peaks()
        for _ in range(setup.grad_accum):
            tracker.mark(Phase.FORWARD, Component.ACTIVATIONS)
            batch = micro_batch(setup, vocab, built.device)   # ids, and a padding mask or packed position_ids
            if setup.images_per_example:   # a multimodal wrapper's image tokens and pixel_values [profiler/images.py]
                add_images(batch, lm.config, setup)
            ids = batch["input_ids"]
            with built.autocast():
                if setup.loss is Loss.CHUNKED:   # Liger's fused linear cross-entropy: no logits
                    out = None
                    loss = chunked_loss(lm, ids, lambda: tracker.mark(Phase.FORWARD, Component.LOGITS))
                elif setup.loss is Loss.CHUNKED_OUTPUT:   # torchtune's CEWithChunkedOutputLoss
                    out = None
                    loss = chunked_output_loss(lm, ids, lambda: tracker.mark(Phase.FORWARD, Component.LOGITS))
                elif setup.loss.trl_chunked:      # TRL's patched forward: the loop reads its count
                    rows, cols = ids.shape
                    with answered_chunk_count(setup, rows, cols):
                        out = lm(**batch)
                    loss = out.loss
                elif setup.trl_version is TrlVersion.TRL_1_9:   # TRL 1.9's DPOTrainer._compute_loss, by TRL's code
                    from .trl19_dpo import dpo19_loss   # lazy: TRL 1.9 loads only when its DPO is simulated

                    out = None
                    loss = dpo19_loss(lm, built.reference, setup.batch_size, setup.seq_len, vocab, built.device,
                                      setup.loss_token_fraction, setup.precompute_ref_log_probs)
                elif setup.objective is Objective.ORPO:   # TRL's ORPOTrainer loss, by TRL's code
                    out = None
                    loss = orpo_loss(lm, setup.batch_size, setup.seq_len, vocab, built.device)
                elif setup.objective is Objective.RM:     # TRL's RewardTrainer.compute_loss, by TRL's code
                    out = None
                    loss = reward_loss(lm, setup.batch_size, setup.seq_len, vocab, built.device,
                                       padded=setup.padding is not Padding.NONE)
                else:
                    out = lm(**batch)
                    loss = out.loss
            loss = loss / setup.grad_accum
            del out, ids, batch
            tracker.mark(Phase.BACKWARD, Component.TEMPORARIES)
            loss.backward()
            del loss
        tracker.mark(Phase.OPTIMIZER, Component.TEMPORARIES)
        opt.step()
        tracker.untrack(_host_steps(opt))
        tracker.track(_optimizer_state(opt), Component.OPTIMIZER_STATE)
        opt.zero_grad(set_to_none=True)
    tracker.mark(Phase.OPTIMIZER, Component.TEMPORARIES)


def timed_steps(built: Built, setup: TrainingSetup, steps: int = 3) -> dict[str, float]:
    """Median wall seconds of `steps` optimizer steps run without any tracker or hooks (their
    Python dispatch would slow a GPU step), each ended by a device synchronize."""
    cuda = built.device.type == "cuda"
    durations = []
    for _ in range(steps):
        if cuda:
            torch.cuda.synchronize(built.device)
        start = time.perf_counter()
        _steps(built, setup, NullTracker(), 1)
        if cuda:
            torch.cuda.synchronize(built.device)
        durations.append(time.perf_counter() - start)
    return {"step_time_s": statistics.median(durations), "steps_timed": steps}


def tracked_run(built: Built, model: ModelSpec, setup: TrainingSetup, device: str, steps: int,
                per_module: bool, mode: contextlib.AbstractContextManager | None = None) -> Measurement:
    """Measurement of `steps` steps counted by a StorageTracker (inside `mode`, e.g. FakeTensorMode)."""
    with mode or contextlib.nullcontext():
        tracker = StorageTracker()
        with tracker, attributed(built.model, tracker, per_module) as attribution:
            run_steps(built, setup, tracker, steps)
    result = from_tracker(tracker, model, setup, device=device, notes=built.notes)
    result.per_module = attribution.to_dict() if attribution else None
    return result
