"""Activation offloading: saved activations copied to pinned host memory in the forward and back in
the backward. Modelled from each library's source, not simulated: the copies run on CUDA streams
into pinned memory, which the CPU simulator has neither of (the offloaders skip CPU tensors).

What each variant moves, and what stays on the GPU:

- `trl`: TRL's OffloadActivations [trl/models/activation_offloading.py, v1.9.0]: a
  saved_tensors_hooks whose pack_tensor copies every saved tensor of at least min_offload_size =
  1024 bytes that lives on the accelerator and is neither a Parameter/Buffer nor a parameter's
  storage into `torch.empty_like(..., pin_memory=True, device="cpu")` on a side stream (s1); the GPU
  tensor is held in fwd_stash until max_fwd_stash_size = 5 later packs. get_act_offloading_ctx_manager
  wraps lm_head in a NoOpManager (its saved tensors stay), and SFTTrainer.training_step enters the
  context around the whole step: the loss's saved tensors (log_softmax's fp32 output) are copied
  too, but they are the last packs of the forward, still in the stash when backward starts.
  unpack_tensor_with_streams brings a tensor back on s1 when autograd unpacks it and drops it after
  the next node that unpacks one has run: two layers' tensors are on the GPU at a time.
- Under checkpointing (torch.utils.checkpoint, non-reentrant) the offloader sees only what
  `_NoopSaveInputs` saves outside the checkpoint's own hooks: each checkpointed layer's input;
  inside the region the checkpoint's hooks are innermost, so the recomputed tensors never reach it.
  A layer that is not checkpointed (--ckpt-every) has every saved tensor offloaded.
- `trl-sync`: the same hooks with use_streams=False (axolotl `activation_offloading: legacy`,
  core/trainers/mixins/activation_checkpointing.py at 067b021c): no stash, copies on the compute
  stream, one layer's tensors back at a time.
- `torchtune`: torchtune's OffloadActivations [torchtune/training/_activation_offloading.py, 0.6.1]:
  the same pack/unpack with streams and stash (no storage dedup); the recipes enter it around
  `self._model(**batch)` only, so the loss is not offloaded, and raise RuntimeError unless
  enable_activation_checkpointing [recipes/lora_finetune_single_device.py __init__, _loss_step].
- `layer-inputs`: only each checkpointed layer's input goes to host, nothing else, one input back
  at a time: transformers' `activation_checkpointing_kwargs={"offload": True}` [modeling_utils.py
  _activation_checkpointing_enable: save_on_cpu(pin_memory=True) around each checkpoint, copies on
  the compute stream]; axolotl's legacy offloaded checkpointer (monkeypatch/gradient_checkpointing/
  offload_cpu.py: `hidden_states.to("cpu", non_blocking=True)`, pinned [aten _to_copy: pin_out]) and
  `activation_offloading: hidden_states` (monkeypatch/checkpoint_activation_offload.py: marked
  checkpoint inputs only, on a side stream; timed here as on the compute stream).
- `unsloth`: Unsloth's use_gradient_checkpointing="unsloth" [unslothai/unsloth-zoo
  unsloth_zoo/gradient_checkpointing.py @0373fcc UnslothCheckpointFunction]: each checkpointed
  layer's input of more than MINIMUM_SIZE = 2 MiB / 2 elements is copied into pinned CPU_BUFFERS on
  EXTRA_STREAMS, except the last layer's (LAST_GC_INDEX, after the first step); in backward it comes
  back into one of two global GPU buffers (GPU_BUFFERS, GPU_BUFFERS_B: double buffering) resized to
  the largest input and never freed, so they are live in every phase.

No variant writes to disk at the sources read: axolotl's `activation_offloading: disk` (and
`gradient_checkpointing: offload_disk`, rewritten to it in utils/schemas/validation.py
check_gradient_checkpointing_w_offload) runs TRL's manager with streams; its disk checkpointer
(monkeypatch/gradient_checkpointing/offload_disk.py Disco) is patched in only for
`activation_offloading == "offload_disk"` (loaders/patch_manager.py), a value its schema never holds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..specs.model import ModelSpec
from ..specs.resolved import Resolved
from ..specs.setup import ActivationOffload as A
from . import checkpointing

# hooks around the whole forward: every saved tensor outside a checkpointed region goes to host
_EVERY_SAVED = (A.TRL, A.TRL_SYNC, A.TORCHTUNE)
# copies on a side stream (overlap with compute): TRL's and torchtune's use_streams=True
_STREAMED = (A.TRL, A.TORCHTUNE, A.UNSLOTH)
# the context spans the loss (TRL's training_step; axolotl's mixin the same)
_WITH_LOSS = (A.TRL, A.TRL_SYNC)
NEEDS_CHECKPOINTING = (A.TORCHTUNE, A.LAYER_INPUTS, A.UNSLOTH)
# TRL's and torchtune's OffloadActivations(min_offload_size=1024, max_fwd_stash_size=5)
MIN_OFFLOAD_BYTES = 1024
FWD_STASH = 5
# unsloth_zoo gradient_checkpointing.py: MINIMUM_SIZE = 2 * 1024 * 1024 // n_bytes (bf16 buffers),
# compared with the input's numel; GPU_BUFFERS and GPU_BUFFERS_B: two resident input-sized buffers
UNSLOTH_MIN_NUMEL = 2 * 1024 * 1024 // 2
UNSLOTH_GPU_BUFFERS = 2


@dataclass(frozen=True)
class Offloaded:
    """Bytes of one micro-batch the offloader takes off the GPU at each point of the step, and the
    pinned host memory it holds."""

    forward: int = 0        # off the GPU at the end of the forward
    backward: int = 0       # off the GPU at the start of backward (also autocast's copies, once its cache is gone)
    recompute: int = 0      # off the GPU while the highest checkpointed layer is recomputed
    in_flight: int = 0      # without checkpointing: the layers' tensors back on the GPU at a time
    host: int = 0           # pinned host memory (D2H in the forward, H2D in the backward)
    resident: int = 0       # GPU buffers the offloader keeps in every phase (Unsloth's two input buffers)

    def __bool__(self) -> bool:
        return bool(self.host)


def enabled(rs: Resolved) -> bool:
    return rs.setup.activation_offload is not A.NONE


def offloaded(m: ModelSpec, rs: Resolved, act: Any, T: int, logit_saved: int) -> Offloaded:
    """What the setup's offloader moves for T tokens; `act` is the step's ActivationBytes (per-token
    saved bytes per layer and outside the layers), `logit_saved` the loss's saved bytes."""
    kind = rs.setup.activation_offload
    if kind is A.NONE:
        return Offloaded()
    n_ckpt, n_kept, above = checkpointing.layer_split(m, rs)
    x = T * rs.residual.bytes * m.hidden              # a checkpointed layer's input (what _NoopSaveInputs saves)
    if kind is A.UNSLOTH:
        if T * m.hidden <= UNSLOTH_MIN_NUMEL:
            return Offloaded()
        moved = (n_ckpt - 1) * x                      # the last checkpointed layer's input stays
        buffers = UNSLOTH_GPU_BUFFERS * x
        # in backward the input comes back into a buffer: nothing new is allocated for it
        return Offloaded(int(moved), int(moved), int(moved), 0, int(moved), int(buffers))
    kept = T * act.per_layer if kind in _EVERY_SAVED else 0   # a layer outside any checkpoint, all of it
    back = 2 if kind in _STREAMED else 1              # layers whose tensors are back on the GPU at once
    forward = n_ckpt * x + n_kept * kept
    # autocast's 16-bit copies that the kept layers' matmuls save are tensors like any other: cached
    # (so on the GPU) until autocast exits after the forward, offloaded for the backward
    copies = (act.layer_copies + act.adapter_copies) * n_kept // m.n_layers if kind in _EVERY_SAVED else 0
    backward = forward + copies
    host = backward + (int(T * act.outside) if kind in _EVERY_SAVED else 0) + (logit_saved if kind in _WITH_LOSS else 0)
    if n_ckpt:
        recompute = max(n_ckpt - back, 0) * x + (n_kept - above) * kept + copies * (n_kept - above) // max(n_kept, 1)
        return Offloaded(int(forward), int(backward), int(recompute), 0, int(host))
    return Offloaded(int(forward), int(backward), 0, int(min(back, m.n_layers) * kept), int(host))


def transfer_seconds(host_bytes: float, link_bytes_per_s: float) -> float:
    """One direction's copy time of `host_bytes` over the host link (D2H in the forward; the same
    bytes come back H2D in the backward)."""
    return host_bytes / link_bytes_per_s


def exposed_seconds(rs: Resolved, host_bytes: float, link_bytes_per_s: float, forward_s: float,
                    backward_s: float) -> float:
    """Seconds of the two copies not hidden behind compute: all of them on the compute stream
    (trl-sync, layer-inputs); on a side stream (trl, torchtune) only what exceeds the forward's
    and the backward's compute time."""
    t = transfer_seconds(host_bytes, link_bytes_per_s)
    if rs.setup.activation_offload in _STREAMED:
        return max(0.0, t - forward_s) + max(0.0, t - backward_s)
    return 2 * t


def notes(rs: Resolved, off: Offloaded) -> list[str]:
    kind = rs.setup.activation_offload
    if kind is A.NONE:
        return []
    inputs_only = kind in (A.LAYER_INPUTS, A.UNSLOTH) or (checkpointing.enabled(rs) and not checkpointing.selective(rs))
    where = ("each checkpointed layer's input" if inputs_only else
             f"every saved activation of at least {MIN_OFFLOAD_BYTES} bytes outside checkpointed layers")
    if kind is A.UNSLOTH:
        where += " but the last (two input-sized GPU buffers stay allocated)"
    if kind in _WITH_LOSS:
        where += ", and the loss's saved logits (copied, still on the GPU in the stash when backward starts)"
    stream = "on a side stream, overlapping compute" if kind in _STREAMED else "on the compute stream (not overlapped)"
    return [f"activation offload {kind.value}: {where} copied to {off.host / 2**30:.2f} GiB of pinned host memory "
            f"per micro-batch, {stream}; modelled from source, not simulated"]
