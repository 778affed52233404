"""measure_cpu(): real tensors on the CPU agree with simulate() on fake ones."""
from __future__ import annotations

import pytest
import torch

from gpuplan.planner import Attention, Checkpointing, Method, Phase, PlannerError, Precision, TrainingSetup
from gpuplan.profiler.build import build
from gpuplan.profiler.cpu import measure_cpu
from gpuplan.profiler.simulate import simulate
from gpuplan.profiler.tracker import allocator_bytes

BASE = TrainingSetup(batch_size=2, seq_len=16)


@pytest.mark.parametrize("setup", [
    BASE.with_(attention=Attention.EAGER),
    BASE.with_(attention=Attention.EAGER, method=Method.LORA),
    BASE.with_(attention=Attention.EAGER, precision=Precision.BF16_TRUE, grad_accum=2,
               checkpointing=Checkpointing.NONE),
], ids=["full-bf16-mixed", "lora", "bf16-true-accum2-nockpt"])
def test_simulate_equals_cpu_to_the_byte(tiny, setup):
    """Same kernels on both sides (eager attention is matmul + softmax): every byte agrees."""
    fake, real = simulate(tiny, setup), measure_cpu(tiny, setup)
    assert real.device == "cpu" and fake.device == "simulate"
    assert real.phase_components == fake.phase_components
    assert real.peak_allocated_bytes == fake.peak_allocated_bytes


def test_simulate_and_cpu_differ_at_most_by_the_attention_kernels(tiny):
    """With SDPA, simulate() stands in for the CUDA flash kernel (profiler/kernels/attention.py) while the CPU
    runs its own, whose workspace is internal to C++ and unseen. The difference is bounded by the
    stand-in's backward transients of one layer: fp32 dq accumulator, fp32 softmax_d, and the
    per-query-head dk, dv of grouped-query attention."""
    setup = BASE.with_(checkpointing=Checkpointing.NONE)
    fake, real = simulate(tiny, setup), measure_cpu(tiny, setup)
    b, s, a, d, e = setup.batch_size, setup.seq_len, tiny.n_heads, tiny.head_dim, 2
    bound = (allocator_bytes(b * s * a * d * 4) + allocator_bytes(b * a * s * 4)
             + 2 * allocator_bytes(b * a * s * d * e))
    for phase in Phase:
        assert abs(fake.phases[phase] - real.phases[phase]) <= bound


def test_cpu_weights_are_initialized(tiny):
    built = build(tiny, BASE.with_(method=Method.LORA), torch.device("cpu"))   # build initializes real tensors
    for name, t in [*built.model.named_parameters(), *built.model.named_buffers()]:
        assert torch.isfinite(t).all(), name
    ids = torch.randint(0, tiny.vocab, (2, 16))
    loss = built.model(input_ids=ids, labels=ids).loss
    assert abs(loss.item() - torch.log(torch.tensor(float(tiny.vocab))).item()) < 0.5  # ~ uniform


def test_cpu_per_module_table(tiny):
    m = measure_cpu(tiny, BASE, per_module=True)
    assert m.per_module["param_bytes"] == m.components[next(iter(m.components))]   # weights first
    assert m.fits is None and m.peak_reserved_bytes is None and m.device_total_bytes is None


def test_qlora_on_cpu_runs_real_bitsandbytes_and_equals_the_stand_in(tiny):
    """The real bitsandbytes (CPU backend) quantizes the weights; 4-bit memory equals simulate's
    stand-in to the byte (eager attention: the same kernels on both paths)."""
    import bitsandbytes as bnb

    setup = BASE.with_(method=Method.QLORA, attention=Attention.EAGER)
    built = build(tiny, setup, torch.device("cpu"))
    quantized = [m for m in built.model.modules() if type(m) is bnb.nn.Linear4bit]
    assert quantized and all(m.weight.bnb_quantized for m in quantized)
    ids = torch.randint(0, tiny.vocab, (2, 16))
    with built.autocast():
        loss = built.model(input_ids=ids, labels=ids).loss
    assert torch.isfinite(loss)
    real, fake = measure_cpu(tiny, setup), simulate(tiny, setup)
    assert real.phase_components == fake.phase_components
    assert "stand-in" not in " ".join(real.notes)
