"""TRL 1.12.0's PPOConfig keys [trl/experimental/ppo/ppo_config.py] in an HF/TRL config file, for the hf reader:
`num_ppo_epochs`, `response_length`, `local_rollout_forward_batch_size`, `num_mini_batches` or
`reward_model_path` mark a PPO config (--objective ppo, planned by planner/techniques/ppo.py)."""
from __future__ import annotations

from typing import Any

from .common import Options
from .rules import KeyRule, modelled, no_effect, refused

MARKERS = ("num_ppo_epochs", "response_length", "local_rollout_forward_batch_size", "num_mini_batches",
           "reward_model_path")

TABLE: dict[str, KeyRule] = {
    "response_length": modelled("PPO: --response-length (generated to the full length); --seq-len is query + response"),
    "local_rollout_forward_batch_size": modelled("PPO: --rollout-batch (queries generated and scored at once)"),
    "num_mini_batches": modelled("PPO: --num-mini-batches (must divide gradient_accumulation_steps)"),
    "reward_model_path": modelled("PPO: --reward-model (and --value-model: TRL's example loads the value model "
                                  "from it too); the policy's model when it is the same path"),
    "sft_model_path": modelled("PPO: the policy, as --model (TRL's example loads it)"),
    "ref_adapter_name": refused("PPO's reference as a second named adapter (model_adapter_name / ref_adapter_name)",
                                fix="drop it: the reference is the policy with its adapter disabled"),
    "model_adapter_name": refused("PPO's policy as a named adapter beside a reference adapter",
                                  fix="drop it: one adapter, disabled for the reference"),
    "whiten_rewards": modelled("PPO: per-token tensors of (local batch x response), under 0.01% of the step"),
    **no_effect("PPO: scalars of the loss, the rewards or the schedule, no tensor's shape",
                ["num_ppo_epochs", "kl_coef", "kl_estimator", "cliprange", "vf_coef", "cliprange_value", "gamma",
                 "lam", "temperature", "missing_eos_penalty", "total_episodes", "num_sample_generations", "exp_name"]),
    **{k: modelled("PPO: the plan decodes the full response_length; a stop token can only end generate sooner "
                   "(the per-token tensors keep their shape: truncate_response pads after it)")
       for k in ("stop_token", "stop_token_id")},
    **{k: modelled("PPO: PPOTrainer.__init__ computes it from per_device_train_batch_size, "
                   "gradient_accumulation_steps, num_mini_batches and the GPU count, overwriting what the config gives")
       for k in ("world_size", "num_total_batches", "micro_batch_size", "local_batch_size", "batch_size",
                 "local_mini_batch_size", "mini_batch_size")},
}


def read(d: dict[str, Any], todo: set[str], o: Options) -> None:
    """A PPOConfig (one of MARKERS set): PPOTrainer of TRL 1.12.0 on one GPU."""
    get = lambda k: d.get(k) if k in todo else None   # noqa: E731
    marker = next((k for k in MARKERS if k in d), None)
    if marker is None:
        return
    o.use(marker, "objective", "ppo")
    if get("response_length") is not None:
        o.use("response_length", "response_len", int(d["response_length"]))
    if get("local_rollout_forward_batch_size") is not None:
        o.use("local_rollout_forward_batch_size", "rollout_batch", int(d["local_rollout_forward_batch_size"]))
    if get("num_mini_batches") is not None:
        o.use("num_mini_batches", "mini_batches", int(d["num_mini_batches"]))
    prec = o.get("precision")
    if isinstance(prec, str) and prec.endswith("-mixed"):   # PPOTrainer: Accelerator() without mixed_precision
        load = o.pop("weights_dtype", None) or o.get("base_dtype")
        o["precision"] = f"{load}-true" if load in ("bf16", "fp16") else "fp32"
        o.report.set("bf16" if "bf16" in d else marker, f"--precision {o['precision']}: TRL 1.12's PPOTrainer builds "
                     "Accelerator() without mixed_precision, so no autocast; the models run in their load dtype")
    policy = d.get("sft_model_path") or d.get("model_name_or_path")
    path = get("reward_model_path")
    if path is not None and str(path) != str(policy):
        o.use("reward_model_path", "reward_model", str(path))
        o.use("reward_model_path", "value_model", str(path))
    if get("whiten_rewards") is not None:
        o.report.set("whiten_rewards", f"{d['whiten_rewards']}: per-token tensors, as planned")
