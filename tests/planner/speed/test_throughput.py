"""Step time: each term's formula, the fitted constants carry their runs, properties the model must keep."""
import json

import pytest

from gpuplan.planner.io.catalog import resolve_gpu, resolve_model
from gpuplan.planner.specs.enums import DType, Method, Optimizer
from gpuplan.planner.specs.parallel import Fsdp, ParallelSpec
from gpuplan.planner.specs.setup import Checkpointing, LoraSpec, TrainingSetup
from gpuplan.planner.speed import dequant, links
from gpuplan.planner.speed.kernels import step_traffic
from gpuplan.planner.speed.throughput import (DEQUANT_BYTES_PER_WEIGHT, TimeConstants, mfu_defaults, mfu_for,
                                              step_time, time_columns)


def test_every_fitted_constant_names_its_runs_and_fixed_ones_a_source():
    d = mfu_defaults()
    f = d["fitted"]
    for fam, v in f["gemm_efficiency"]["families"].items():
        # a fraction of the card's measured matmul ceiling (planner/speed/ceiling.py): at most all of it
        assert 0.2 < v["value"] <= 1.0 and len(v["runs"]) >= 5 and v["source"], fam
    assert f["gemm_efficiency"]["cross_family"]["runs"]
    for key in ("memory_efficiency", "dequant_efficiency", "per_layer_pass_s", "per_adapter_call_s", "per_step_s",
                "per_expert_call_s"):
        assert f[key]["runs"] and f[key]["source"], key
    n_runs = len(f["gemm_efficiency"]["cross_family"]["runs"])
    n_constants = len(f["gemm_efficiency"]["families"]) + 1 + 7
    assert n_constants * 5 <= n_runs            # at most one constant per ~five runs of evidence
    for v in d["fixed"].values():
        assert v["source"]


def test_gemm_time_is_flops_over_peak_times_efficiency():
    m, g = resolve_model("llama-3.1-8b"), resolve_gpu("h100")
    s = TrainingSetup(batch_size=4, seq_len=4096, checkpointing=Checkpointing.NONE)
    st = step_time(m, s, g, mfu=0.4)
    c = TimeConstants.load()
    fl = st.flops
    assert st.compute == pytest.approx(4 * 4096 * (fl.linear + fl.attention / c.attention_ratio) / (989.4e12 * 0.4))


def test_memory_bound_and_dequant_terms_are_bytes_over_bandwidth():
    m, g = resolve_model("llama-3.1-8b"), resolve_gpu("a100-sxm-80gb")
    s = TrainingSetup(method=Method.QLORA, batch_size=2, seq_len=2048, grad_accum=3)
    c = TimeConstants.load()
    st = step_time(m, s, g)
    tr = step_traffic(m, s)
    bw = g.memory_bandwidth
    assert st.memory_bound == pytest.approx(3 * (2 * 2048 * tr.bytes_per_token + tr.weight_bytes) / bw / c.memory_efficiency)
    per_weight = dequant.bytes_per_weight(s.quant, 2)     # double quant by default: ~2.766 B
    assert st.dequant == pytest.approx(3 * st.flops.quantized_weights * 3 * per_weight / bw / c.dequant_efficiency)
    assert c.dequant_efficiency == c.memory_efficiency


def test_overhead_counts_launches():
    m, g = resolve_model("llama-3.1-8b"), resolve_gpu("a100-sxm-80gb")
    s = TrainingSetup(method=Method.LORA, batch_size=1, seq_len=512, grad_accum=2)   # q, v adapted
    c = TimeConstants.load()
    st = step_time(m, s, g)
    layer_passes = 2 * 32 * 3            # micro-batches x layers x (forward, backward, recompute)
    adapters = 2 * 32 * 2 * 3
    assert st.overhead == pytest.approx(layer_passes * c.per_layer_pass_s + adapters * c.per_adapter_call_s + c.per_step_s)


def test_every_catalog_gpu_has_a_gemm_efficiency():
    from gpuplan.planner.io.catalog import all_gpus

    for g in all_gpus():
        assert 0.2 < mfu_for(g).value <= 1.0, g.name


def test_faster_gpu_is_faster():
    m = resolve_model("qwen-2.5-7b")
    s = TrainingSetup(method=Method.LORA, batch_size=4)
    times = [step_time(m, s, resolve_gpu(n)).total for n in ("b200", "h100", "a100-sxm-80gb", "rtx-4090", "t4")]
    assert times == sorted(times)


def test_checkpointing_costs_time():
    m, g = resolve_model("llama-3.1-8b"), resolve_gpu("a100-sxm-80gb")
    base = TrainingSetup(method=Method.LORA, batch_size=4, checkpointing=Checkpointing.NONE)
    assert step_time(m, base.with_(checkpointing=Checkpointing.FULL), g).total > step_time(m, base, g).total


@pytest.mark.parametrize("gpu", ["a100-sxm-80gb", "rtx-4090", "h100", "l4"])
@pytest.mark.parametrize("seq", [256, 2048])
def test_qlora_never_faster_than_lora(gpu, seq):
    m, g = resolve_model("llama-3.2-1b"), resolve_gpu(gpu)
    for b in (1, 4, 16):
        for dt in (DType.FP32, DType.BF16):     # the same setup: the same adapter dtype
            lora = TrainingSetup(method=Method.LORA, batch_size=b, seq_len=seq, lora=LoraSpec(adapter_dtype=dt))
            assert step_time(m, lora.with_(method=Method.QLORA), g).tokens_per_s <= step_time(m, lora, g).tokens_per_s


@pytest.mark.parametrize("method", [Method.FULL, Method.LORA, Method.QLORA])
@pytest.mark.parametrize("gpu", ["a100-sxm-80gb", "rtx-4090"])
def test_more_tokens_per_micro_batch_never_lowers_tokens_per_s(method, gpu):
    m, g = resolve_model("llama-3.2-1b"), resolve_gpu(gpu)
    tps = [step_time(m, TrainingSetup(method=method, batch_size=b, seq_len=1024), g).tokens_per_s
           for b in (1, 2, 4, 8, 16, 32)]
    assert tps == sorted(tps)
    fsdp = [step_time(m, TrainingSetup(method=method, batch_size=b, seq_len=1024,
                                       parallel=ParallelSpec(gpus=2, fsdp=Fsdp.FULL)), g).tokens_per_s
            for b in (1, 2, 4, 8, 16)]
    assert fsdp == sorted(fsdp)


def test_eight_bit_optimizer_step_is_shorter():
    m, g = resolve_model("llama-3.2-1b"), resolve_gpu("l4")
    s = TrainingSetup(batch_size=1)
    assert step_time(m, s.with_(optimizer=Optimizer.ADAMW_8BIT), g).optimizer < step_time(m, s, g).optimizer


def test_communication_uses_the_links_and_hides_behind_compute():
    m = resolve_model("llama-3.1-8b")
    s = TrainingSetup(batch_size=1, seq_len=512, parallel=ParallelSpec(gpus=8, fsdp=Fsdp.FULL))
    nv, pc = resolve_gpu("h100-sxm-80gb"), resolve_gpu("h100-pcie-80gb")
    cn, cp = time_columns(m, s, nv), time_columns(m, s, pc)
    assert cp.network / cn.network == pytest.approx((450e9 * 0.8) / (64e9 * 0.8))
    st = step_time(m, s, pc)
    busy = st.total - st.communication - st.offload
    assert st.communication == pytest.approx(max(0.0, cp.network - cp.overlap * busy))
    assert step_time(m, s, nv).tokens_per_step == 8 * 512


def test_geforce_cards_go_through_the_host():
    assert links.gpu_peer_link(resolve_gpu("rtx-4090")).kind is links.LinkKind.PCIE_VIA_HOST
    assert links.gpu_peer_link(resolve_gpu("l40s")).kind is links.LinkKind.PCIE
    assert links.gpu_peer_link(resolve_gpu("h100")).kind is links.LinkKind.NVLINK
    assert links.pcie(4, 16).datasheet == pytest.approx(31.5e9, rel=1e-3)
    assert links.pcie(3, 8).datasheet == pytest.approx(links.pcie(4, 16).datasheet / 4, rel=1e-3)
    with pytest.raises(ValueError):
        links.pcie(2)


def test_every_figure_carries_a_range_around_it():
    m, g = resolve_model("llama-3.1-8b"), resolve_gpu("a100-sxm-80gb")
    st = step_time(m, TrainingSetup(method=Method.LORA, batch_size=4, seq_len=4096), g)
    lo, hi = st.tokens_per_s_range
    assert lo <= st.tokens_per_s <= hi and lo < hi
    unfitted = step_time(m, TrainingSetup(method=Method.LORA, batch_size=4, seq_len=4096), resolve_gpu("b200"))
    assert (unfitted.band[1] - unfitted.band[0]) > (st.band[1] - st.band[0])     # no fitted family: wider


def test_calibration_from_a_recorded_step_time(tmp_path, monkeypatch):
    from gpuplan.planner.io import catalog
    from gpuplan.planner.speed import throughput

    rec = {"gpu": "h100", "setup": {"model": "llama-3.2-1b", "method": "full", "batch_size": 4, "seq_len": 2048,
                                    "checkpointing": "none"}, "timing": {"step_time_s": 0.5}}
    (tmp_path / "measurements").mkdir()
    (tmp_path / "measurements" / "h100-run.json").write_text(json.dumps(rec))
    monkeypatch.setattr(catalog, "measurements_dir", lambda: tmp_path / "measurements")
    throughput.calibrated_mfu.cache_clear()
    try:
        a = mfu_for(resolve_gpu("h100"))
        m = resolve_model("llama-3.2-1b")
        st = step_time(m, TrainingSetup(batch_size=4, seq_len=2048, checkpointing=Checkpointing.NONE), resolve_gpu("h100"))
        assert "calibrated" in a.source
        # executed FLOPs over (step time x the H100's measured matmul ceiling, 794.5 TFLOP/s: data/matmul.json)
        assert a.value == pytest.approx(4 * 2048 * st.flops.hardware / (0.5 * 794.5e12), rel=1e-3)
    finally:
        throughput.calibrated_mfu.cache_clear()


def test_exposed_communication_never_below_the_share_that_cannot_overlap():
    from dataclasses import replace

    from gpuplan.planner.speed.throughput import exposed_comm

    m = resolve_model("llama-3.1-8b")
    cols = time_columns(m, TrainingSetup(batch_size=1, seq_len=512, parallel=ParallelSpec(gpus=8, fsdp=Fsdp.FULL)),
                        resolve_gpu("h100-pcie-80gb"))
    c = replace(TimeConstants.load(), overlap_efficiency=0.6)
    assert exposed_comm(cols, c, busy=1e9) == pytest.approx(0.4 * cols.network)          # long busy time: the floor
    assert exposed_comm(cols, c, busy=0.0) == pytest.approx(cols.network)                # nothing to hide behind
    mid = 0.5 * cols.network
    assert exposed_comm(cols, c, busy=mid) == pytest.approx(max(cols.network - cols.overlap * mid, 0.4 * cols.network))


def test_eager_attention_moves_its_scores_through_memory():
    """Eager writes and reads the (a, s, s) scores (~ a s (8e + 8) bytes per token and layer forward, 2x backward,
    again in recompute) and computes every pair of the causal square; SDPA keeps them on chip."""
    from gpuplan.planner.specs.enums import Attention

    m = resolve_model("llama-3.2-1b")
    s = 2048
    sdpa = step_traffic(m, TrainingSetup(seq_len=s))
    eager = step_traffic(m, TrainingSetup(seq_len=s, attention=Attention.EAGER))
    assert eager.bytes_per_token - sdpa.bytes_per_token == pytest.approx(m.n_layers * m.n_heads * s * (8 * 2 + 8) * 4)
    g = resolve_gpu("a100-80gb")
    assert step_time(m, TrainingSetup(seq_len=s, attention=Attention.EAGER), g).total > step_time(m, TrainingSetup(seq_len=s), g).total


def test_narrow_layers_and_small_micro_batches_reach_less_of_the_peak():
    """GEMM shape: operand and weight bytes per FLOP grow as the hidden size or the tokens per micro-batch shrink."""
    g = resolve_gpu("a100-80gb")
    wide = step_time(resolve_model("llama-3.1-8b"), TrainingSetup(batch_size=4, seq_len=1024), g)
    narrow = step_time(resolve_model("smollm-2-135m"), TrainingSetup(batch_size=4, seq_len=1024), g)
    assert narrow.achieved_mfu < wide.achieved_mfu
    small = step_time(resolve_model("llama-3.1-8b"), TrainingSetup(batch_size=1, seq_len=256), g)
    assert small.achieved_mfu < wide.achieved_mfu


def test_offload_is_host_copies_plus_the_cpu_optimizer():
    from gpuplan.planner.memory.comm import Link, communication_bytes
    from gpuplan.planner.specs.parallel import Offload
    from gpuplan.planner.techniques.optimizers import streamed_bytes_per_param

    m, g = resolve_model("llama-3.2-1b"), resolve_gpu("a100-80gb")
    s = TrainingSetup(batch_size=2, parallel=ParallelSpec(gpus=4, zero=2, offload=Offload.OPTIMIZER))
    cols = time_columns(m, s, g)
    host = communication_bytes(m, s).bytes_by(link=Link.HOST)
    params = 1_235_814_400                                   # Llama-3.2-1B, every weight trains; ZeRO-2 shards the state 4 ways
    opt = params / 4 * streamed_bytes_per_param(s.optimizer, s.precision.weight_dtype.bytes)
    assert cols.offload == pytest.approx(opt / links.host_memory().effective + host / links.gpu_host_link(g).effective,
                                         rel=1e-3)
    assert cols.optimizer == 0.0


def test_fsdp_offload_copies_join_the_collectives_not_the_serial_offload():
    """FSDP copies its CPU shards on side streams ahead of each all-gather (torch _runtime_utils._unshard's
    pre-unshard stream, _offload_grad non_blocking): the host seconds overlap compute as the collectives do."""
    from gpuplan.planner.memory.comm import Link, communication_bytes
    from gpuplan.planner.specs.parallel import Offload
    from gpuplan.planner.techniques.optimizers import streamed_bytes_per_param

    m, g = resolve_model("llama-3.2-1b"), resolve_gpu("rtx-4090")
    on = TrainingSetup(method=Method.LORA, batch_size=2, parallel=ParallelSpec(gpus=2, fsdp=Fsdp.FULL, offload=Offload.PARAMS))
    off = on.with_(parallel=ParallelSpec(gpus=2, fsdp=Fsdp.FULL))
    c_on, c_off = time_columns(m, on, g), time_columns(m, off, g)
    host = communication_bytes(m, on).bytes_by(link=Link.HOST)
    assert host > 0
    assert c_on.network == pytest.approx(c_off.network + host / links.gpu_host_link(g).effective, rel=1e-6)
    # what stays serial is the CPU optimizer's pass over the (LoRA) state it steps
    trainable = c_on.offload * links.host_memory().effective / streamed_bytes_per_param(on.optimizer, on.adapter_dtype.bytes)
    assert 0 < trainable * 2 < 50e6                           # Llama-3.2-1B's LoRA parameters, halved by the shard
    # DeepSpeed's offload keeps its host copies in series (not read here as side-stream copies)
    z = TrainingSetup(batch_size=2, parallel=ParallelSpec(gpus=4, zero=3, offload=Offload.PARAMS))
    zc = time_columns(m, z, g)
    zhost = communication_bytes(m, z).bytes_by(link=Link.HOST)
    assert zc.offload > zhost / links.gpu_host_link(g).effective


def test_fsdp_parameter_offload_fetches_the_updated_shard_no_copy_back():
    from gpuplan.planner.memory.comm import communication_bytes
    from gpuplan.planner.specs.parallel import Offload

    m = resolve_model("llama-3.2-1b")
    fsdp = TrainingSetup(batch_size=2, parallel=ParallelSpec(gpus=2, fsdp=Fsdp.FULL, offload=Offload.PARAMS))
    zero3 = TrainingSetup(batch_size=2, parallel=ParallelSpec(gpus=2, zero=3, offload=Offload.PARAMS))
    what = lambda s: [t.what for t in communication_bytes(m, s).terms]   # noqa: E731
    assert "updated parameter shard back to the GPU" not in what(fsdp)
    assert "parameter shards fetched from the host before each all-gather" in what(fsdp)
    assert "updated parameter shard back to the GPU" in what(zero3)
