"""PPO's training phase as TRL 1.12.0's `trl.experimental.ppo.PPOTrainer.train` runs it, simulated under
FakeTensorMode (planner/techniques/ppo.py says what the plan models and from which lines).

The four models are built as TRL's examples load them: the policy (a causal LM, peft's LoRA when the setup
asks, checkpointing as the setup says: PPOTrainer itself never enables it), the value model and the reward
model (AutoModelForSequenceClassification, num_labels=1, fully trained and frozen), the reference (a frozen
copy of the policy, `create_reference_model`; None with peft: the adapters disabled). TRL's own
`PolicyAndValueWrapper` joins policy and value, one optimizer over both (`create_optimizer_and_scheduler`
over `self.model`), TRL's `disable_dropout_in_model` on every model.

What the rollout leaves bound through the training phase [ppo_trainer.py train(), l.676-800]: the batch
`data` and `queries`, `query_responses` and the sampled `logitss` as `batch_generation` pads them (the
(local batch, response_length, vocab) fp32 scores of generate's `output_scores=True`, never deleted), and
the per-token tensors the rewards and advantages are built from. They are made here with the shapes and
dtypes the source gives them (generation itself is not simulated). Then each micro-batch runs what train()
runs (l.806-866): TRL's `forward` through the wrapper, the policy's logits sliced to the response and divided
in place by the temperature, TRL's `selective_log_softmax`, the clipped value and policy losses with TRL's
`masked_mean`, backward, `optimizer.step()` / `zero_grad()` as accelerate's accumulate lets them run, and
the no-grad entropy statistics; the micro-batch's tensors stay bound until the mini-batch ends (l.868-875).
"""
from __future__ import annotations

import contextlib
import linecache
import traceback

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from gpuplan.planner import Component, ModelSpec, Phase, TrainingSetup
from gpuplan.planner.specs.errors import PlannerError
from gpuplan.planner.specs.setup import Checkpointing
from gpuplan.planner.techniques import ppo

from .build import autocast_for, build_model, build_optimizer, materialize
from .generate_stop import length_only_stop
from .kernels.attention import packed_sequences
from .kernels.dropout import cuda_dropout
from .measurement import Measurement, from_tracker
from .step import _host_steps, _optimizer_state
from .tracker import StorageTracker


class _NoMask(torch.nn.Module):
    """A backbone called as TRL calls it, its all-True attention_mask dropped as transformers drops it on a GPU
    for an unpadded batch (profiler/trl_steps.py _Unpadded says why); position_ids kept."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, attention_mask=None, **kwargs):
        return self.inner(**kwargs)


def _models(model: ModelSpec, setup: TrainingSetup) -> tuple[torch.nn.Module, ...]:
    """(policy, value, reward, reference or None) built on meta as TRL's PPO example loads them."""
    policy, _ = build_model(model, setup, torch.device("meta"), simulated=True)
    value_spec, reward_spec = ppo.value_spec(model, setup), ppo.reward_spec(model, setup)
    value, _ = build_model(value_spec, ppo.value_setup(setup), torch.device("meta"), simulated=True)
    reward, _ = build_model(reward_spec, ppo.value_setup(setup), torch.device("meta"), simulated=True)
    ref = None
    if not setup.peft:   # create_reference_model: a deepcopy of the policy, frozen
        ref, _ = build_model(model, setup.with_(checkpointing=Checkpointing.NONE), torch.device("meta"), simulated=True)
    for frozen in (reward, ref):
        if frozen is not None:
            frozen.requires_grad_(False)
            frozen.eval()
    return policy, value, reward, ref


def _post_rollout(data: dict, queries: torch.Tensor, query_responses: torch.Tensor, logitss: torch.Tensor,
                  cat: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The rollout's rewards and advantages (l.760-800), on the tensors the rollout's loop made; what it returns
    is what train() keeps bound through the training phase."""
    responses, postprocessed = cat.pop("responses"), cat.pop("postprocessed")
    logprobs, ref_logprobs, values = cat.pop("logprobs"), cat.pop("ref_logprobs"), cat.pop("values")
    sequence_lengths, scores = cat.pop("sequence_lengths"), cat.pop("scores")
    n, R = responses.shape
    device = responses.device
    pad = 0   # the eos id compared against (any id: contain_eos is a bool per query)
    contain_eos = torch.any(postprocessed == pad, dim=-1)
    response_idxs = torch.arange(R, device=device).repeat(n, 1)
    padding_mask = response_idxs > sequence_lengths.unsqueeze(1)
    logprobs = torch.masked_fill(logprobs, padding_mask, 1.0)
    ref_logprobs = torch.masked_fill(ref_logprobs, padding_mask, 1.0)
    sequence_lengths_p1 = sequence_lengths + 1
    padding_mask_p1 = response_idxs > sequence_lengths_p1.unsqueeze(1)
    values = torch.masked_fill(values, padding_mask_p1, 0)
    logr = ref_logprobs - logprobs
    kl = -logr                                                      # kl_estimator "k1", the default
    non_score_reward = -ppo.KL_COEF * kl
    rewards = non_score_reward.clone()
    actual_start = torch.arange(n, device=device)
    actual_end = torch.where(sequence_lengths_p1 < R, sequence_lengths_p1, sequence_lengths)
    rewards[actual_start, actual_end] += scores
    lastgaelam, reversed_ = 0, []
    for t in reversed(range(R)):   # GAE (l.776-783): every step's lastgaelam stays in the list
        nextvalues = values[:, t + 1] if t < R - 1 else 0.0
        delta = rewards[:, t] + ppo.GAMMA * nextvalues - values[:, t]
        lastgaelam = delta + ppo.GAMMA * ppo.LAM * lastgaelam
        reversed_.append(lastgaelam)
    advantages = torch.stack(reversed_[::-1], axis=1)
    returns = advantages + values
    # masked_whiten (l.266) reads `mask.sum() == 0` on the host, which fake tensors cannot answer: the same
    # result, one (local batch, response) fp32 tensor, from its mean and variance
    advantages = (advantages - advantages.mean()) * torch.rsqrt(advantages.var() + 1e-8)
    advantages = torch.masked_fill(advantages, padding_mask, 0)
    return dict(data=data, queries=queries, query_responses=query_responses, logitss=logitss, responses=responses,
                postprocessed=postprocessed, logprobs=logprobs, ref_logprobs=ref_logprobs,
                sequence_lengths=sequence_lengths, scores=scores, values=values, contain_eos=contain_eos,
                response_idxs=response_idxs, padding_mask=padding_mask, sequence_lengths_p1=sequence_lengths_p1,
                padding_mask_p1=padding_mask_p1, logr=logr, kl=kl, non_score_reward=non_score_reward, rewards=rewards,
                actual_start=actual_start, actual_end=actual_end, reversed_=reversed_, delta=delta,
                advantages=advantages, returns=returns)


def _shaped_rollout(setup: TrainingSetup, vocab: int, value_dtype: torch.dtype, pad: int,
                    device: torch.device) -> dict[str, torch.Tensor]:
    """The first update's rollout, its tensors made with the shapes and dtypes train() gives them (generation is
    slow under fake tensors; the steady-state update that is measured runs the real rollout, `_rollout`)."""
    n, q, R = ppo.local_batch(setup), setup.seq_len - setup.response_len, setup.response_len
    chunks, rows = ppo.rollout_chunks(setup)
    data = {"input_ids": torch.randint(0, pad, (n, q), device=device),
            "attention_mask": torch.ones((n, q), dtype=torch.int64, device=device)}
    query_responses = torch.randint(0, pad, (chunks, rows, q + R), device=device).view(-1, q + R)[:n]
    logitss = torch.empty((chunks, rows, R, vocab), dtype=torch.float32, device=device).view(-1, R, vocab)[:n]
    responses = query_responses[:, q:].clone()
    cat = {"responses": responses, "postprocessed": responses.clone(),
           "logprobs": torch.zeros((n, R), device=device), "ref_logprobs": torch.zeros((n, R), device=device),
           "sequence_lengths": torch.full((n,), R - 1, dtype=torch.int64, device=device),
           "scores": torch.zeros((n,), dtype=value_dtype, device=device),
           "values": torch.zeros((n, R), dtype=value_dtype, device=device)}
    del responses
    return _post_rollout(data, data["input_ids"], query_responses, logitss, cat)


class _HostReadsPerCall(torch.utils._python_dispatch.TorchDispatchMode):
    """generate's host reads of booleans, answered as an unpadded batch of non-negative ids answers them on a GPU
    (profiler/generation.py HOST_READS), told apart by the source line that reads: the mask is all ones, no
    row ends in the pad id (no right padding), no id is negative. Any other read fails the simulation."""

    # [transformers 5.24 generation/utils.py: _prepare_special_tokens, _prepare_attention_mask_for_generation,
    # the right-padding check, _valid_auto_compile_criteria / the mask drop, _get_logits_processor]
    ANSWERS = (("attention_mask[:, -1] == 0", False), ("_pad_token_tensor) > 0", False), ("== 1).all()", True),
               ("isin(inputs_tensor, pad_token_id)", False), ("< 0", False))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default and args[0].dtype is torch.bool:
            for frame in reversed(traceback.extract_stack()):
                if "transformers" in frame.filename:   # the statement, over the lines it spans
                    line = "".join(linecache.getline(frame.filename, i) for i in range(frame.lineno, frame.lineno + 6))
                    for word, answer in self.ANSWERS:
                        if word in line:
                            return answer
                    raise RuntimeError(f"generate read a boolean the PPO simulation does not answer: {line!r}")
        return func(*args, **(kwargs or {}))


def _rollout(policy, value, reward, ref, setup: TrainingSetup, vocab: int, pad: int, device: torch.device,
             old: dict) -> dict[str, torch.Tensor]:
    """The rollout as train() runs it (l.676-800): TRL's batch_generation (transformers' sampling generate,
    `output_scores=True`, decoded to the full response_length: see profiler/generation.py), then per chunk
    selective_log_softmax on the scores, TRL's `forward` through the reference (peft: the policy with its
    adapters disabled) and TRL's `get_reward` through the value and reward models; the previous rollout's
    tensors (`old`) are let go when batch_generation returns, as the names are rebound."""
    from transformers import GenerationConfig   # lazy: TRL 1.12 (and transformers) load only when PPO is simulated
    from trl.experimental.ppo.ppo_trainer import batch_generation, forward   # lazy: TRL 1.12 (and transformers) load only when PPO is simulated
    from trl.experimental.utils import first_true_indices, get_reward   # lazy: TRL 1.12 (and transformers) load only when PPO is simulated
    from trl.trainer.utils import selective_log_softmax   # lazy: TRL 1.12 (and transformers) load only when PPO is simulated


    n, q, R = ppo.local_batch(setup), setup.seq_len - setup.response_len, setup.response_len
    rb = setup.rollout_batch
    old.pop("data", None)   # data = next(iter_dataloader) rebinds the batch first
    data = {"input_ids": torch.randint(0, pad, (n, q), device=device),
            "attention_mask": torch.ones((n, q), dtype=torch.int64, device=device)}
    queries = data["input_ids"]
    config = GenerationConfig(max_new_tokens=R, temperature=ppo.TEMPERATURE + 1e-7, top_k=0.0, top_p=1.0,
                              do_sample=True)
    # PPOTrainer.__init__: generation_config.eos_token_id = stop_token_id (None by default): no EOS stop
    base = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
    base.generation_config.eos_token_id = None
    checkpointed = policy.is_gradient_checkpointing
    if checkpointed:   # unwrap_model_for_generation disables it around generate
        policy.gradient_checkpointing_disable()
    with torch.no_grad():
        with length_only_stop(q + R), _HostReadsPerCall():
            query_responses, logitss = batch_generation(policy, queries, rb, pad, config)
        old.clear()
        if checkpointed:
            policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        out = {k: [] for k in ("responses", "postprocessed", "logprobs", "ref_logprobs", "sequence_lengths", "scores",
                               "values")}
        for i in range(0, n, rb):
            query = queries[i:i + rb]
            query_response = query_responses[i:i + rb]
            response = query_response[:, q:]
            logits = logitss[i:i + rb]
            logprob = selective_log_softmax(logits, response)
            del logits
            if ref is None:
                with policy.disable_adapter():
                    ref_output = forward(_NoMask(policy), query_response, pad)
            else:
                ref_output = forward(_NoMask(ref), query_response, pad)
            ref_logits = ref_output.logits[:, q - 1:-1]
            ref_logits /= ppo.TEMPERATURE + 1e-7
            ref_logprob = selective_log_softmax(ref_logits, response)
            del ref_output, ref_logits
            postprocessed_response = response   # stop_token_id None (the default): no truncation
            postprocessed_query_response = torch.cat((query, postprocessed_response), 1)
            sequence_length = first_true_indices(postprocessed_response == pad) - 1
            full_value, _, _ = get_reward(value, query_response, pad, q)
            value_ = full_value[:, q - 1:-1].squeeze(-1)
            _, score, _ = get_reward(reward, postprocessed_query_response, pad, q)
            for k, v in (("responses", response), ("postprocessed", postprocessed_response), ("logprobs", logprob),
                         ("ref_logprobs", ref_logprob), ("sequence_lengths", sequence_length), ("scores", score),
                         ("values", value_)):
                out[k].append(v)
        cat = {k: torch.cat(v, 0) for k, v in out.items()}
        del out, logprob, ref_logprob, full_value, value_, score
    return _post_rollout(data, queries, query_responses, logitss, cat)


def _training_phase(model: torch.nn.Module, opt: torch.optim.Optimizer, setup: TrainingSetup, kept: dict,
                    pad: int, tracker: StorageTracker, autocast, reset: bool) -> None:
    """One epoch of PPO's mini-batches over the rollout (l.801-876); the optimizer steps every
    gradient_accumulation_steps micro-batches (accelerate's accumulate), as AcceleratedOptimizer lets it."""
    from trl.experimental.ppo.ppo_trainer import forward, masked_mean   # lazy: TRL 1.12 only here
    from trl.trainer.utils import selective_log_softmax   # lazy: TRL 1.12 (and transformers) load only when PPO is simulated

    q, b = setup.seq_len - setup.response_len, setup.batch_size
    n = ppo.local_batch(setup)
    per_mini = n // setup.mini_batches
    inds = torch.arange(n)
    micro = 0
    if reset:
        tracker.reset_peaks()
    for start in range(0, n, per_mini):
        mini = inds[start:start + per_mini]
        for mb_start in range(0, per_mini, b):
            tracker.mark(Phase.FORWARD, Component.ACTIVATIONS)
            idx = mini[mb_start:mb_start + b].to(kept["advantages"].device)
            mb_advantage = kept["advantages"][idx]
            mb_responses = kept["responses"][idx]
            mb_query_responses = kept["query_responses"][idx]
            mb_logprobs = kept["logprobs"][idx]
            mb_return = kept["returns"][idx]
            mb_values = kept["values"][idx]
            pm, pm1 = kept["padding_mask"][idx], kept["padding_mask_p1"][idx]
            with autocast():
                output, vpred_temp = forward(model, mb_query_responses, pad)
                logits = output.logits[:, q - 1:-1]
                logits /= ppo.TEMPERATURE + 1e-7
                new_logprobs = selective_log_softmax(logits, mb_responses)
                new_logprobs = torch.masked_fill(new_logprobs, pm, 1.0)
                vpred = vpred_temp[:, q - 1:-1].squeeze(-1)
                vpred = torch.masked_fill(vpred, pm1, 0)
                vpredclipped = torch.clamp(vpred, mb_values - ppo.CLIPRANGE_VALUE, mb_values + ppo.CLIPRANGE_VALUE)
                vf_losses1 = torch.square(vpred - mb_return)
                vf_losses2 = torch.square(vpredclipped - mb_return)
                vf_loss_max = torch.max(vf_losses1, vf_losses2)
                vf_loss = 0.5 * masked_mean(vf_loss_max, ~pm1)
                vf_clipfrac = masked_mean((vf_losses2 > vf_losses1).float(), ~pm1)
                logprobs_diff = new_logprobs - mb_logprobs
                ratio = torch.exp(logprobs_diff)
                pg_losses = -mb_advantage * ratio
                pg_losses2 = -mb_advantage * torch.clamp(ratio, 1.0 - ppo.CLIPRANGE, 1.0 + ppo.CLIPRANGE)
                pg_loss_max = torch.max(pg_losses, pg_losses2)
                pg_loss = masked_mean(pg_loss_max, ~pm)
                loss = pg_loss + ppo.VF_COEF * vf_loss
            tracker.mark(Phase.BACKWARD, Component.TEMPORARIES)
            loss.backward()   # accelerator.backward: loss / gradient_accumulation_steps, the same graph
            micro += 1
            if micro % setup.grad_accum == 0:   # sync_gradients: the optimizer steps and zeroes
                tracker.mark(Phase.OPTIMIZER, Component.TEMPORARIES)
                opt.step()
                tracker.untrack(_host_steps(opt))
                tracker.track(_optimizer_state(opt), Component.OPTIMIZER_STATE)
                opt.zero_grad(set_to_none=True)
            with torch.no_grad():   # the step's statistics (l.850-866), the logits still bound
                pg_clipfrac = masked_mean((pg_losses2 > pg_losses).float(), ~pm)
                prob_dist = torch.nn.functional.softmax(logits, dim=-1)
                entropy = torch.logsumexp(logits, dim=-1) - torch.sum(prob_dist * logits, dim=-1)
                approxkl = 0.5 * (logprobs_diff ** 2).mean()
        # the mini-batch ends: its tensors are deleted (l.868-875)
        del (output, vpred_temp, logits, new_logprobs, vpred, vpredclipped, vf_losses1, vf_losses2, vf_loss,
             vf_clipfrac, logprobs_diff, ratio, pg_losses, pg_losses2, pg_loss_max, pg_loss, loss, pg_clipfrac,
             prob_dist, entropy, approxkl, mb_return, mb_advantage, mb_values, mb_responses, mb_query_responses,
             mb_logprobs)
    tracker.mark(Phase.OPTIMIZER, Component.TEMPORARIES)


def simulate_ppo(model: ModelSpec, setup: TrainingSetup, updates: int = 2) -> Measurement:
    """Peak tensor bytes of PPO's steady-state training phase (the second rollout's PPO epoch), as the
    CUDA allocator would count them."""
    setup.validate()
    try:   # lazy: TRL 1.12 only here
        from trl.experimental.ppo.ppo_trainer import PolicyAndValueWrapper   # lazy: TRL 1.12 (and transformers) load only when PPO is simulated
        from trl.trainer.utils import disable_dropout_in_model   # lazy: TRL 1.12 (and transformers) load only when PPO is simulated
    except ImportError:
        raise PlannerError("simulating --objective ppo runs TRL 1.12's own trl.experimental.ppo, removed in TRL 1.13 "
                           "(huggingface/trl#7020): pip install trl==1.12.0 in the simulator's environment, or use "
                           "the estimate (closed form)") from None
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    policy, value, reward, ref = _models(model, setup)
    device = torch.device("cpu")
    vocab = model.vocab
    pad = vocab - 1   # random ids stay below it: no padding, as the plan assumes
    with fake:
        for lm in (policy, value, reward, ref):
            if lm is not None:
                materialize(lm, device)
                disable_dropout_in_model(lm)
        for lm in (value, reward):   # get_reward and the wrapper call the backbone: its mask dropped as on a GPU
            setattr(lm, lm.base_model_prefix, _NoMask(getattr(lm, lm.base_model_prefix)))
        wrapper = PolicyAndValueWrapper(policy, value)
        wrapper.policy = _NoMask(policy)
        opt = build_optimizer(wrapper, setup)
        tracker = StorageTracker()
        with tracker, cuda_dropout(), packed_sequences(False):
            trainable = [p for p in wrapper.parameters() if p.requires_grad]
            for p in trainable:
                p.register_post_accumulate_grad_hook(lambda p: tracker.track([p.grad], Component.GRADIENTS))
            resident = [t for lm in (policy, value, reward, ref) if lm is not None
                        for t in list(lm.parameters()) + list(lm.buffers())]
            tracker.track(resident, Component.WEIGHTS)
            head = policy.get_output_embeddings()

            def logits_start(module, inputs, output) -> None:
                tracker.track([output], Component.LOGITS)
                tracker.mark(Phase.FORWARD, Component.LOGITS)

            wrapper.train()
            kept: dict = {}
            rollout_peak = 0
            for update in range(updates):
                last = update == updates - 1
                if last:
                    tracker.reset_peaks()
                tracker.mark(Phase.FORWARD, Component.ACTIVATIONS)
                if last:
                    kept = _rollout(policy, value, reward, ref, setup, vocab, pad, device, kept)
                else:
                    kept = _shaped_rollout(setup, vocab, next(value.parameters()).dtype, pad, device)
                if last:
                    rollout_peak = max(p.total for p in tracker.peaks.values())
                hook = head.register_forward_hook(logits_start)
                _training_phase(wrapper, opt, setup, kept, pad, tracker, autocast_for(setup, device), reset=last)
                hook.remove()
    return from_tracker(tracker, model, setup, device="simulate",
                        notes=["PPO simulated with TRL 1.12.0's batch_generation, forward, get_reward, "
                               "selective_log_softmax, masked_mean and PolicyAndValueWrapper: the figures are the "
                               "training phase's",
                               f"{ppo.ROLLOUT_NOTE}{rollout_peak}"])
