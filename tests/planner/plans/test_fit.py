"""fit(): the largest micro-batch and sequence really are the largest, and knobs really fit."""
import pytest

from gpuplan.planner.io.catalog import resolve_gpu, resolve_model
from gpuplan.planner.specs.enums import Method
from gpuplan.planner.memory.estimate import estimate
from gpuplan.planner.plans.fit import SEQ_STEP, fit
from gpuplan.planner.specs.setup import TrainingSetup

M = resolve_model("llama-3.1-8b")
G = resolve_gpu("rtx-4090")


def total(setup):
    return estimate(M, setup).device_total_bytes


def test_qlora_on_4090_largest_batch_and_sequence():
    s = TrainingSetup(method=Method.QLORA)
    r = fit(M, s, G)
    b = r.max_batch
    assert b >= 1
    assert total(s.with_(batch_size=b)) <= G.memory_bytes < total(s.with_(batch_size=b + 1))
    seq = r.max_seq_len_batch1
    assert total(s.with_(batch_size=1, seq_len=seq)) <= G.memory_bytes < total(s.with_(batch_size=1, seq_len=seq + SEQ_STEP))


@pytest.mark.parametrize("name", ["qwen-2.5-0.5b", "llama-3.2-1b", "qwen-2.5-7b"])
def test_memory_grows_with_batch_and_sequence(name):
    """The bisections rely on it."""
    m = resolve_model(name)
    for method in Method:
        s = TrainingSetup(method=method)
        bs = [estimate(m, s.with_(batch_size=b)).device_total_bytes for b in (1, 2, 3, 8, 33)]
        ss = [estimate(m, s.with_(seq_len=n)).device_total_bytes for n in (64, 128, 1000, 4096)]
        assert bs == sorted(bs) and ss == sorted(ss)


def test_full_on_4090_suggests_knobs_that_fit():
    s = TrainingSetup()
    r = fit(M, s, G)
    assert not r.fits and r.max_batch == 0
    assert r.knobs
    for k in r.knobs:
        changes = {}
        for flag, value in k.changes:
            changes[flag] = value
        assert k.device_total_bytes <= G.memory_bytes
    assert all(a.tokens_per_s >= b.tokens_per_s for a, b in zip(r.knobs, r.knobs[1:]))
    assert ("--method", "qlora") in r.knobs[0].changes


def test_fitting_setup_has_no_knobs():
    r = fit(resolve_model("qwen-2.5-0.5b"), TrainingSetup(method=Method.LORA, batch_size=1), resolve_gpu("h100"))
    assert r.fits and r.knobs == () and r.max_batch > 1


def test_to_dict():
    d = fit(M, TrainingSetup(method=Method.QLORA), G).to_dict()
    assert d["gpu"] == "rtx-4090" and d["max_batch_size"] >= 1 and "knobs" in d


def test_fit_reports_a_safety_margin_from_the_published_runs():
    """The largest micro-batch with headroom for the measured error of this kind of setup: never
    larger than the zero-headroom one, and the margin says where it comes from."""
    from gpuplan.planner.plans.fit import safety_margin

    m, gpu = resolve_model("llama-3.1-8b"), resolve_gpu("rtx-4090")
    r = fit(m, TrainingSetup(method=Method.QLORA, seq_len=2048), gpu)
    margin, source = safety_margin(Method.QLORA)
    assert r.margin == margin and 0 < margin < 0.5 and "published HF-stack qlora runs" in source
    assert 0 < r.safe_max_batch <= r.max_batch
    total = estimate(m, TrainingSetup(method=Method.QLORA, seq_len=2048, batch_size=r.safe_max_batch)).device_total_bytes
    assert total <= gpu.memory_bytes * (1 - margin)
    d = r.to_dict()
    assert d["safe_max_batch_size"] == r.safe_max_batch and d["safety_margin_source"] == source


def test_fit_holds_grpo_s_rollouts_and_colocated_vllm_to_the_gpu():
    from gpuplan.planner.memory.load import run_phase_totals
    from gpuplan.planner.memory.rollouts import generation_phase
    model = resolve_model("qwen-2.5-0.5b")
    grpo = TrainingSetup.from_dict({"method": "lora", "objective": "grpo", "loss": "trl", "seq_len": 1024,
                                    "completion_len": 768, "batch_size": 8})
    phases = run_phase_totals(model, grpo)
    assert phases["generate"] > generation_phase(model, grpo).peak_allocated_bytes   # + slack and context
    gpu = resolve_gpu("l4")
    alone = fit(model, grpo, gpu)
    assert alone.device_total_bytes == max(phases.values())
    shared = fit(model, grpo.with_(vllm_colocate=0.3), gpu)
    assert shared.device_total_bytes == alone.device_total_bytes + int(gpu.memory_bytes * 0.3)
    assert shared.max_batch <= alone.max_batch


def test_llama3_context_parallelism_is_searched_at_batch_1_only():
    # axolotl's llama3 ring attention asserts batch_size == 1: fit must not probe batch 2 (it raised)
    from gpuplan.planner.specs.enums import Attention, Loss
    from gpuplan.planner.specs.parallel import CpKind, Fsdp, ParallelSpec

    s = TrainingSetup(method=Method.FULL, batch_size=1, seq_len=65536, loss=Loss.CHUNKED, attention=Attention.FLASH,
                      parallel=ParallelSpec(gpus=8, fsdp=Fsdp.FULL, cp=4, cp_kind=CpKind.LLAMA3))
    assert s.max_micro_batch() == 1 and s.with_(parallel=ParallelSpec(gpus=8, fsdp=Fsdp.FULL)).max_micro_batch() is None
    r = fit(resolve_model("llama-3.1-8b"), s, resolve_gpu("h100"))
    assert r.fits and r.max_batch == 1 and r.safe_max_batch <= 1 and r.max_seq_len >= 65536
