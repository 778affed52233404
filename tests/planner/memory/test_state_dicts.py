"""The FSDP save phase (planner/memory/state_dicts.py): FSDP1's FULL_STATE_DICT / SHARDED_STATE_DICT with
and without offload_to_cpu / rank0_only, FSDP2's sharded save, their host RAM, the flags and config keys."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpuplan.app.cli import cli
from gpuplan.planner import Fsdp, Method, Offload, ParallelSpec, PlannerError, TrainingSetup, resolve_model
from gpuplan.planner.fromconfig import read_config
from gpuplan.planner.memory.checkpoints import SavePlan, checkpoint_estimate, save_peak_bytes
from gpuplan.planner.memory.pieces import terms
from gpuplan.planner.memory.state_dicts import StateDictPlan, StateDictType, fsdp_save_memory
from gpuplan.planner.specs.params import param_counts

LLAMA = resolve_model("llama-3.1-8b")
N = 8_030_261_248
FSDP8 = ParallelSpec(gpus=8, fsdp=Fsdp.FULL)
CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "configs"
V1 = StateDictPlan(fsdp_version=1)


def _full(**kw) -> TrainingSetup:
    return TrainingSetup(parallel=FSDP8, **kw)


def test_fsdp1_full_state_dict_offloaded_holds_one_unit_on_the_gpu_and_the_whole_model_on_rank_0s_host():
    pc = param_counts(LLAMA)
    root = pc.embedding + pc.lm_head + LLAMA.hidden              # embed_tokens, lm_head, final norm: 1.05 B
    resident = (4 * N + 8 * N) // 8                              # fp32 weights and AdamW moments, 1/8 each
    m = fsdp_save_memory(LLAMA, _full(), V1, with_optimizer=False)
    assert m.gpu_bytes == resident + 4 * root                    # the root unit unsharded in fp32, alone
    assert m.host_bytes_rank0 == 4 * N + 4 * root                # the clones beside the unit's host copy
    assert m.host_bytes_per_node == m.host_bytes_rank0           # rank0_only: the other ranks keep nothing
    # the optimizer's state dict: one state of the root gathered (fp32) with the cat of its local shard,
    # and both AdamW moments of every parameter on rank 0's host
    o = fsdp_save_memory(LLAMA, _full(), V1)
    assert o.gpu_bytes == resident + 4 * root + 4 * root // 8
    assert o.host_bytes_rank0 == 8 * N


def test_fsdp1_without_offload_to_cpu_clones_the_whole_state_dict_on_the_gpu():
    pc = param_counts(LLAMA)
    root = 4 * (pc.embedding + pc.lm_head + LLAMA.hidden)
    on_gpu = fsdp_save_memory(LLAMA, _full(), StateDictPlan(1, offload_to_cpu=False), with_optimizer=False)
    assert on_gpu.gpu_bytes == 12 * N // 8 + 4 * N + root and on_gpu.host_bytes_rank0 == 0
    everyone = fsdp_save_memory(LLAMA, _full(), StateDictPlan(1, offload_to_cpu=True, rank0_only=False),
                                with_optimizer=False)
    assert everyone.host_bytes_per_node == 8 * everyone.host_bytes_rank0   # each of the 8 processes keeps it all


def test_fsdp1_sharded_gathers_the_root_and_a_layer_on_every_rank_fsdp2_sharded_gathers_nothing():
    s = _full()
    _, st, _ = terms(LLAMA, TrainingSetup())
    resident = (st.weights + st.optimizer_state) // 8
    v2 = fsdp_save_memory(LLAMA, s, StateDictPlan(2, StateDictType.SHARDED))
    v1 = fsdp_save_memory(LLAMA, s, StateDictPlan(1, StateDictType.SHARDED))
    assert v2.gpu_bytes == resident and v2.host_bytes_rank0 == st.optimizer_state // 8   # the larger dict
    assert resident < v1.gpu_bytes < fsdp_save_memory(LLAMA, s, V1).gpu_bytes + st.weights
    assert v1.host_bytes_per_node == 8 * v1.host_bytes_rank0


def test_the_flat_parameter_optimizer_save_gathers_both_moments_of_a_unit_together():
    orig = fsdp_save_memory(LLAMA, _full(), V1)
    flat = fsdp_save_memory(LLAMA, _full(), StateDictPlan(1, use_orig_params=False))
    pc = param_counts(LLAMA)
    root = pc.embedding + pc.lm_head + LLAMA.hidden
    assert flat.gpu_bytes - orig.gpu_bytes == 2 * 4 * root - (4 * root + 4 * root // 8)


def test_lora_under_fsdp1_saves_the_whole_model_and_gathers_one_adapter_for_the_optimizer():
    s = TrainingSetup(method=Method.LORA, parallel=FSDP8)
    _, st, _ = terms(LLAMA, s.with_(parallel=ParallelSpec()))
    m = fsdp_save_memory(LLAMA, s, V1)
    assert m.host_bytes_rank0 > st.weights               # model.state_dict() gathers the frozen base too
    assert m.gpu_bytes == fsdp_save_memory(LLAMA, s, V1, with_optimizer=False).gpu_bytes   # adapters are tiny units


def test_cpu_offloaded_shards_are_copied_to_the_gpu_before_the_gather():
    off = fsdp_save_memory(LLAMA, TrainingSetup(parallel=ParallelSpec(gpus=8, fsdp=Fsdp.FULL, offload=Offload.PARAMS)),
                           V1, with_optimizer=False)
    pc = param_counts(LLAMA)
    root = 4 * (pc.embedding + pc.lm_head + LLAMA.hidden)
    assert off.gpu_bytes == root + root // 8             # nothing resident: the shards live in host RAM


def test_the_default_plan_keeps_todays_fsdp2_save_and_its_dict():
    e = checkpoint_estimate(LLAMA, _full(), SavePlan(100))
    assert e.save_peak_bytes == save_peak_bytes(LLAMA, _full()) and "state_dict" not in e.to_dict()
    d = checkpoint_estimate(LLAMA, _full(), SavePlan(100, state_dict=V1)).to_dict()
    assert d["state_dict"]["fsdp_version"] == 1 and d["save_host_bytes_rank0"] == 8 * N


def test_a_final_full_save_after_sharded_checkpoints_counts_the_full_gather():
    sharded = StateDictPlan(2, StateDictType.SHARDED)
    final = StateDictPlan(2, StateDictType.SHARDED, final_full=True)
    a = checkpoint_estimate(LLAMA, _full(), SavePlan(100, state_dict=sharded))
    b = checkpoint_estimate(LLAMA, _full(), SavePlan(100, state_dict=final))
    assert b.save_peak_bytes == save_peak_bytes(LLAMA, _full()) > a.save_peak_bytes
    assert b.save_host_bytes_rank0 == 4 * N > a.save_host_bytes_rank0   # the final fp32 model on rank 0's host
    f1 = fsdp_save_memory(LLAMA, _full(), StateDictPlan(1, StateDictType.SHARDED, final_full=True))
    assert f1.host_bytes_rank0 >= 4 * N                   # the final model gathered to rank 0's host


@pytest.mark.parametrize("plan, setup, match", [
    (V1, TrainingSetup(parallel=ParallelSpec(gpus=8, zero=3)), "add --fsdp full"),
    (StateDictPlan(2, offload_to_cpu=False), _full(), "add --fsdp-version 1"),
    (StateDictPlan(1, StateDictType.SHARDED, rank0_only=False), _full(), "sharded state dict is on every rank"),
    (StateDictPlan(1, final_full=True), _full(), "add --fsdp-state-dict sharded"),
    (StateDictPlan(3), _full(), "must be 1 or 2"),
])
def test_impossible_plans_are_refused(plan, setup, match):
    with pytest.raises(PlannerError, match=match):
        checkpoint_estimate(LLAMA, setup, SavePlan(100, state_dict=plan))


def test_an_optimizer_whose_states_are_not_parameter_shaped_is_refused_for_fsdp1():
    from gpuplan.planner import Optimizer
    s = _full(optimizer=Optimizer.ADAFACTOR)
    with pytest.raises(PlannerError, match="--save-only-model"):
        checkpoint_estimate(LLAMA, s, SavePlan(100, state_dict=V1))
    assert checkpoint_estimate(LLAMA, s, SavePlan(100, save_only_model=True, state_dict=V1)).save_peak_bytes > 0


@pytest.mark.parametrize("name, version, kind, flat", [
    ("hf/alignment-handbook-accelerate-fsdp.yaml", "1", "sharded", None),   # accelerate's default FSDP1
    ("hf/trl-accelerate-fsdp2.yaml", "2", "full", None),
    ("axolotl/llama-2-qlora-fsdp.yml", "1", "full", True),                   # fsdp_use_orig_params: false
    ("axolotl/llama3-8b-fsdp2-alst.yaml", "2", "sharded", None),
])
def test_real_configs_map_their_state_dict_keys(name, version, kind, flat, monkeypatch):
    monkeypatch.setenv("GPUPLAN_OFFLINE", "1")
    c = read_config(str(CORPUS / name))
    assert (c.options["fsdp_version"], c.options["fsdp_state_dict"], c.options.get("fsdp_flat_params")) == \
        (version, kind, flat)


def test_cli_json_and_table_show_the_fsdp1_save():
    base = ["estimate", "-m", "llama-3.1-8b", "--gpus", "8", "--fsdp", "full", "--save-steps", "100",
            "--fsdp-version", "1"]
    r = CliRunner().invoke(cli, [*base, "--state-dict-on-gpu", "--json"])
    assert r.exit_code == 0, r.output
    c = json.loads(r.stdout)["checkpoint"]
    assert c["state_dict"] == {"fsdp_version": 1, "type": "full", "offload_to_cpu": False, "rank0_only": True,
                               "use_orig_params": True, "final_full": False}
    assert c["save_host_bytes_rank0"] == 0 and c["save_peak_bytes"] > 70 * 2**30
    t = CliRunner().invoke(cli, [*base, "--gpu", "h100"])
    assert "host RAM" in t.output and "FULL_STATE_DICT offload_to_cpu" in t.output
    bad = CliRunner().invoke(cli, ["estimate", "-m", "llama-3.1-8b", "--state-dict-on-gpu"])
    assert bad.exit_code == 2 and "add --save-steps" in bad.output and "Traceback" not in bad.output
