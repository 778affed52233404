"""LoRA-FA [Zhang et al. 2023, arXiv:2308.03303]: LoRA with every A frozen, as peft implements it: an optimizer
(`peft.optimizers.create_lorafa_optimizer`, peft 0.21.2 optimizers/lorafa.py), selected with `--optimizer lorafa`.

What changes against LoRA with AdamW:
- `create_lorafa_optimizer` calls `requires_grad_(False)` on every parameter named `lora_A` (l.289-291): A keeps
  its weights, but has no gradient and no optimizer state; peft then reports only B (and any modules_to_save)
  as trainable.
- LoraFAOptimizer.step keeps AdamW-hf's two moments for each B (`exp_avg_B`, `exp_avg_sq_B`, `zeros_like(B)`) and
  for every other trainable parameter (l.133-147); B's gradient is projected first,
  `grad_B = (1 / s^2) * (grad_B @ pinv(A A^T + 1e-8 I))` under bf16 autocast, then cast back to B's dtype
  (l.150-176): r x r temporaries and one B-sized bf16 product and its fp32 cast; `denom_B = exp_avg_sq_B.sqrt()`
  is B-sized. Python keeps the previous pair's `grad_B` and `denom_B` referenced until they are reassigned.
- The forward saves less: lora_A(x) with A frozen saves no input for a weight gradient (autograd saves `x` for
  `mm` only when the weight needs its gradient), so the adapted linear's input, its dropout output or its
  cast copy is no longer kept; lora_B still saves its r-wide input, and dropout its mask.
- FLOPs: A's weight gradient (2 r x in per token and adapted linear) is not computed.

Refused: LoRA-FA on a full fine-tune (no lora_A), with DoRA (peft's optimizer pairs parameters with "lora" in
their names two by two; DoRA's magnitude vector breaks the pairing), and with LoRA on embed_tokens (peft names
its factors lora_embedding_A, which the optimizer does not freeze: not modelled).
"""
from __future__ import annotations

from ..specs.enums import Optimizer
from ..specs.errors import PlannerError
from ..specs.model import ModelSpec
from ..specs.resolved import Resolved
from ..specs.setup import TrainingSetup

FP32 = 4


def active(setup: TrainingSetup) -> bool:
    return setup.optimizer is Optimizer.LORAFA


def check(setup: TrainingSetup) -> None:
    """Raises PlannerError for a setup peft's LoRA-FA optimizer cannot train as modelled."""
    if not active(setup):
        return
    if not setup.peft or setup.adapter is not None:
        raise PlannerError("--optimizer lorafa is peft's LoRA-FA (it freezes every lora_A): use it with --method lora "
                           "or qlora, not with full fine-tuning or another peft method")
    if setup.lora.use_dora:
        raise PlannerError("--optimizer lorafa with --use-dora: peft's LoRA-FA optimizer pairs the parameters named "
                           "'lora' two by two (A, B), which DoRA's magnitude vector breaks; drop one of them")
    outer = [t for t in ("embed_tokens", "lm_head") if t in setup.lora.targets]
    if outer:
        raise PlannerError(f"--optimizer lorafa with LoRA on {', '.join(outer)}: not modelled (peft names the embedding's "
                           "factors lora_embedding_A/B, which LoRA-FA does not freeze, and the lm_head's adapter is not "
                           "planned under it): drop them from --lora-targets")
    if setup.optimizer_in_backward:
        raise PlannerError("--optimizer lorafa with --optimizer-in-backward: LoRA-FA's step needs A beside B's "
                           "gradient, a pair no per-parameter hook sees; drop one of them")


def frozen_a_params(model: ModelSpec, rs: Resolved) -> int:
    """lora_A weights the optimizer freezes: r x in for every adapted linear of the decoder layers."""
    if not active(rs.setup):
        return 0
    check(rs.setup)   # every estimate path counts the states and the FLOPs: refused before either
    a = rs.adapters
    per = {moe: sum(a.r * lin.in_features for lin in model.adapted_linears(a.targets, moe)) for moe in (False, True)}
    return model.dense_layers * per[False] + model.moe_layers * per[True]


def largest_b(model: ModelSpec, rs: Resolved) -> int:
    """Elements of the largest lora_B (out x r)."""
    a = rs.adapters
    outs = [lin.out_features for lin in model.adapted_linears(a.targets, moe=None)]
    return a.r * max(outs, default=0)


def step_temporaries(model: ModelSpec, rs: Resolved) -> int:
    """The optimizer step's largest moment beyond the states: the previous pair's fp32 grad_B and denom_B still
    referenced, the new pair's bf16 copy of its gradient, the bf16 product and its scaled copy, and the fp32
    cast; r x r matrices are left out (they are r^2 elements)."""
    n = largest_b(model, rs)
    return int(n * (2 * FP32 + 2 + 2 + FP32))


def note() -> str:
    return ("lorafa: peft 0.21.2's LoRA-FA optimizer (create_lorafa_optimizer): every lora_A frozen (no gradient, no "
            "state, no saved input), AdamW-hf moments for B, B's gradient projected through pinv(A A^T); simulated")
