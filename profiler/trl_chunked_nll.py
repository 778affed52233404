"""`--loss chunked-nll` / `chunked-nll-fp32`: TRL 1.13-1.14's / 1.8-1.12's SFTTrainer default loss
(`loss_type="chunked_nll"`), run with TRL's own code on the built model under FakeTensorMode.

SFTTrainer patches the causal LM's forward with `trl.trainer.sft_trainer._patch_chunked_ce_lm_head`
(the base model under peft), and the patched forward calls `_chunked_cross_entropy_loss`: the labelled
positions are packed to the front by an argsort, and the LM head and the cross-entropy run in
checkpointed chunks of `_CHUNKED_LM_HEAD_CHUNK_SIZE` (256) positions [trl/trainer/sft_trainer.py,
TRL 1.14.0]. The simulator applies that same patch; nothing of TRL is re-implemented here.

The number of chunks is read on the host (`range(0, n_padded, chunk_size)`), which fake tensors
cannot answer. The count follows from the labels the run has, `loss_token_fraction` of the shifted
positions (TrainingSetup.labelled_positions): `HostCount` answers exactly that
one read per forward, and any other host read of an integer fails the simulation.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
from typing import Callable, Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from gpuplan.planner.specs.enums import Loss
from gpuplan.planner.specs.errors import PlannerError
from gpuplan.planner.specs.setup import TrainingSetup
from gpuplan.planner.techniques.chunked_nll import CHUNK_POSITIONS, chunks

# The TRL releases each form of the loss is run with: 1.13.0 changed `h.float() @ w.float().t()` (1.8-1.12)
# into `(h @ w.to(h.dtype).t()).float()`; 1.8-1.10 read one more boolean on the host (an all-masked guard),
# which HostCount does not answer, so the fp32 form is simulated with TRL 1.11-1.12
SIMULATED_TRL = {Loss.CHUNKED_NLL: ("1.13", "1.14"), Loss.CHUNKED_NLL_FP32: ("1.11", "1.12")}
_PIN = {Loss.CHUNKED_NLL: "trl==1.14.0", Loss.CHUNKED_NLL_FP32: "trl==1.12.0"}


def _trl_patch(loss: Loss) -> Callable:
    wanted = SIMULATED_TRL[loss]
    try:
        version = importlib.metadata.version("trl")
    except importlib.metadata.PackageNotFoundError:
        raise PlannerError(f"simulating --loss {loss.value} runs TRL's own loss: pip install '{_PIN[loss]}' "
                           f"(TRL {wanted[0]}-{wanted[1]})") from None
    if not version.startswith(wanted):
        raise PlannerError(f"simulating --loss {loss.value} runs TRL {wanted[0]}-{wanted[1]}'s own loss; trl "
                           f"{version} is installed: pip install '{_PIN[loss]}' in the environment that simulates")
    from trl.trainer import sft_trainer   # lazy: TRL loads only when its loss is simulated
    if sft_trainer._CHUNKED_LM_HEAD_CHUNK_SIZE != CHUNK_POSITIONS:
        raise PlannerError(f"trl {version} chunks the LM head by {sft_trainer._CHUNKED_LM_HEAD_CHUNK_SIZE} positions; "
                           f"planner/techniques/chunked_nll.py models {CHUNK_POSITIONS}")
    return sft_trainer._patch_chunked_ce_lm_head


class HostCount(TorchDispatchMode):
    """Answers the chunk loop's one host read per forward (the padded count of labelled positions)
    with `answer`; a second integer read in the same forward fails the simulation."""

    def __init__(self, answer: int) -> None:
        super().__init__()
        self.answer, self.reads = answer, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default and args[0].dtype is torch.int64:
            if self.reads:
                raise RuntimeError("TRL's chunked_nll read a second integer from the device; profiler/"
                                   "trl_chunked_nll.py answers only the chunk count: check it against this TRL")
            self.reads += 1
            return self.answer
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def chunked_nll_forward(lm: torch.nn.Module, mark_loss: Callable[[], None],
                        loss: Loss = Loss.CHUNKED_NLL) -> Iterator[None]:
    """Inside the block, `lm(input_ids=..., labels=...)` computes TRL's chunked_nll loss, as SFTTrainer
    patches it; `mark_loss` is called when the decoder's last hidden state exists (the loss begins)."""
    patch = _trl_patch(loss)
    target = lm.get_base_model() if hasattr(lm, "get_base_model") else lm   # as SFTTrainer patches peft models
    patch(target, chunk_size=CHUNK_POSITIONS)
    hook = target.base_model.register_forward_hook(lambda module, inputs, output: mark_loss())
    try:
        yield
    finally:
        hook.remove()
        del target.forward   # the patch set an instance attribute: the class's forward comes back


@contextlib.contextmanager
def answered_chunk_count(setup: TrainingSetup, rows: int, seq_len: int) -> Iterator[None]:
    """The host read of one forward of `rows` x `seq_len` token ids answered: the labelled positions
    among the shifted ones, rounded up to whole chunks."""
    n = setup.labelled_positions(rows * (seq_len - 1), rows)
    with HostCount(chunks(n) * CHUNK_POSITIONS) as mode:
        yield
    if mode.reads != 1:
        raise RuntimeError(f"TRL's chunked_nll read {mode.reads} integers from the device, not the one chunk count "
                           "profiler/trl_chunked_nll.py answers: check it against this TRL")
