"""ORPO (TRL 1.16.0 trl/experimental/orpo/orpo_trainer.py), modelled from its source: no reference
model; chosen and rejected concatenated into one batch of 2b sequences (`concatenated_inputs`), run
through the model without labels, so the (2b, s, V) logits exist in the lm_head's dtype
(`concatenated_forward`: `outputs.logits`). Two terms read them:

- the chosen NLL over prompt and response: `logits[:b][..., :-1, :].contiguous()` (a copy, unless
  b == 1, where the slice is already contiguous), then `nn.CrossEntropyLoss`: log_softmax's output,
  saved for backward; under autocast log_softmax runs in fp32 (an fp32 copy of its input, then an
  fp32 output; torch's autocast fp32 list, `log_softmax`, checked on CPU autocast by the simulator);
- the log-probs of both sides' completions (`get_batch_logps`): a cloned int64 label copy, its
  `torch.where` and bool mask, then `selective_log_softmax` [trl/trainer/utils.py], TRL's Triton
  kernel on CUDA [trl/kernels/logprob_entropy.py `_LogProbEntropyFunction`]: four fp32 vectors, the
  logits saved (no copy); backward `grad_logits = torch.empty_like(logits)`.

`loss = policy_nll_loss - losses.mean()` [get_batch_loss_metrics]. Backward, as the simulator's
autograd runs it: the log-prob branch first (created last), its (2b, s-1, V) gradient and the
SliceBackward's (2b, s, V) zeros; then the NLL branch on top of that buffer: the gradients of
log_softmax, the two SliceBackward zeros ((b, s, V), then (2b, s, V)) and their sum into the logits'
gradient
(out of place: both gradients and the sum alive, the step's widest moment, simulated).
"""
from __future__ import annotations

from ..specs.model import ModelSpec
from ..specs.resolved import Resolved

BETA = 0.1   # ORPOConfig.beta [trl/experimental/orpo/orpo_config.py, TRL 1.16.0]: only scales the loss


def loss_bytes(m: ModelSpec, rs: Resolved, T: int, sequences: int) -> tuple[int, int, int]:
    """(forward peak, saved at forward end, backward temporaries) of ORPO's loss on T tokens in
    `sequences` = 2b sequences (chosen then rejected)."""
    V, e = m.vocab, rs.compute.bytes
    b = sequences // 2
    s = T // max(sequences, 1)
    P, Pc = T - sequences, b * (s - 1)                 # shifted positions: all, chosen
    a = 4 if rs.autocast else e                        # log_softmax's dtype
    logits, chosen = T * V * e, Pc * V
    contig = chosen * e if b > 1 else 0
    lsm_in = chosen * 4 if rs.autocast and e < 4 else 0   # autocast's fp32 copy of log_softmax's input
    fwd = logits + contig + lsm_in + chosen * a
    small = P * (8 + 8 + 1) + 2 * 4 * P                # labels clone, where, mask; log_z, expected_logit
    saved = logits + chosen * a + small
    # backward moments beyond `saved` (logits and log_softmax output), in the order autograd runs them
    kernel = P * V * e                                        # grad_logits beside the saved logits
    slice_all = P * V * e + T * V * e - logits                # logits freed: grad_logits + (2b, s, V) zeros
    buf = T * V * e - logits                                  # the logits' gradient buffer replaces them
    nll = buf + 2 * chosen * a                                # grad of log_softmax's output, its input's grad
    cast = buf + chosen * e if a != e else 0                  # ToCopyBackward to the logits' dtype
    zeros_b = buf + chosen * e + b * s * V * e - chosen * a   # log_softmax's output freed
    zeros_all = buf + b * s * V * e + T * V * e - chosen * a
    summed = buf + 2 * T * V * e - chosen * a                # the two branches' gradients and their sum
    bwd = max(kernel, slice_all, nll, cast, zeros_b, zeros_all, summed)
    return int(fwd + small), int(saved), int(bwd)


def notes(rs: Resolved) -> list[str]:
    return [f"ORPO modelled from TRL 1.16.0's source (trl.experimental): chosen and rejected in one batch of "
            f"{2 * rs.setup.batch_size} sequences, full logits, no reference model (simulated with TRL's own loss "
            "code, its Triton log-prob kernel by an allocation stand-in); the padding mask's cost is not modelled yet"]
