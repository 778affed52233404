"""The load and first-step rules of planner/memory/load.py against the libraries themselves: the
real bitsandbytes quantization code counted under FakeTensorMode (its fake kernels allocate what
the CUDA kernels allocate: bitsandbytes/backends/cuda/ops.py quantize_4bit, quantize_blockwise,
int8_vectorwise_quant), the simulated first step, and the library lines the rules rest on."""
from __future__ import annotations

import inspect

import bitsandbytes as bnb
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from gpuplan.planner import Component, Optimizer, QuantSpec, QuantType, TrainingSetup, estimate, resolve_model
from gpuplan.planner.memory.load import (DDP_BROADCAST_BUCKET, LOAD_WORKERS, TORCHAO_NF4_CHUNK, first_step_allocated,
                                         quantize_extra_bytes, torchao_nf4_extra_bytes)
from gpuplan.planner.techniques import quantization
from gpuplan.profiler.simulate import simulate
from gpuplan.profiler.tracker import ALLOCATOR_ROUNDING, StorageTracker

OUT, IN = 512, 1024        # one linear weight, a multiple of 64 x 256 elements
N = OUT * IN


def _peak(quantize, shape: tuple[int, int] = (OUT, IN)) -> int:
    """Peak tracked bytes while `quantize(value)` runs on a bf16 weight that stays referenced, as
    transformers' Bnb4bitQuantize / Bnb8bitQuantize keep the loaded value in their input dict."""
    bnb.functional.name2qmap["dynamic"] = bnb.functional.create_dynamic_map()   # built outside fake mode
    with FakeTensorMode(allow_non_fake_inputs=True):
        tracker = StorageTracker()
        with tracker:
            value = torch.empty(*shape, dtype=torch.bfloat16)
            tracker.track([value], Component.WEIGHTS)
            quantize(value)
    return tracker.peak.total


@pytest.mark.parametrize("double_quant", [True, False])
def test_4bit_quantize_on_load_moment(double_quant):
    def quantize(value):   # Params4bit._quantize: w = self.data.contiguous().to(device); quantize_4bit(w, ...)
        bnb.functional.quantize_4bit(value.contiguous().to("cpu"), blocksize=64, compress_statistics=double_quant,
                                     quant_type="nf4", quant_storage=torch.uint8)

    q = QuantSpec(quant_type=QuantType.NF4, double_quant=double_quant)
    predicted = quantization.quantized_bytes(N, OUT, q) + quantize_extra_bytes(N, 2, QuantType.NF4, double_quant)
    # not modelled: a few tensors of a few bytes each (the mean offset, the 4-bit code, absmax2), each
    # rounded to 512 bytes by the allocator: 2,432 bytes measured with double quantization, 1,536 without
    assert 0 <= _peak(quantize) - predicted <= 5 * ALLOCATOR_ROUNDING


def test_8bit_quantize_on_load_moment():
    def quantize(value):   # Int8Params._quantize: B = data.contiguous().to(device, float16); int8_vectorwise_quant(B)
        bnb.functional.int8_vectorwise_quant(value.contiguous().to(device="cpu", dtype=torch.float16))

    q = QuantSpec(quant_type=QuantType.INT8, double_quant=False)
    predicted = quantization.quantized_bytes(N, OUT, q) + quantize_extra_bytes(N, 2, QuantType.INT8, False)
    assert _peak(quantize) == predicted


@pytest.mark.parametrize("shape", [(512, 1024), (4096, 4096)])   # under one chunk, and 16 chunks
def test_torchao_to_nf4_moment(shape):
    from torchao.quantization.quantize_.workflows.nf4 import nf4_tensor

    assert nf4_tensor.CHUNK_SIZE == TORCHAO_NF4_CHUNK
    n = shape[0] * shape[1]
    peak = _peak(lambda value: nf4_tensor.to_nf4(value), shape)     # torchao is plain torch: it runs under the tracker
    predicted = 2 * n + torchao_nf4_extra_bytes(n, 2)
    assert 0 <= peak - predicted <= 6 * ALLOCATOR_ROUNDING     # 1,536 / 3,072 bytes of small tensors measured


def test_first_step_within_one_percent_of_the_simulated_first_step():
    model = resolve_model("pythia-160m")
    setup = TrainingSetup(batch_size=2, seq_len=256, optimizer=Optimizer.ADAMW)
    est = estimate(model, setup)
    sim = simulate(model, setup, steps=1).peak_allocated_bytes   # reset_peaks before step 1: step 1 alone
    assert abs(first_step_allocated(est, setup) - sim) / sim < 0.01   # -0.002% measured


def test_the_library_lines_the_rules_rest_on():
    import transformers.core_model_loading as cml
    from torch.nn.parallel import DistributedDataParallel

    assert cml.GLOBAL_WORKERS <= LOAD_WORKERS
    loader = inspect.getsource(cml.convert_and_load_state_dict_in_model)
    assert "has_on_the_fly_quantization" in loader and "thread_pool = None" in loader   # quantize: one at a time
    assert "250 * 1024 * 1024" in inspect.getsource(DistributedDataParallel.__init__)
    assert DDP_BROADCAST_BUCKET == 250 * 1024 * 1024
    from accelerate.utils import fsdp_utils

    prepare = inspect.getsource(fsdp_utils.fsdp2_prepare_model)
    assert "cpu_ram_efficient_loading and not model_has_params4bit" in prepare
    assert "original_sd = model.state_dict()" in prepare


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_from_pretrained_reads_one_tensor_at_a_time(tiny_hf, tmp_path, monkeypatch, dtype):
    """A real from_pretrained of a saved fp32 checkpoint on the CPU, synchronous as a quantizing load is
    (HF_DEACTIVATE_ASYNC_LOAD: the tracker sees the main thread only): the slice read is the parameter
    when the dtype matches, and one tensor's read is alive with its cast when it does not."""
    import transformers

    tiny_hf().save_pretrained(tmp_path)                        # fp32 safetensors
    monkeypatch.setenv("HF_DEACTIVATE_ASYNC_LOAD", "1")
    tracker = StorageTracker()
    with tracker:
        lm = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=dtype)
    largest = max(p.numel() for p in lm.parameters())
    tensors = len(list(lm.parameters())) + len(list(lm.buffers()))
    assert tracker.current <= sum(p.numel() * p.element_size() for p in lm.parameters()) + 2 * tensors * ALLOCATOR_ROUNDING
    if dtype == torch.float32:   # the read is the parameter: nothing beyond allocator rounding
        assert tracker.peak.total - tracker.current <= 4 * ALLOCATOR_ROUNDING
    else:                        # the fp32 read of the tensor being cast, at most the largest
        assert 0 < tracker.peak.total - tracker.current <= largest * 4 + ALLOCATOR_ROUNDING
