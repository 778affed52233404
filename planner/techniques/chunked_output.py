"""torchtune's CEWithChunkedOutputLoss (`--loss chunked-output`, torchtune 0.6.1): the output projected
in sequence chunks, each chunk's logits kept in the compute dtype and upcast to fp32 one chunk at a
time for its cross-entropy [torchtune/modules/transformer.py chunked_output l.482-502;
torchtune/modules/loss/ce_chunked_output_loss.py l.35-63]. Simulated by profiler/torchtune_loss.py."""
from __future__ import annotations

from ..specs.enums import DType
from ..specs.errors import NoClosedForm
from ..specs.model import ModelSpec
from ..specs.resolved import Resolved

NUM_OUTPUT_CHUNKS = 8   # CEWithChunkedOutputLoss(num_output_chunks=8) [ce_chunked_output_loss.py __init__]


def loss_bytes(m: ModelSpec, rs: Resolved, T: int, sequences: int) -> tuple[int, int, int]:
    """(forward peak, saved at forward end, backward temporaries) of the chunked-output loss over T
    tokens in `sequences` sequences.

    Forward, at the last chunk: every chunk's logits (T, V) in the compute dtype, the fp32 log_softmax
    outputs cross_entropy saves for each chunk (T, V), and the last chunk's fp32 upcast. At its end the
    chunk list is dropped: the log_softmax outputs remain. Backward starts with the last chunk: the
    fp32 gradient of its log_softmax output and input (nll_loss / log_softmax backward).
    """
    if m.final_logit_softcap:
        raise NoClosedForm("--loss chunked-output with final logit soft-capping (Gemma-2) has no closed form")
    if rs.autocast and rs.residual is DType.FP32:
        # each chunk's matmul would save its own 16-bit cast of the fp32 lm_head: not what torchtune runs
        raise NoClosedForm("--loss chunked-output under autocast with an fp32 lm_head has no closed form "
                           "(torchtune runs its model without autocast: --precision bf16-true)")
    V, e = m.vocab, rs.compute.bytes
    s = T // sequences
    Tc = sequences * -(-s // NUM_OUTPUT_CHUNKS)      # tokens of the largest chunk (torch.chunk: ceil)
    upcast = 4 if e < 4 else 0
    fwd = T * V * e + T * V * 4 + Tc * V * upcast
    return int(fwd), int(T * V * 4), int(Tc * V * 8)
