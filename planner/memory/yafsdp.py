"""YaFSDP (`--fsdp yafsdp`): Yandex's sharded data parallelism, per GPU, per phase. Modelled from
source, not simulated (it needs patched accelerate/transformers/trl and CUDA streams).

Source: yandex/YaFSDP @ 669fc366f1fb9dcd311c862a1c7450990c8d3721, ya_fsdp/ya_fsdp.py, as its
accelerate patch builds it: `YaFSDP(model, zero_stage=3, param_dtype=mixed_precision_policy.param_dtype,
modules_to_wrap_with_names=..., ...)` with is_trainable and bit16_reduce_scatter left at their defaults
(True, False) [patches/accelerate.diff L43-53]; the patched scripts wrap embed_tokens, every decoder
layer and lm_head as super tensors, and collect every RMSNorm (the final one as a "rogue" module) into
one layer-norm super tensor [patches/trl.diff examples/scripts/sft.py L71-83].

- A super tensor flattens its module's parameters, padded to a multiple of the world size, and keeps a
  1/n shard [SuperTensor.__init__ L829-865].
- Sharded state, for trainable models [YaFSDP.__init__ L395-422]: `_main_parameter`, an fp32 master of
  all shards (sum_shards); its `.grad`, an fp32 gradient shard; `_main_parameter_bit16`, a param_dtype
  copy the forward pre-hook refreshes from the master [L519-520] and the all-gathers read; the same
  three for the layer-norm super tensor [L364-388].
- Reusable buffers, allocated once at construction and never freed [ReusableBuffer.__init__
  L626-630]: two weight buffers and two gradient buffers of `max_buffer_size` (the largest super
  tensor, padded) in param_dtype [L424-450], one fp32 reduce-scatter buffer of
  max(layer-norm numel, max_buffer_size) [L327-335], and the layer-norm super tensor's weight and
  gradient buffers, full size, in param_dtype [L339-357].
- Each parameter's gradient is computed by autograd and then copied (or added) into the gradient
  buffer [meta_param.py Narrow.backward L16-26]: one parameter's gradient is transient.
- Collectives [SuperTensor.all_gather L922-943, reduce_scatter_grad L956-997]: every super tensor is
  all-gathered in param_dtype before its forward and again before its backward (zero_stage 3), and its
  gradient is copied into the fp32 buffer and reduce-scattered in fp32 into the master gradient shard:
  the same collectives and bytes as FSDP2 with param_dtype=bf16, reduce_dtype=fp32.
"""
from __future__ import annotations

from dataclasses import replace

from ..specs.engines import Engine, shard_degree
from ..specs.model import ModelSpec
from ..specs.params import param_counts
from ..specs.enums import Component as C
from ..specs.enums import Precision
from ..specs.setup import TrainingSetup
from .figures import worst_phases
from .pieces import Stage, pieces, resolved_states

TAG = "modelled from source, not simulated"
SOURCE = "yandex/YaFSDP @ 669fc36"
# README.md "Benchmarks" @ 669fc36: pre-training, per-device batch 1, 64-256 A100 80GB
README_CLAIM = ("YaFSDP's README reports up to 20% faster pre-training than FSDP (speedups 2.32%-26.60% on "
                "64-256 A100s, Llama 2/3 7B-70B at batch 1 per device); not applied to this estimate")


def _padded(numel: int, n: int) -> int:
    return -(-numel // n) * n


def super_tensors(m: ModelSpec) -> tuple[int, ...]:
    """Numel of each super tensor the patched scripts wrap, unpadded: embed_tokens, each decoder layer
    (its RMSNorms taken out), lm_head."""
    pc = param_counts(m)
    layer = (pc.attention + pc.mlp) // m.n_layers
    return (pc.embedding, *([layer] * m.n_layers), pc.lm_head)


def buffer_numels(m: ModelSpec, n: int) -> dict[str, int]:
    """Elements of YaFSDP's sharded state and reusable buffers on one of `n` ranks."""
    sts = [s for s in super_tensors(m) if s]
    ln = param_counts(m).norms            # every RMSNorm: the layer-norm super tensor
    return {
        "shards": sum(_padded(s, n) // n for s in sts),   # sum_shards
        "ln_shard": _padded(ln, n) // n,
        "max_buffer": max(_padded(s, n) for s in sts),     # max_buffer_size
        "ln_buffer": _padded(ln, n),
        "fp32_buffer": max(ln, max(_padded(s, n) for s in sts)),
    }


def static_bytes(m: ModelSpec, setup: TrainingSetup) -> tuple[int, int, int]:
    """(weights, gradients, optimizer state) bytes one GPU holds for the whole run: the sharded state and
    the reusable buffers, allocated at construction; YaFSDP refuses zero_grad(set_to_none=True)
    [YaFSDP.zero_grad L591-600], so the gradient shard stays too."""
    n = shard_degree(setup.parallel)
    b = buffer_numels(m, n)
    e16 = setup.precision.compute_dtype.bytes        # param_dtype: the mixed-precision policy's
    shard = b["shards"] + b["ln_shard"]
    # the master is fp32 whatever the precision: Adam's state is the fp32 optimizer's, per sharded element
    st32 = resolved_states(m, replace(setup, precision=Precision.FP32))
    O = st32.optimizer_state * shard // param_counts(m).total
    W = 4 * shard + e16 * shard + 2 * e16 * b["max_buffer"] + e16 * b["ln_buffer"]
    G = 4 * shard + 2 * e16 * b["max_buffer"] + e16 * b["ln_buffer"] + 4 * b["fp32_buffer"]
    return W, G, O


def yafsdp_phases(m: ModelSpec, setup: TrainingSetup, eng: Engine,
                  stage: Stage = Stage.ALL) -> tuple[dict, list[str]]:
    """The per-phase live set of one GPU under YaFSDP, and its notes."""
    n = shard_degree(setup.parallel)
    b = buffer_numels(m, n)
    e16 = setup.precision.compute_dtype.bytes
    W, G, O = static_bytes(m, setup)
    st32 = resolved_states(m, replace(setup, precision=Precision.FP32))
    step_t = st32.optimizer_step_temporaries * (b["shards"] + b["ln_shard"]) // param_counts(m).total
    pz = pieces(m, setup, eng, stage)
    head_grad = e16 * m.vocab * m.hidden              # lm_head's gradient before its copy into the buffer
    largest_linear = e16 * max(lin.weight_count for lin in m.dense_linears + m.moe_linears)

    def phase(**c: int) -> dict:
        return {"w": W, "g": G, C.OPTIMIZER_STATE: O, **c}

    fwd = [phase(a=pz.acts + pz.fwd_extra, l=pz.logit_fwd, t=0)]
    bwd = [phase(a=pz.acts, l=pz.logit_saved, t=pz.logit_bwd),
           phase(a=pz.acts, l=0, t=pz.logit_grad_read + head_grad),                # the lm_head's backward
           phase(a=pz.acts, l=0, t=pz.recompute + pz.layer_transient + largest_linear),
           phase(a=pz.outside, l=0, t=pz.layer_transient + pz.embed_grad)]       # the embedding's, last
    opt = phase(a=0, l=0, t=step_t)
    notes = [f"YaFSDP (zero_stage=3) over {n} GPUs, {TAG} ({SOURCE}): fp32 master, fp32 gradient and "
             f"{setup.precision.compute_dtype.value} copy of a 1/{n} shard; two weight and two gradient buffers "
             f"of the largest super tensor ({b['max_buffer']:,} elements) and an fp32 reduce-scatter buffer, "
             "allocated once", README_CLAIM]
    return worst_phases(fwd, bwd, opt), notes
