"""PPO (TRL 1.12.0 trl.experimental.ppo PPOTrainer, planner/techniques/ppo.py, memory/ppo_step.py)."""
import json
import statistics
from pathlib import Path

import pytest

from gpuplan.planner import TrainingSetup, estimate, param_counts, resolve_model
from gpuplan.planner.fromconfig import hf
from gpuplan.planner.memory.load import run_phase_totals
from gpuplan.planner.memory.ppo_step import rollout_phase
from gpuplan.planner.specs.enums import Component, Phase
from gpuplan.planner.specs.errors import PlannerError
from gpuplan.planner.techniques import ppo, reward

QWEN = resolve_model("qwen-2.5-0.5b")
BASE = {"objective": "ppo", "precision": "bf16-true", "batch_size": 2, "seq_len": 128, "response_len": 32}
RECORD = Path(__file__).resolve().parents[3] / "data" / "measurements" / "accuracy_simulate_ppo.json"


def _setup(**kw) -> TrainingSetup:
    return TrainingSetup.from_dict({**BASE, **kw})


def test_the_four_models_weights_full_and_lora():
    n, e = param_counts(QWEN).total, 2
    value = param_counts(reward.score_model(QWEN)).total
    full = estimate(QWEN, _setup()).phase_components[Phase.OPTIMIZER][Component.WEIGHTS]
    assert full == 2 * n * e + 2 * value * e   # policy, reference copy; value, reward
    lora = estimate(QWEN, _setup(method="lora")).phase_components[Phase.OPTIMIZER][Component.WEIGHTS]
    assert n * e + 2 * value * e < lora < n * e + 2 * value * e + 0.02 * n * e   # no reference: adapters disabled


def test_the_value_model_trains_in_full_under_lora():
    est = estimate(QWEN, _setup(method="lora"))
    value = param_counts(reward.score_model(QWEN)).total
    assert est.trainable_params > value                      # the value model's every parameter, plus adapters
    assert est.phase_components[Phase.OPTIMIZER][Component.OPTIMIZER_STATE] >= 2 * value * 2


def test_a_smaller_value_and_reward_model_shrink_the_plan():
    llama = resolve_model("llama-3.2-1b")
    own = estimate(llama, _setup(method="lora", seq_len=256)).peak_allocated_bytes
    small = estimate(llama, _setup(method="lora", seq_len=256, value_model="qwen-2.5-0.5b",
                                   reward_model="qwen-2.5-0.5b")).peak_allocated_bytes
    assert small < own


def test_the_rollout_scores_stay_bound_exactly():
    s = _setup(grad_accum=2, rollout_batch=3)
    chunks, rows = ppo.rollout_chunks(s)
    assert (chunks, rows) == (2, 3)          # 4 queries in chunks of 3: pad() makes 2 x 3 rows
    kept = ppo.kept_bytes(QWEN, s, 2)
    scores = chunks * rows * s.response_len * QWEN.vocab * 4
    assert scores < kept < scores * 1.01


@pytest.mark.parametrize("knob", [{"response_len": 64}, {"batch_size": 4}, {"rollout_batch": 1, "grad_accum": 4},
                                  {"grad_accum": 2}])
def test_memory_never_falls_when_the_rollout_or_batch_grows(knob):
    base = estimate(QWEN, _setup(method="lora")).peak_allocated_bytes
    assert estimate(QWEN, _setup(method="lora", **knob)).peak_allocated_bytes >= base


def test_the_rollout_is_a_run_phase_of_its_own():
    s = _setup(method="lora", grad_accum=2)
    phases = run_phase_totals(QWEN, s)
    assert "generate" in phases
    assert rollout_phase(QWEN, s).peak_allocated_bytes > ppo.kept_bytes(QWEN, s, 2)


def test_the_estimate_names_the_trl_version():
    notes = " ".join(estimate(QWEN, _setup()).notes)
    assert "PPO modelled from TRL 1.12.0's trl.experimental.ppo (removed in 1.13, huggingface/trl#7020)" in notes


@pytest.mark.parametrize("kw, words", [
    ({"parallel": {"gpus": 2}}, "one GPU only"),
    ({"method": "qlora"}, "--method qlora"),
    ({"precision": "bf16-mixed"}, "without mixed_precision"),
    ({"grad_accum": 3, "mini_batches": 2}, "must divide --grad-accum"),
    ({"response_len": 128}, "below --seq-len"),
    ({"loss": "trl"}, "--loss hf"),
    ({"rollout_batch": 0}, "at least 1"),
])
def test_what_the_plan_does_not_take_is_refused_in_one_line(kw, words):
    with pytest.raises(PlannerError) as err:
        _setup(**kw).validate()
    assert words in str(err.value) and "\n" not in str(err.value)


def test_the_ppo_knobs_show_only_when_set_and_round_trip():
    plain = TrainingSetup.from_dict({"objective": "ppo", "precision": "bf16-true"}).to_dict()
    assert not {"response_len", "rollout_batch", "mini_batches", "reward_model", "value_model"} & set(plain)
    set_ = _setup(rollout_batch=4, mini_batches=1, value_model="qwen-2.5-0.5b").to_dict()
    assert set_["rollout_batch"] == 4 and set_["value_model"] == "qwen-2.5-0.5b" and "mini_batches" not in set_
    assert TrainingSetup.from_dict(set_).to_dict() == set_
    assert "response_len" not in TrainingSetup().to_dict()   # other objectives' dicts stay as they were


def test_stacks_without_a_ppo_trainer_are_refused():
    ppo.check_stack("trl-1.12", "1.12.0")
    ppo.check_stack("transformers-5.24", None)
    for stack, trl in (("trl-1.14", "1.14.0"), ("trl-1.16", None)):
        with pytest.raises(PlannerError, match="has no PPOTrainer"):
            ppo.check_stack(stack, trl)


# PPOConfig's own fields [trl/experimental/ppo/ppo_config.py, TRL 1.12.0], besides TrainingArguments'
PPO_CONFIG_FIELDS = ("dataset_num_proc", "num_mini_batches", "total_episodes", "local_rollout_forward_batch_size",
                     "num_sample_generations", "response_length", "stop_token", "stop_token_id", "temperature",
                     "missing_eos_penalty", "sft_model_path", "world_size", "num_total_batches", "micro_batch_size",
                     "local_batch_size", "batch_size", "local_mini_batch_size", "mini_batch_size", "push_to_hub",
                     "reward_model_path", "model_adapter_name", "ref_adapter_name", "num_ppo_epochs", "whiten_rewards",
                     "kl_coef", "kl_estimator", "cliprange", "vf_coef", "cliprange_value", "gamma", "lam",
                     "ds3_gather_for_generation", "exp_name")


def test_every_ppo_config_key_has_a_rule():
    assert not [k for k in PPO_CONFIG_FIELDS if k not in hf.TABLE]


def test_a_ppo_config_maps_to_the_ppo_plan():
    cfg = {"model_name_or_path": "Qwen/Qwen2.5-0.5B", "sft_model_path": "Qwen/Qwen2.5-0.5B",
           "reward_model_path": "HuggingFaceTB/SmolLM2-135M", "per_device_train_batch_size": 2,
           "gradient_accumulation_steps": 4, "num_mini_batches": 2, "local_rollout_forward_batch_size": 4,
           "response_length": 48, "num_ppo_epochs": 4, "kl_coef": 0.05, "bf16": True, "dtype": "bfloat16",
           "use_peft": True, "max_length": 256}
    got = hf.read(cfg, "ppo.yaml")
    o = got.options
    assert (o["objective"], o["response_len"], o["rollout_batch"], o["mini_batches"]) == ("ppo", 48, 4, 2)
    assert o["reward_model"] == o["value_model"] == "HuggingFaceTB/SmolLM2-135M"
    assert o["precision"] == "bf16-true"   # no autocast: PPOTrainer's Accelerator() has no mixed_precision


def test_the_recorded_simulations_are_met_within_one_percent():
    rows = [r for r in json.loads(RECORD.read_text())["results"] if r["measured_bytes"]]
    assert len(rows) >= 6
    errors = []
    for r in rows:
        s = TrainingSetup.from_dict({**r["setup"], "batch_size": r["batch_size"], "seq_len": r["seq_len"]})
        est = estimate(resolve_model(r["model"]), s).peak_allocated_bytes
        errors.append(100.0 * (est - r["measured_bytes"]) / r["measured_bytes"])
    assert max(abs(e) for e in errors) <= 1.0, errors
    assert statistics.median(abs(e) for e in errors) <= 0.5


def test_the_recorded_rollouts_are_met_within_one_percent():
    """The rollout phase (memory/ppo_step.py rollout_phase) against the simulated one: TRL 1.12's batch_generation
    (transformers' sampling generate), its reference, value and reward forwards (profiler/ppo_step.py)."""
    rows = [r for r in json.loads(RECORD.read_text())["results"] if "rollout" in r["components"]]
    assert len(rows) >= 6
    errors = []
    for r in rows:
        s = TrainingSetup.from_dict({**r["setup"], "batch_size": r["batch_size"], "seq_len": r["seq_len"]})
        est = rollout_phase(resolve_model(r["model"]), s).peak_allocated_bytes
        measured = r["components"]["rollout"]["measured_bytes"]
        errors.append(100.0 * (est - measured) / measured)
    assert max(abs(e) for e in errors) <= 1.0, errors
