"""The simulator's masked SDPA path (profiler/kernels/attention.py): registered where transformers
looks for mask functions, the memory-efficient kernel's saved tensors against torch's own meta
kernel, packed-sequence detection answered as a real run answers it, and a simulated step whose
padding mask costs what the planner says."""
from __future__ import annotations

import math

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, create_causal_mask

from gpuplan.planner import Method, TrainingSetup, estimate
from gpuplan.planner.specs.enums import Packing, Padding
from gpuplan.planner.specs.setup import Checkpointing
from gpuplan.profiler.kernels.attention import _additive_bias, _EfficientAttention, packed_sequences, register, \
    sdpa_standin
from gpuplan.profiler.simulate import simulate


def test_the_stand_ins_are_in_the_mask_registry():
    names = register()
    for name in names.values():
        assert name in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping
        assert "flash" not in name or name == "eager"   # transformers 5.24 imports a kernel for any "flash" name


def test_efficient_stand_in_saves_what_the_meta_kernel_returns():
    """The logsumexp is padded to 32 queries, fp32; the output keeps the query's shape and dtype."""
    b, a, s, d = 2, 4, 40, 16
    q, k, v = (torch.randn(b, a, s, d, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    bias = torch.zeros(b, 1, s, s, dtype=torch.bfloat16).expand(b, a, s, s)
    out = _EfficientAttention.apply(q, k, v, bias)
    saved = out.grad_fn.saved_tensors
    meta = [t.to("meta") for t in (q, k, v)]
    ref_out, ref_lse, *_ = torch.ops.aten._scaled_dot_product_efficient_attention(
        *meta, bias.to("meta"), True)
    lse = saved[-1]
    assert lse.shape == ref_lse.shape == (b, a, 32 * math.ceil(s / 32)) and lse.dtype == ref_lse.dtype == torch.float32
    assert out.shape == ref_out.shape and out.dtype == ref_out.dtype
    assert saved[3] is bias or saved[3].data_ptr() == bias.data_ptr()   # the bias itself, not a copy


def test_bias_is_additive_in_the_query_dtype_and_copied_only_when_unaligned():
    q = torch.randn(2, 4, 16, 8, dtype=torch.bfloat16)
    for s, copied in ((16, False), (12, True)):
        mask = torch.ones(2, 1, s, s, dtype=torch.bool)
        bias = _additive_bias(mask, q[:, :, :s], q[:, :, :s])
        assert bias.dtype == torch.bfloat16 and bias.shape == (2, 4, s, s)
        assert (bias.untyped_storage().nbytes() == 2 * 2 * s * 8 * math.ceil(s / 8)) if copied else \
            bias.untyped_storage().nbytes() == 2 * 2 * s * s


def test_masked_standin_expands_kv_to_every_head():
    class Gqa(torch.nn.Module):
        num_key_value_groups = 2
    b, a, s, d = 1, 4, 16, 8
    q = torch.randn(b, a, s, d, requires_grad=True)
    k, v = (torch.randn(b, a // 2, s, d, requires_grad=True) for _ in range(2))
    out, _ = sdpa_standin(Gqa(), q, k, v, torch.ones(b, 1, s, s, dtype=torch.bool))
    node, seen = out.grad_fn, []
    while node is not None and "EfficientAttention" not in type(node).__name__:   # contiguous <- transpose <- kernel
        seen.append(node)
        node = next((f for f, _ in node.next_functions if f is not None), None)
    saved = node.saved_tensors
    assert saved[1].shape == saved[2].shape == (b, a, s, d)


def test_packed_detection_answers_as_a_real_run(tiny):
    """Unpacked fake position_ids build no mask (a real run finds no restart); packed ones a (b, 1, s, s)."""
    from gpuplan.profiler.build import hf_config

    config = hf_config(tiny, TrainingSetup(), simulated=True)
    with FakeTensorMode():
        embeds = torch.empty(2, 16, 64)
        pos = torch.arange(16).unsqueeze(0)
        with packed_sequences(False):
            assert create_causal_mask(config, embeds, None, None, position_ids=pos) is None
        with packed_sequences(True):
            assert create_causal_mask(config, embeds, None, None, position_ids=pos).shape == (2, 1, 16, 16)


def test_a_simulated_padded_step_costs_what_the_planner_says(tiny):
    """Two layers, LoRA, no checkpointing: the padded step's extra bytes at the peak equal the estimate's.
    Packed rows also make RoPE's cos/sin (b, s, d) instead of (1, s, d), which the planner already counts
    for every batch: the packed estimate is then no further from the simulation than the unpadded one."""
    base = TrainingSetup(method=Method.LORA, batch_size=2, seq_len=64, checkpointing=Checkpointing.NONE)
    sim0, est0 = simulate(tiny, base).peak_allocated_bytes, estimate(tiny, base).peak_allocated_bytes
    padded = base.with_(padding=Padding.LONGEST)
    sim = simulate(tiny, padded).peak_allocated_bytes - sim0
    est = estimate(tiny, padded).peak_allocated_bytes - est0
    assert sim > 0 and abs(est - sim) <= 0.02 * sim, (est, sim)
    packed = base.with_(packing=Packing.ROWS)
    assert abs(estimate(tiny, packed).peak_allocated_bytes - simulate(tiny, packed).peak_allocated_bytes) <= \
        abs(est0 - sim0)
