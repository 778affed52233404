"""A setup resolved once for a model: what is trained, what is quantized, in which dtypes, on which
engine. Every formula reads these fields; none tests `Method`.

`Method` is the user's word for two choices at once (train adapters; quantize the frozen base):
full = neither, lora = adapters, qlora = adapters on a quantized base.
"""
from __future__ import annotations

from dataclasses import dataclass

from .engines import Engine, engine_of
from .enums import Choice, DType, Method
from .model import ModelSpec
from .setup import QuantSpec, TrainingSetup


class AdapterKind(Choice):
    LORA = "lora"        # peft LoraConfig [Hu et al. 2021]


@dataclass(frozen=True)
class AdapterSpec:
    """Trainable adapters on frozen linears, resolved for one model."""

    kind: AdapterKind
    r: int
    alpha: float
    dropout: float
    targets: tuple[str, ...]   # linear names adapted in each layer (peft's defaults filled in)
    dtype: DType               # the adapters' (trainable) dtype


@dataclass(frozen=True)
class Resolved:
    """`setup` as it runs on `model` (attention fallbacks applied), with every choice resolved.

    Resolved objects are memoized without the sizes that do not change them (batch size,
    gradient accumulation): read those from the setup at hand, never from `setup` here."""

    model: ModelSpec
    setup: TrainingSetup
    adapters: AdapterSpec | None     # None: full fine-tuning, every weight trains
    quantized: QuantSpec | None      # the frozen base's quantization; None: stored in `frozen`
    engine: Engine
    compute: DType                   # matmul dtype
    autocast: bool                   # torch.autocast around the forward
    frozen: DType                    # stored dtype of weights that are neither quantized nor trained
    residual: DType                  # the residual stream's dtype: the embedding weights'
    trainable: DType                 # dtype of the trainable weights (adapters, or every weight)

    @property
    def full(self) -> bool:
        return self.adapters is None


def resolve(model: ModelSpec, setup: TrainingSetup) -> Resolved:
    """Resolved for `setup` on `model`; raises PlannerError for LoRA targets that match nothing."""
    setup = setup.for_model(model)
    adapters = None
    if setup.method is not Method.FULL:
        lora = setup.lora
        adapters = AdapterSpec(AdapterKind.LORA, lora.r, lora.alpha, lora.dropout, setup.lora_targets(model),
                               setup.adapter_dtype)
    quantized = setup.quant if setup.method is Method.QLORA else None
    base = setup.base_weight_dtype
    return Resolved(model, setup, adapters, quantized, engine_of(setup.parallel), setup.precision.compute_dtype,
                    setup.precision.autocast, setup.frozen_dtype, base,
                    adapters.dtype if adapters else setup.precision.weight_dtype)
