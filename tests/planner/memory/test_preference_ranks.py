"""DPO / KTO / ORPO / GRPO on several GPUs (planner/memory/preference_ranks.py, rollouts.py): the reference
as TRL 1.14.0 prepares it per engine, ds3_gather_for_generation, vLLM server mode, and their flags and keys."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from gpuplan.app.cli import cli
from gpuplan.planner import (Component as C, Fsdp, Loss, Method, Objective, ParallelSpec, Phase, PlannerError,
                             TrainingSetup, estimate, resolve_model)
from gpuplan.planner.fromconfig import read_config
from gpuplan.planner.memory.pieces import terms
from gpuplan.planner.memory.preference_ranks import reference_on_rank
from gpuplan.planner.memory.rollouts import generation_phase
from gpuplan.planner.memory.step import parallel_step
from gpuplan.planner.specs.engines import engine_of

LLAMA = resolve_model("llama-3.1-8b")
N = 8_030_261_248
DPO = TrainingSetup(objective=Objective.DPO, loss=Loss.TRL, batch_size=2, seq_len=1024)
GRPO = TrainingSetup(objective=Objective.GRPO, loss=Loss.TRL, batch_size=8, seq_len=1536, completion_len=1024)


def _on(setup: TrainingSetup, **parallel) -> TrainingSetup:
    return setup.with_(parallel=ParallelSpec(gpus=8, **parallel))


@pytest.mark.parametrize("parallel, expected", [
    (dict(fsdp=Fsdp.FULL), (4 * N // 8, 2 * 2 * N)),   # one FSDP2 unit: its fp32 shard, gathered whole in bf16 twice
    (dict(zero=3), (2 * N // 8, 0)),                    # ZeRO-3: the 16-bit partition
    (dict(zero=2), (2 * N, 0)),                         # prepare_deepspeed's stage 0: the whole 16-bit module
])
def test_the_reference_is_prepared_as_trl_prepares_it(parallel, expected):
    s = _on(DPO, **parallel)
    assert reference_on_rank(LLAMA, s, engine_of(s.parallel)) == expected
    assert reference_on_rank(LLAMA, s.with_(method=Method.LORA), engine_of(s.parallel)) == (0, 0)   # adapters off
    assert reference_on_rank(LLAMA, s.with_(precompute_ref_log_probs=True), engine_of(s.parallel)) == (0, 0)


def test_dpo_under_zero2_is_the_sft_step_on_chosen_and_rejected_plus_the_whole_16_bit_reference():
    dpo = parallel_step(LLAMA, _on(DPO, zero=2).for_model(LLAMA)).phases
    orpo_like = parallel_step(LLAMA, _on(DPO.with_(objective=Objective.SFT, batch_size=4), zero=2)
                              .for_model(LLAMA)).phases
    assert dpo[Phase.OPTIMIZER][C.WEIGHTS] - orpo_like[Phase.OPTIMIZER][C.WEIGHTS] == 2 * N


def test_dpo_under_fsdp2_peaks_in_the_reference_forward_with_the_whole_reference_gathered():
    s = _on(DPO, fsdp=Fsdp.FULL).for_model(LLAMA)
    phases = parallel_step(LLAMA, s).phases
    sft = parallel_step(LLAMA, _on(DPO.with_(objective=Objective.SFT, batch_size=4), fsdp=Fsdp.FULL)
                        .for_model(LLAMA)).phases
    assert phases[Phase.FORWARD][C.WEIGHTS] - sft[Phase.FORWARD][C.WEIGHTS] == 4 * N // 8 + 4 * N
    assert estimate(LLAMA, s).peak_phase is Phase.FORWARD


def test_ddp_runs_the_one_gpu_preference_step_beside_the_buckets():
    one, ddp = estimate(LLAMA, DPO), estimate(LLAMA, _on(DPO))
    _, st, _ = terms(LLAMA, DPO)
    assert ddp.components[C.GRADIENTS] - one.components[C.GRADIENTS] == st.gradients
    kto = DPO.with_(objective=Objective.KTO)
    assert estimate(LLAMA, _on(kto, zero=3)).peak_allocated_bytes < estimate(LLAMA, kto).peak_allocated_bytes


def test_zero3_gathers_the_whole_16_bit_policy_for_generate_unless_told_not_to():
    m = resolve_model("qwen-2.5-7b")
    gather = generation_phase(m, _on(GRPO, zero=3))
    per_module = generation_phase(m, _on(GRPO, zero=3).with_(ds3_gather_for_generation=False))
    assert gather.peak_allocated_bytes > per_module.peak_allocated_bytes
    assert gather.components[C.WEIGHTS] - per_module.components[C.WEIGHTS] > 0.9 * 2 * 7.6e9
    fsdp = generation_phase(m, _on(GRPO, fsdp=Fsdp.FULL))
    assert fsdp.peak_allocated_bytes < per_module.peak_allocated_bytes + 2**30


def test_grpo_with_a_reference_under_fsdp2_gathers_it_whole_for_its_log_probs():
    m = resolve_model("qwen-2.5-7b")
    g = generation_phase(m, _on(GRPO.with_(kl_beta=0.04), fsdp=Fsdp.FULL))
    assert g.moment == "reference log-probs" and g.components[C.WEIGHTS] > 2 * 2 * 7e9


def test_vllm_server_mode_generates_elsewhere():
    m = resolve_model("qwen-2.5-7b")
    s = _on(GRPO, fsdp=Fsdp.FULL).with_(vllm_server_gpus=2)
    g = generation_phase(m, s)
    assert g.kv_cache_bytes == 0 and g.moment == "old policy log-probs" and g.to_dict()["vllm_server_gpus"] == 2
    d = s.to_dict()
    assert d["vllm_server_gpus"] == 2 and "ds3_gather_for_generation" not in d
    assert TrainingSetup.from_dict(d).to_dict() == d
    r = CliRunner().invoke(cli, ["estimate", "-m", "qwen-2.5-7b", "--objective", "grpo", "--loss", "trl", "-b", "8",
                                 "-s", "1536", "--max-completion-length", "1024", "--gpus-per-node", "8", "--zero", "3",
                                 "--no-ds3-gather-for-generation", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["setup"]["ds3_gather_for_generation"] is False and "generate" in out["run_phases"]


@pytest.mark.parametrize("parallel, match", [(dict(tp=2), "--tp / --pp"), (dict(fsdp=Fsdp.YAFSDP), "yafsdp")])
def test_layouts_trl_does_not_run_are_refused(parallel, match):
    with pytest.raises(PlannerError, match=match):
        estimate(LLAMA, _on(DPO, **parallel))


def test_grpo_config_keys_for_server_mode_and_the_zero3_gather(tmp_path):
    base = ("model_name_or_path: Qwen/Qwen2.5-0.5B-Instruct\nper_device_train_batch_size: 8\nnum_generations: 8\n"
            "max_completion_length: 256\nmax_length: 512\n")
    p = tmp_path / "grpo.yaml"
    p.write_text(base + "use_vllm: true\nvllm_mode: server\n")
    c = read_config(str(p))
    assert dict(c.answerable)[next(r for r in c.refused if r.startswith("vllm_mode"))] == "vllm_server_gpus"
    p.write_text(base + "ds3_gather_for_generation: false\n")
    assert read_config(str(p)).options["ds3_gather_for_generation"] is False


def test_the_vllm_server_gpus_are_paid_for():
    from gpuplan.planner.io.catalog import resolve_gpu
    from gpuplan.planner.plans.plan import time_report

    m, h100 = resolve_model("qwen-2.5-7b"), resolve_gpu("h100")
    s = _on(GRPO, fsdp=Fsdp.FULL)
    # vLLM generates in both (its generation untimed), so the step time is the same; HF generate is timed
    plain = time_report(m, s.with_(vllm_colocate=0.3), h100, dataset_tokens=10**8)
    served = time_report(m, s.with_(vllm_server_gpus=2), h100, dataset_tokens=10**8)
    assert "billed_gpus" not in plain and served["billed_gpus"] == 10
    assert served["costs"][0]["usd"] == pytest.approx(plain["costs"][0]["usd"] * 10 / 8)
    hf = time_report(m, s, h100, dataset_tokens=10**8)
    assert hf["parts_s"]["generation"] > 0 and "generation" not in plain["parts_s"]
