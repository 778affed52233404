"""Time of GRPO's rollouts with HF generate: the generation phase of planner/memory/rollouts.py, timed with
the step's own constants (planner/speed/throughput.py), amortized over the optimizer steps it feeds.

API: `rollout_time(model, setup, gpu, constants, e_gemm) -> RolloutTime | None` (None: not GRPO).

What runs, per generation (planner/techniques/grpo.py: TRL 1.16.0 GRPOTrainer `_generate_and_score_completions`,
every `steps_per_generation x num_iterations` micro-batches, on `per_device_train_batch_size x
steps_per_generation` completions per GPU):
- the prefill: one forward over the B prompts of P tokens, the lm_head on the last position only
  (generate passes `logits_to_keep=1`; transformers 5 generation/utils.py `_prepare_model_inputs`);
- N - 1 decode steps, each one forward of B tokens against a cache of P + k positions (decoded to the full
  length, as the memory phase assumes: min_new_tokens = max_new_tokens). A decode step is memory-bound: it
  reads every weight (QLoRA: dequantizes each 4-bit weight first, bitsandbytes' MatMul4Bit for inputs of more
  than one row), reads the KV cache in attention, and DynamicCache's `torch.cat` rewrites each layer's cache
  (reads the old, writes the new: cache_utils.py DynamicLayer.update), so the cache moves three times a step;
- the log-prob passes (reference, old policy) are no-grad forwards of the training batch: the step's
  `objective_sequences` counts them (techniques/preference.py time_sequences), not this module.

Each forward is timed as the training step's parts are: GEMM FLOPs / (peak x e_gemm) + bytes / (bandwidth x
e_mem) + dequantization / (bandwidth x e_dequant) + launches (n_layers x t_layer + adapter calls x t_adapter +
expert calls x t_expert), added as in the step. A forward's element-wise bytes per token are the step's over its
passes (forward, twice for the backward, the recompute). On several GPUs with FSDP/ZeRO-3 every forward gathers
the weights again (FSDP2's hooks run at each decode step; ZeRO-3 module by module unless
ds3_gather_for_generation gathers once per generate: memory/rollouts.py `_gathers`): the gathers' seconds at the
peer link, overlapped with the forward's own (the larger counts).

Not modelled: HF generate's per-token Python work outside the model (logits processors, top-k/top-p sampling,
stopping criteria), vLLM's generation (its own engine: not timed, said in the output). No published GRPO run
checks this: it is the step's model applied to generate's passes.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..specs.engines import Engine, engine_of
from ..specs.enums import Objective
from ..specs.gpu import GpuSpec
from ..specs.model import ModelSpec
from ..specs.params import param_counts
from ..specs.resolved import resolve
from ..specs.setup import TrainingSetup
from ..techniques import ADAPTERS, attention
from ..techniques.generation import cached_positions, kv_bytes
from ..techniques.grpo import NUM_ITERATIONS, generation_batch, steps_per_generation
from . import dequant, links
from .flops import layer_linear_weights, stored_linear_weights, causal_fraction
from .kernels import BACKWARD_FACTOR, step_traffic

# engines whose forward gathers sharded weights (every pass of generate runs the forward hooks)
_GATHERING = (Engine.ZERO3, Engine.FSDP_FULL, Engine.FSDP_HYBRID, Engine.FSDP_GRAD_OP, Engine.YAFSDP)


@dataclass(frozen=True)
class RolloutTime:
    """Seconds of one generation per GPU, by part, and how many generations one optimizer step carries."""

    prefill_s: float
    decode_s: float
    gather_s: float          # exposed weight gathers (sharded engines), 0 on one GPU
    completions: int
    new_tokens: int
    per_step: float          # generations per optimizer step: grad_accum / (steps_per_generation x num_iterations)

    @property
    def per_generation_s(self) -> float:
        return self.prefill_s + self.decode_s + self.gather_s

    @property
    def per_optimizer_step_s(self) -> float:
        return self.per_generation_s * self.per_step


def _forward_seconds(flops: float, bytes_moved: float, deq_bytes: float, launches: float, gpu: GpuSpec, peak: float,
                     e_gemm: float, c) -> float:
    return (flops / (peak * e_gemm) + bytes_moved / (gpu.memory_bandwidth * c.memory_efficiency)
            + deq_bytes / (gpu.memory_bandwidth * c.dequant_efficiency) + launches)


def rollout_time(model: ModelSpec, setup: TrainingSetup, gpu: GpuSpec, c, e_gemm: float,
                 peak: float) -> RolloutTime | None:
    """The rollouts' time of a GRPO setup with HF generate (None for other objectives and for vLLM)."""
    if setup.objective is not Objective.GRPO or setup.vllm_colocate or setup.vllm_server_gpus:
        return None
    rs = resolve(model, setup)
    m = model
    B, N = generation_batch(setup), setup.completion_len
    P = setup.seq_len - N
    e = rs.compute.bytes
    adapter = ADAPTERS[rs.adapters.kind] if rs.adapters else None
    linear = 2 * (layer_linear_weights(m) + (adapter.flop_weights(m, rs) if adapter else 0.0))  # per token
    head = 2 * m.head_rows * m.hidden                                                            # per position
    stored = stored_linear_weights(m)
    weights = (stored + m.head_rows * m.hidden) * e        # each forward's GEMMs read every weight once
    deq = stored * dequant.bytes_per_weight(setup.quant, e) if rs.quantized is not None else 0.0
    tr = step_traffic(m, setup)
    passes = tr.layer_passes / max(m.n_layers, 1)          # the step's layer passes: forward, backward, recompute
    per_pass = 1 + BACKWARD_FACTOR + (passes - 2)          # the step's bytes are forward x this
    per_token = tr.bytes_per_token / per_pass
    launches = (m.n_layers * c.per_layer_pass_s + tr.adapter_calls / passes * c.per_adapter_call_s
                + tr.expert_calls / passes * c.per_expert_call_s)
    kv = kv_bytes(m, rs).total * m.n_layers                 # bytes per cached position, all layers
    prefill = _forward_seconds(B * P * linear + B * head
                               + B * P * attention.score_flops_per_token(m, P) * causal_fraction(rs.setup.attention, P),
                               B * P * per_token + weights + B * kv * cached_positions(m, P), deq, launches, gpu, peak,
                               e_gemm, c)
    steps = max(N - 1, 0)
    ctx = P + N / 2                                         # the mean cache length over the decode steps
    decode_one = _forward_seconds(B * (linear + head) + B * attention.score_flops_per_token(m, ctx),
                                  B * per_token + weights + 3 * B * kv * cached_positions(m, ctx), deq, launches,
                                  gpu, peak, e_gemm, c)
    gather = 0.0
    p = setup.parallel
    eng = engine_of(p)
    if not p.single_gpu and eng in _GATHERING and p.dp > 1:
        full = param_counts(m).total * rs.compute.bytes * (p.dp - 1) / p.dp   # what each rank receives per gather
        link = links.gpu_peer_link(gpu).effective
        once = eng is Engine.ZERO3 and setup.ds3_gather_for_generation
        forwards = 1 if once else 1 + steps
        # overlapped with the forwards' own time: the larger counts (prefetch hides one behind the other)
        gather = max(0.0, forwards * full / link - (0 if once else prefill + steps * decode_one))
    per_step = setup.grad_accum / (steps_per_generation(setup) * NUM_ITERATIONS)
    return RolloutTime(prefill, steps * decode_one, gather, B, N, per_step)
