"""LoRA variants from the research articles that peft 0.21.2 does not implement (`--lora-variant`). Each is
modelled from its paper and says so, or refused in one line naming what is missing; none is simulated (there
is no library implementation for the simulator to run).

- DyLoRA [Valipour et al., EACL 2023, arXiv:2210.07558, Sec. 3]: each step samples a rank b <= r and trains the
  truncated A[:b], B[:, :b] (views of the full factors). The full r-rank factors are the parameters: their
  gradients and AdamW moments are full-size, and the step's activations are widest at b = r. The step's peak
  over the sampled ranks is LoRA's at rank r: modelled as that, exactly, with the time at rank r (an upper
  bound: the mean sampled rank is (r + 1) / 2 under the paper's uniform distribution).
- Delta-LoRA [Zi et al. 2023, arXiv:2309.02411, Algorithm 1]: the pre-trained W is updated, without its own
  gradient or optimizer state, by W <- W + lambda (A_{t+1} B_{t+1} - A_t B_t) after each optimizer step, and
  the LoRA dropout is removed (Sec. 4.2: dropout would make the update differ from the gradient it stands for).
  Memory: LoRA's, plus what the update holds: a copy of every A and B from before the optimizer step (A_t,
  B_t), and, one linear at a time, the two (in x out) products in the adapters' dtype and their difference
  cast to W's dtype. W must be stored in a dtype it can be updated in: a 4/8-bit base is refused. The update's
  GEMMs (2 x 2 r in out FLOPs per adapted linear and step) are left out of the time model.
- LongLoRA [Chen et al., ICLR 2024, arXiv:2309.12307]: refused. Its shifted sparse attention (S^2-Attn) is a
  monkey patch of the attention over flash-attn in dvlab-research/LongLoRA, not in transformers or peft; the
  copies its shift and regrouping make of q, k, v and the output are not modelled.
- RoSA [Nikdan et al., ICML 2024, arXiv:2401.04679]: refused. Its sparse adapters need IST-DASLab's peft fork
  (peft-rosa) and the spops CUDA kernels (sparse-dense matmuls, SDDMM gradients), neither in peft; their
  index and value buffers are not modelled.
(The refusals and combinations are checked with the setup: TrainingSetup._validate_lora_variant and
LORA_VARIANTS_REFUSED in planner/specs/setup.py.)
"""
from __future__ import annotations

from ..specs.enums import LoraVariant
from ..specs.model import ModelSpec
from ..specs.resolved import Resolved
from ..specs.setup import TrainingSetup
from . import lora

def variant(setup: TrainingSetup) -> LoraVariant:
    return setup.lora.variant if setup.peft else LoraVariant.NONE


def _adapted(model: ModelSpec, rs: Resolved):
    return model.adapted_linears(rs.adapters.targets, moe=None)


def step_temporaries(model: ModelSpec, rs: Resolved) -> int:
    """Delta-LoRA's update after the optimizer step, beyond LoRA's: A_t and B_t copies of every adapted linear
    (held across the step), and the largest linear's two (in x out) products in the adapters' dtype and their
    difference cast to W's dtype. 0 for the other variants."""
    if variant(rs.setup) is not LoraVariant.DELTA_LORA:
        return 0
    copies = lora.layer_params(model, rs) * rs.adapters.dtype.bytes
    largest = max((lin.in_features * lin.out_features for lin in _adapted(model, rs)), default=0)
    return int(copies + largest * (2 * rs.adapters.dtype.bytes + rs.frozen.bytes))


def notes(rs: Resolved) -> list[str]:
    v = variant(rs.setup)
    r = rs.setup.lora.r
    if v is LoraVariant.DYLORA:
        return [f"DyLoRA (Valipour et al. 2023) modelled from the paper, not simulated (not in peft): its step's peak "
                f"over the sampled ranks is LoRA's at the maximum rank r = {r} (full-size factors, gradients and "
                "moments; activations widest at b = r); time at rank r, an upper bound"]
    if v is LoraVariant.DELTA_LORA:
        return ["Delta-LoRA (Zi et al. 2023, Algorithm 1) modelled from the paper, not simulated (not in peft): LoRA "
                "without dropout, W updated in place by lambda (A'B' - AB) after each step (no gradient or state for "
                "W); the update's A/B copies and one linear's products in the step's temporaries; its GEMMs are not "
                "in the time model"]
    return []
