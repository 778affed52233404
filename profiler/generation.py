"""simulate_generation(): transformers' own `generate` (greedy, a fixed number of new tokens) run on
the built model under FakeTensorMode, its peak counted by the StorageTracker.

`generate` asks the device whether every sequence is finished after each token
(`StopCheck.__call__`: `bool(unfinished_sequences.max() == 0)`, transformers/generation/utils.py),
which fake tensors cannot answer. Without an EOS token (`eos_token_id=None`) and with
`min_new_tokens == max_new_tokens`, the only stopping criterion is the length, so the answer is
known on the host: the stand-in returns `length >= max_length`, exactly what the device would say.
Before the loop, `generate` reads two booleans on the host (HOST_READS: whether the mask is all
ones, whether any token id is negative); an unpadded batch of token ids answers them, and any other
host read fails the simulation rather than being guessed.
"""
from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from gpuplan.planner import ModelSpec, Phase, TrainingSetup

from .generate_stop import length_only_stop   # noqa: F401  (re-exported: generate's length-only stop)
from .simulate import fake_eval_model


# generate's host reads of a boolean before its loop, in order, with what an unpadded batch of token
# ids answers [transformers 5.24 generation/utils.py: GenerationMixin.generate, _get_logits_processor]
HOST_READS = ((True, "(attention_mask == 1).all(): the prompts are unpadded, so the mask is dropped"),
              (False, "(encoder_input_ids < 0).any(): token ids are non-negative"))


class HostReads(TorchDispatchMode):
    """Answers generate's host reads of booleans from HOST_READS, in order; one more read, or one
    fewer by the end, fails the simulation (a transformers version whose reads differ) rather than
    being guessed."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default and args[0].dtype is torch.bool:
            if self.reads >= len(HOST_READS):
                raise RuntimeError(f"generate read boolean #{self.reads + 1} from the device; the simulation answers "
                                   f"only {len(HOST_READS)} (profiler/generation.py HOST_READS)")
            self.reads += 1
            return HOST_READS[self.reads - 1][0]
        return func(*args, **(kwargs or {}))

    def __exit__(self, *exc):
        super().__exit__(*exc)
        if exc[0] is None and self.reads != len(HOST_READS):
            raise RuntimeError(f"generate read {self.reads} booleans from the device, not the {len(HOST_READS)} "
                               "profiler/generation.py HOST_READS answers: check them against this transformers")


def simulate_generation(model: ModelSpec, setup: TrainingSetup, batch_size: int, prompt_len: int,
                        new_tokens: int, cache_implementation: str | None = None,
                        do_sample: bool = False) -> tuple[int, int]:
    """(weights bytes, peak allocated bytes) of `model.generate` on `batch_size` prompts of
    `prompt_len` tokens, `new_tokens` new tokens each (greedy, no EOS), in eval mode under the
    training setup's autocast, as Trainer's eval with generation runs it; `do_sample`: multinomial sampling
    with no logits warper (GRPOTrainer's defaults: temperature 1, top_p 1, top_k 0)."""
    with fake_eval_model(model, setup) as (lm, tracker, built):
        weights = tracker.current
        ids = torch.randint(0, lm.config.vocab_size, (batch_size, prompt_len))
        mask = torch.ones_like(ids)
        with torch.no_grad(), built.autocast(), length_only_stop(prompt_len + new_tokens), HostReads():
            out = lm.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                              min_new_tokens=new_tokens, do_sample=do_sample, eos_token_id=None, pad_token_id=None,
                              use_cache=True, cache_implementation=cache_implementation)
        del out
    return weights, tracker.peaks[Phase.FORWARD].total
