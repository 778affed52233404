"""Each technique module owns its terms: checked against an independent derivation."""
from __future__ import annotations

from gpuplan.planner import Method, Optimizer, TrainingSetup, resolve_model
from gpuplan.planner.specs.enums import DType, QuantType
from gpuplan.planner.specs.resolved import AdapterKind, resolve
from gpuplan.planner.specs.setup import LoraSpec, QuantSpec
from gpuplan.planner.techniques import ADAPTERS, lora, optimizers, quantization

LLAMA_8B = resolve_model("llama-3.1-8b")


def test_resolve_splits_method_into_adapters_and_quantized_base():
    full = resolve(LLAMA_8B, TrainingSetup())
    lo = resolve(LLAMA_8B, TrainingSetup(method=Method.LORA))
    q = resolve(LLAMA_8B, TrainingSetup(method=Method.QLORA))
    assert full.adapters is None and full.quantized is None and full.full
    assert lo.adapters.kind is AdapterKind.LORA and lo.quantized is None
    assert q.adapters.targets == ("q_proj", "v_proj") and q.quantized == QuantSpec()
    assert lo.adapters.dtype is DType.FP32 and q.adapters.dtype is DType.BF16   # peft / TRL defaults
    assert ADAPTERS[AdapterKind.LORA] is lora


def test_lora_parameters_of_llama_3_1_8b_r8_q_v():
    """peft reports 3,407,872 trainable parameters for r=8 on q_proj, v_proj of Llama-3-8B:
    32 layers x 8 x ((4096 + 4096) + (4096 + 1024))."""
    rs = resolve(LLAMA_8B, TrainingSetup(method=Method.LORA, lora=LoraSpec(r=8)))
    assert lora.trainable_params(LLAMA_8B, rs) == 32 * 8 * ((4096 + 4096) + (4096 + 1024)) == 3_407_872


def test_nf4_bytes_with_and_without_double_quantization():
    n = 4096 * 4096
    assert quantization.quantized_bytes(n, 4096, QuantSpec(QuantType.NF4, double_quant=False)) == n / 2 + n / 64 * 4
    assert quantization.quantized_bytes(n, 4096, QuantSpec(QuantType.NF4, double_quant=True)) == \
        n / 2 + n / 64 * (1 + 4 / 256)
    assert quantization.quantized_bytes(n, 4096, QuantSpec(QuantType.INT8)) == n + 4 * 4096


def test_adamw_state_and_foreach_temporary():
    state, paged, temp = optimizers.state_bytes(Optimizer.ADAMW, 1000, DType.FP32, 10, (1, 1))
    assert (state, paged, temp) == (8000, 0, 4000)
    assert optimizers.state_bytes(Optimizer.ADAMW_FUSED, 1000, DType.FP32, 10, (1, 1)) == (8000, 0, 0)
    assert optimizers.state_bytes(Optimizer.PAGED_ADAMW, 1000, DType.BF16, 10, (1, 1)) == (0, 8000, 0)
