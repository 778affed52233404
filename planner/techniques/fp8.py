"""torchao float8 training (`convert_to_float8_training`, dynamic tensorwise or rowwise scaling): which
linears are converted, what they save, and the transients of their fp8 casts.

Source: torchao 0.18.0 torchao/float8/.
- float8_linear.py `matmul_with_hp_or_float8_args.forward` calls `ctx.save_for_backward(input_hp,
  weight_hp_t)`: the high-precision input and weight are saved exactly as nn.Linear saves them, so a
  converted linear saves no more and no less; every fp8 tensor is a transient. The forward casts the
  input, then the weight; the backward casts grad_output, the weight (for grad_input), the input and
  grad_output again (for grad_weight). The casts are locals of the autograd Function, alive until it
  returns.
- float8_utils.py `tensor_to_amax` takes `torch.abs(x)` (a copy in x's dtype) and reduces it; there
  is no amax history (delayed scaling was removed): one scale per tensor (tensorwise) or per row
  (rowwise, fp32, kept beside the fp8 data).
- float8_training_tensor.py `_ToFloat8ConstrFunc.forward`: `tensor.to(torch.float32) * scale`, then
  float8_utils.py `to_fp8_saturated` clamps (a second fp32 tensor) and casts to fp8 while the first
  is still referenced: a cast of n elements peaks at 4n + 4n + 1n = 9n bytes above its source
  (the `abs` copy, 2n or 4n, is freed before), and leaves n bytes of fp8 data.
- `Float8Linear.forward` casts its input to the autocast dtype itself and never calls F.linear,
  so under autocast no 16-bit copy of a converted linear's weight is cached [precision.py
  weight_copies]: its fp32 weight is cast to fp8 directly. The bias is added with `.to(dtype)`,
  a transient.
- Which linears: accelerate 1.15 `convert_model_to_fp8_ao` (accelerate/utils/ao.py) skips the first
  and last nn.Linear of `named_modules()` (layer 0's first projection and the lm_head) and any whose
  in/out features are not multiples of 16; torchao's `convert_to_float8_training` without a
  `module_filter_fn` converts every nn.Linear (`--fp8-linears all`).

Checked against the simulator running the real conversion under FakeTensorMode, bf16-true (the
accuracy matrix `fp8`). bf16-mixed is modelled from source, not simulated: `Float8Linear.forward`
tests `torch.is_autocast_enabled()` (CUDA's autocast), which the CPU simulator's autocast never sets.
"""
from __future__ import annotations

from ..specs.enums import Fp8, Fp8Linears, Loss, Precision
from ..specs.errors import PlannerError
from ..specs.gpu import GpuSpec
from ..specs.model import LinearSpec, ModelSpec
from ..specs.resolved import Resolved
from ..specs.setup import TrainingSetup

# bytes per element of one cast: `tensor.to(torch.float32) * scale` (4), `to_fp8_saturated`'s clamp (4), then
# `.to(float8_dtype)` (1) [torchao 0.18.0 float8/float8_training_tensor.py l.153-154, float8_utils.py l.118-138]
CAST_PEAK = 9
FP8 = 1         # bytes per element of float8_e4m3fn / e5m2
SCALE = 4       # bytes per fp32 scale (one per row under rowwise)
# compute capability >= 8.9 has fp8 tensor cores (torch._scaled_mm's requirement); by architecture
FP8_ARCHITECTURES = {"ada": "8.9", "hopper": "9.0", "blackwell": "10.0/12.0"}
MODELLED = "modelled from source (torchao 0.18 float8), not simulated"


def active(setup: TrainingSetup) -> bool:
    return setup.fp8 is not Fp8.NONE


def check(m: ModelSpec, rs: Resolved) -> None:
    """Raises PlannerError for a setup torchao float8 cannot run or gpuplan has not counted."""
    setup = rs.setup
    name = f"--fp8 {setup.fp8.value}"
    if rs.quantized is not None:
        raise PlannerError(f"{name} with --method {setup.method.value}: bitsandbytes' Linear4bit weights are not "
                           "nn.Linear, so torchao converts none of them; drop --fp8 or use --method full")
    if not rs.full:
        raise PlannerError(f"{name} with --method {setup.method.value} is not modelled yet (peft's wrapped base "
                           "linears are not counted); use --method full or drop --fp8")
    if setup.precision not in (Precision.BF16_TRUE, Precision.BF16_MIXED):
        raise PlannerError(f"{name} with --precision {setup.precision.value}: torchao float8 training runs in bf16 "
                           "(accelerate's fp8 mixed precision autocasts to bf16); use bf16-mixed or bf16-true")
    if setup.parallel.world > 1:
        raise PlannerError(f"{name} with more than one GPU is not modelled yet (FSDP's float8 all-gather); "
                           "use --gpus 1")
    if setup.compile.value != "none":
        raise PlannerError(f"{name} with --compile {setup.compile.value} is not modelled yet (inductor fuses the "
                           "casts); drop one of them")
    if setup.loss is not Loss.HF or setup.liger.any():
        raise PlannerError(f"{name} with --loss {setup.loss.value} or Liger kernels is not modelled yet (they call "
                           "the lm_head's weight themselves); use --loss hf without --liger")
    if m.moe_layers:
        raise PlannerError(f"{name} with {m.name}'s experts is not modelled yet (fused expert weights are not "
                           "nn.Linear); drop --fp8")
    if setup.fp8_linears is Fp8Linears.ALL:
        odd = [lin.name for lin in m.dense_linears if lin.in_features % 16 or lin.out_features % 16]
        if odd or m.vocab % 16 or m.hidden % 16:
            raise PlannerError(f"--fp8-linears all with {m.name}: {', '.join(odd) or 'lm_head'} has features not "
                               "divisible by 16, which torch._scaled_mm refuses; use --fp8-linears skip-first-last")


def check_gpu(setup: TrainingSetup, gpu: GpuSpec) -> None:
    """Raises PlannerError where `gpu` has no fp8 tensor cores (compute capability below 8.9)."""
    if not active(setup) or gpu.architecture in FP8_ARCHITECTURES:
        return
    if gpu.raw.get("vendor", "nvidia") != "nvidia":
        raise PlannerError(f"--fp8 {setup.fp8.value} on {gpu.name} ({gpu.architecture}) is not modelled (only "
                           "NVIDIA's float8 e4m3fn/e5m2 path); drop --fp8 or pick an Ada, Hopper or Blackwell GPU")
    raise PlannerError(f"--fp8 {setup.fp8.value} on {gpu.name} ({gpu.architecture}): float8 matmuls need "
                       "compute capability 8.9 or higher (Ada, Hopper, Blackwell); drop --fp8 or pick such a GPU")


def _converted(m: ModelSpec, lin: LinearSpec, setup: TrainingSetup) -> bool:
    return setup.fp8_linears is Fp8Linears.ALL or (lin.in_features % 16 == 0 and lin.out_features % 16 == 0)


def head_converted(setup: TrainingSetup) -> bool:
    """accelerate's filter keeps the last nn.Linear (the lm_head) in high precision."""
    return active(setup) and setup.fp8_linears is Fp8Linears.ALL


def weight_copies(m: ModelSpec, rs: Resolved, layer_copies: int, head_live: int,
                  head_saved: int) -> tuple[int, int, int]:
    """precision.weight_copies with the converted linears' autocast copies removed: only the
    first linear of layer 0 (accelerate's filter) and an unconverted lm_head keep theirs."""
    setup = rs.setup
    if layer_copies:
        first = m.dense_linears[0]
        kept = first.param_count if setup.fp8_linears is Fp8Linears.SKIP_FIRST_LAST else 0
        kept += sum(lin.param_count for lin in m.dense_linears if not _converted(m, lin, setup)) * m.n_layers
        layer_copies = int(rs.compute.bytes * kept)
    if head_converted(setup):
        head_live, head_saved = 0, 0
    return layer_copies, head_live, head_saved


def _rowwise(setup: TrainingSetup, rows: int) -> int:
    return SCALE * rows if setup.fp8 is Fp8.ROWWISE else 0


def head_forward_peak(m: ModelSpec, rs: Resolved, T: int) -> int:
    """Bytes above the forward's saved set while the converted lm_head runs: its input's fp8 copy,
    then the weight's cast, then the logits with both fp8 operands still referenced."""
    if not head_converted(rs.setup):
        return 0
    V, h, e = m.vocab, m.hidden, rs.compute.bytes
    weight_cast = FP8 * T * h + CAST_PEAK * V * h + _rowwise(rs.setup, V)
    logits = FP8 * T * h + FP8 * V * h + e * T * V
    return max(CAST_PEAK * T * h, weight_cast, logits)


def head_backward_peak(m: ModelSpec, rs: Resolved, T: int) -> int:
    """Bytes above the backward's saved set while the converted lm_head's backward runs, the logits'
    gradient (T V e) included: the casts of grad_output, the weight, the input and grad_output again,
    each while the earlier casts and grad_input are still referenced, then grad_weight."""
    if not head_converted(rs.setup):
        return 0
    V, h, e = m.vocab, m.hidden, rs.compute.bytes
    go, w8 = FP8 * T * V, FP8 * V * h
    held = go + w8 + e * T * h                      # fp8 grad_output, fp8 weight, grad_input
    peaks = (CAST_PEAK * T * V,
             go + CAST_PEAK * V * h + _rowwise(rs.setup, h),
             held + CAST_PEAK * T * h,
             held + FP8 * T * h + CAST_PEAK * T * V,
             held + FP8 * T * h + go + e * V * h)
    return e * T * V + max(peaks)


def _converted_linears(m: ModelSpec, setup: TrainingSetup) -> list[LinearSpec]:
    return [lin for lin in m.dense_linears if _converted(m, lin, setup)]


def layer_forward_peak(m: ModelSpec, rs: Resolved, T: int) -> int:
    """Bytes of the worst converted decoder linear's casts in the forward (its input's fp8 copy and
    its weight's cast), counted above the whole forward's saved set (an upper bound: the last layer
    has not saved all of its tensors yet)."""
    return max((FP8 * T * lin.in_features + CAST_PEAK * lin.weight_count + _rowwise(rs.setup, lin.out_features)
                for lin in _converted_linears(m, rs.setup)), default=0)


def layer_backward_peak(m: ModelSpec, rs: Resolved, T: int) -> int:
    """Bytes of the worst converted decoder linear's backward casts (its grad_output's, then its
    weight's with the fp8 grad_output held), besides its grad_output in the compute dtype."""
    e = rs.compute.bytes
    return max((e * T * lin.out_features + max(CAST_PEAK * T * lin.out_features,
                                                FP8 * T * lin.out_features + CAST_PEAK * lin.weight_count)
                for lin in _converted_linears(m, rs.setup)), default=0)


def notes(rs: Resolved) -> list[str]:
    setup = rs.setup
    if not active(setup):
        return []
    which = ("every nn.Linear, the lm_head included (torchao's default)" if setup.fp8_linears is Fp8Linears.ALL
             else "every nn.Linear but layer 0's first and the lm_head (accelerate's default filter)")
    out = [f"fp8 {setup.fp8.value} (torchao float8): {which} converted; saved tensors unchanged, the casts' "
           "transients counted (9 bytes per element cast)"]
    if setup.precision is Precision.BF16_MIXED:
        out.append(f"fp8 under bf16 autocast: no 16-bit weight copies for converted linears; {MODELLED}")
    # planner/speed/throughput.py picks the peak by --precision; eager casts are unfused kernels
    # (torchtitan docs/float8.md: torch.compile is "required for competitive performance")
    out.append("fp8 time: planned at the bf16 matmul rate (the fp8 speed-up and the casts' kernels are not modelled)")
    return out
