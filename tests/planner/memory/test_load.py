"""planner/memory/load.py: the load phase (from_pretrained, quantize-on-load, FSDP2 init, DDP's
broadcast) and the first step, per GPU and in host RAM."""
from __future__ import annotations

import pytest

from gpuplan.planner import (Component, Method, Optimizer, Phase, Precision, QuantType, TrainingSetup, estimate,
                             resolve_model)
from gpuplan.planner.memory.load import (DDP_BROADCAST_BUCKET, LoadDevice, LoadPlan, checkpoint_dtype_bytes,
                                         first_step_allocated, load_estimate, quantize_extra_bytes, run_device_total,
                                         run_phase_totals)
from gpuplan.planner.memory.pieces import terms
from gpuplan.planner.specs.parallel import Fsdp, Offload, ParallelSpec
from gpuplan.planner.techniques import quantization


@pytest.fixture(scope="module")
def llama8b():
    return resolve_model("llama-3.1-8b")


def _setup(method: str = "full", **kw) -> TrainingSetup:
    return TrainingSetup(method=Method(method), batch_size=2, seq_len=512, **kw)


def test_quantize_extra_bytes_by_hand():
    n = 14336 * 4096                          # Llama-3.1-8B's MLP projection
    # 4-bit, double quant: the bf16 value, fp32 _absmax (n/16) and `_absmax - offset` (n/16)
    assert quantize_extra_bytes(n, 2, QuantType.NF4, True) == 2 * n + n // 16 + n // 16 == 124_780_544
    assert quantize_extra_bytes(n, 2, QuantType.NF4, False) == 2 * n              # absmax is the final one
    assert quantize_extra_bytes(n, 2, QuantType.INT8, False) == 2 * n + 2 * n      # the value and fp16 B


def test_checkpoint_dtype_from_config():
    assert checkpoint_dtype_bytes(resolve_model("llama-3.1-8b")) == 2             # "torch_dtype": "bfloat16"
    assert checkpoint_dtype_bytes(resolve_model("gpt-2-small")) == 4              # names none: fp32


def test_plain_load_holds_the_final_weights_only(llama8b):
    for method in ("full", "lora"):
        s = _setup(method)
        st = terms(llama8b, s)[1]
        assert load_estimate(llama8b, s).peak_allocated_bytes == st.weights   # the readers' tensors are the params


def test_qlora_load_quantizes_one_linear_at_a_time(llama8b):
    s = _setup("qlora")
    rs, st, _ = terms(llama8b, s)
    linears, rows = quantization.linear_inventory(llama8b)
    quantized = quantization.quantized_bytes(linears, rows, rs.quantized)
    n, embed = 14336 * 4096, llama8b.vocab * llama8b.hidden
    others = 8_030_261_248 - linears
    at_quantize = quantized + others * 2 + quantize_extra_bytes(n, 2, QuantType.NF4, True)
    at_upcast = quantized + others * 4 + embed * 2                 # the embedding in bf16 and fp32 at once
    ld = load_estimate(llama8b, s)
    assert s.for_model(llama8b).recipe.kbit_upcast
    assert ld.peak_allocated_bytes == int(max(at_quantize, at_upcast, st.weights))
    assert ld.moment == "prepare_model_for_kbit_training's fp32 upcast"
    # synchronous load: one checkpoint tensor (the embedding, bf16 on disk, loaded in bf16) in host RAM
    assert ld.host_bytes_per_rank == embed * 2


def test_host_ram_follows_the_device_map(llama8b):
    s = _setup("lora", precision=Precision.BF16_TRUE)
    on_cpu, on_gpu = load_estimate(llama8b, s), load_estimate(llama8b, s, LoadPlan(LoadDevice.GPU))
    assert on_cpu.host_bytes_per_rank == 8_030_261_248 * 2         # the whole model, read in place (bf16 on disk)
    # four reader threads: the embedding, the untied lm_head and two MLP projections in flight
    assert on_gpu.host_bytes_per_rank == (2 * llama8b.vocab * llama8b.hidden + 2 * 14336 * 4096) * 2
    assert on_cpu.peak_allocated_bytes == on_gpu.peak_allocated_bytes


def test_ddp_adds_one_broadcast_bucket_and_each_rank_its_host_copy(llama8b):
    single, ddp = _setup("lora"), _setup("lora", parallel=ParallelSpec(gpus=4))
    one, four = load_estimate(llama8b, single), load_estimate(llama8b, ddp)
    embed_bytes = llama8b.vocab * llama8b.hidden * terms(llama8b, single)[0].frozen.bytes
    assert four.peak_allocated_bytes == one.peak_allocated_bytes + max(DDP_BROADCAST_BUCKET, embed_bytes)
    assert four.host_bytes_per_node == 4 * four.host_bytes_per_rank


def test_fsdp_load_is_the_shards_plus_one_full_tensor_or_unit(llama8b):
    p = ParallelSpec(gpus=8, fsdp=Fsdp.FULL)
    s = _setup("full", precision=Precision.BF16_MIXED, parallel=p)
    st = terms(llama8b, s)[1]
    embed_fp32 = llama8b.vocab * llama8b.hidden * 4                # trainables upcast to fp32 by accelerate
    efficient = load_estimate(llama8b, s, LoadPlan(cpu_ram_efficient=True))
    assert efficient.peak_allocated_bytes == int(st.weights / 8 + embed_fp32)
    plain = load_estimate(llama8b, s)
    assert plain.peak_allocated_bytes >= efficient.peak_allocated_bytes   # a whole unit, not one tensor
    # transformers 5 reads the checkpoint on every rank: the host figure is per rank times the node's ranks
    assert plain.host_bytes_per_node == efficient.host_bytes_per_node == 8 * plain.host_bytes_per_rank
    offloaded = load_estimate(llama8b, s.with_(parallel=ParallelSpec(gpus=8, fsdp=Fsdp.FULL, offload=Offload.PARAMS)),
                              LoadPlan(cpu_ram_efficient=True))
    assert offloaded.peak_allocated_bytes == embed_fp32              # shards go to the host as they are made


def test_qlora_under_fsdp_loads_the_whole_model_on_every_gpu():
    model = resolve_model("llama-3.1-70b")
    s = _setup("qlora", parallel=ParallelSpec(gpus=8, fsdp=Fsdp.FULL))
    totals = run_phase_totals(model, s)
    assert totals["load"] > 2 * totals["step"]                       # the sharded step is far smaller
    assert run_device_total(model, s) == totals["load"]
    single = load_estimate(model, _setup("qlora"))
    assert load_estimate(model, s).peak_allocated_bytes == single.peak_allocated_bytes


def test_engines_not_modelled_have_no_load_phase(llama8b):
    for p in (ParallelSpec(gpus=4, zero=2), ParallelSpec(gpus=8, zero=3), ParallelSpec(gpus=2, tp=2)):
        s = _setup("lora", parallel=p)
        assert load_estimate(llama8b, s) is None
        assert set(run_phase_totals(llama8b, s)) == {"first_step", "step"}


@pytest.mark.parametrize("kw", [
    dict(method=Method.FULL), dict(method=Method.LORA), dict(method=Method.QLORA), dict(grad_accum=4),
    dict(optimizer=Optimizer.ADAMW_8BIT), dict(parallel=ParallelSpec(gpus=8, fsdp=Fsdp.FULL)),
])
def test_first_step_never_exceeds_the_steady_step(llama8b, kw):
    s = TrainingSetup(batch_size=2, seq_len=512, **kw)
    est = estimate(llama8b, s)
    first = first_step_allocated(est, s)
    assert est.phases[Phase.OPTIMIZER] <= first <= est.peak_allocated_bytes   # step 1's optimizer moment is step 2's


def test_the_first_step_lacks_what_the_optimizer_keeps(llama8b):
    s = TrainingSetup(batch_size=2, seq_len=512, parallel=ParallelSpec(gpus=8, fsdp=Fsdp.FULL))
    est = estimate(llama8b, s)
    state = est.phase_components[Phase.BACKWARD][Component.OPTIMIZER_STATE]
    assert est.peak_phase is Phase.BACKWARD and state > 0
    assert first_step_allocated(est, s) == max(est.peak_allocated_bytes - state, est.phases[Phase.OPTIMIZER])
    in_backward = s.with_(optimizer_in_backward=True, parallel=ParallelSpec())   # state made inside backward
    est = estimate(llama8b, in_backward)
    assert first_step_allocated(est, in_backward) == est.peak_allocated_bytes


def test_deepspeed_allocates_its_state_at_init(llama8b):
    s = TrainingSetup(batch_size=2, seq_len=512, parallel=ParallelSpec(gpus=4, zero=2))
    est = estimate(llama8b, s)
    assert first_step_allocated(est, s) == est.peak_allocated_bytes


def test_recommend_and_fit_hold_the_run_peak():
    from gpuplan.planner.io.catalog import resolve_gpu
    from gpuplan.planner.plans.fit import fit
    from gpuplan.planner.plans.recommend import _Totals

    model = resolve_model("llama-3.1-70b")
    s = _setup("qlora", parallel=ParallelSpec(gpus=8, fsdp=Fsdp.FULL)).with_(batch_size=1, seq_len=1024)
    assert _Totals(model)(s) == run_device_total(model, s) > estimate(model, s).device_total_bytes
    r = fit(model, s, resolve_gpu("rtx-4090"), memory_only=True)
    assert r.device_total_bytes == run_device_total(model, s) and not r.fits
