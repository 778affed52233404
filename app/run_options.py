"""The run-phase options of `gpuplan estimate`: checkpoints (save), the eval phase and several
adapters on one base, and the run's phases joined into one peak that decides the fit."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import click

from gpuplan.planner import Objective, PlannerError, RunPhase

RUN_OPTIONS = [
    click.option("--save-steps", type=int, default=None, help="Checkpoint every N optimizer steps: adds what each "
                 "save writes, the disk the run keeps, the save time and the save phase's memory."),
    click.option("--save-total-limit", type=int, default=None, help="Checkpoints kept on disk [all]."),
    click.option("--max-steps", type=int, default=None, help="Optimizer steps of the run, to count checkpoints [one]."),
    click.option("--disk-bandwidth", default=None, help="Checkpoint write speed: 1.5GB/s, 800MB/s [2GB/s, a datacenter NVMe]."),
    click.option("--save-only-model", is_flag=True, help="Checkpoints without the optimizer state (HF save_only_model)."),
    click.option("--fsdp-version", type=click.Choice(["1", "2"]), default=None, help="FSDP: the save phase runs "
                 "FSDP1's (FullyShardedDataParallel) or FSDP2's (fully_shard) state-dict code; with --fsdp full "
                 "(no offload, TP, PP or CP) `estimate` plans FSDP1's FlatParameter step too [2]."),
    click.option("--fsdp-state-dict", type=click.Choice(["full", "sharded"]), default=None, help="FSDP "
                 "state_dict_type of the save: full (FULL_STATE_DICT, gathered for rank 0) or sharded "
                 "(SHARDED_STATE_DICT, each rank's shards) [full]."),
    click.option("--state-dict-on-gpu", is_flag=True, help="FSDP1: FullStateDictConfig / ShardedStateDictConfig("
                 "offload_to_cpu=False), torch's default; accelerate and HF Trainer always offload to CPU."),
    click.option("--state-dict-all-ranks", is_flag=True, help="FSDP1 full state dict: rank0_only=False (every rank "
                 "keeps the whole state dict), torch's default; accelerate sets rank0_only=True."),
    click.option("--final-full-state-dict", is_flag=True, help="FSDP with --fsdp-state-dict sharded: the run ends "
                 "with a full-state-dict save_model (axolotl final_state_dict_type: FULL_STATE_DICT)."),
    click.option("--fsdp-flat-params", is_flag=True, help="FSDP1 use_orig_params=False (accelerate's own default; "
                 "HF Trainer's fsdp_config defaults it true): the optimizer save gathers a unit's states together."),
    click.option("--fsdp-forward-prefetch", is_flag=True, help="FSDP1 forward_prefetch=True (accelerate's "
                 "fsdp_forward_prefetch): FSDP1's step is not modelled with it, so FSDP2's step is planned (a note "
                 "says so); FSDP2 always issues the next all-gather during forward."),
    click.option("--eval-batch-size", type=int, default=None, help="Plan the eval phase too, at this "
                 "per_device_eval_batch_size (HF default 8): no grads, the eval batch's logits."),
    click.option("--eval-seq-len", type=int, default=None, help="Eval sequence length [--seq-len]."),
    click.option("--eval-accumulate-logits", is_flag=True, help="A compute_metrics without "
                 "preprocess_logits_for_metrics: Trainer keeps every eval step's logits on the GPU."),
    click.option("--eval-accumulation-steps", type=int, default=None, help="eval_accumulation_steps: logits move to "
                 "the host after this many steps."),
    click.option("--eval-batches", type=int, default=1, show_default=True, help="Batches one evaluation runs."),
    click.option("--eval-generate-tokens", type=int, default=None, help="Generation during eval "
                 "(predict_with_generate, a sampling callback): generate() makes this many new tokens per eval "
                 "sequence, with a KV cache."),
    click.option("--eval-cache", type=click.Choice(["dynamic", "static"]), default=None,
                 help="generate's KV cache: dynamic (transformers' default) or static [dynamic]."),
    click.option("--adapters", type=int, default=None, help="LoRA: adapters loaded on one base, trained one after "
                 "another in one process: adds their weights and, per --gpu, how many of this rank fit."),
    click.option("--phases", "show_phases", is_flag=True, help="Show every run phase (load, first step, step, and "
                 "eval/save when planned) in the table and --json; the fit is checked against the largest either way."),
    click.option("--load-on-gpu", is_flag=True, help="from_pretrained(device_map=...) straight onto the GPU "
                 "[device_map=None: the model goes through host RAM first, transformers' default]."),
    click.option("--cpu-ram-efficient-loading", is_flag=True, help="FSDP: accelerate's fsdp_cpu_ram_efficient_loading "
                 "(rank 0 alone loads the model into host RAM and broadcasts it)."),
]
NAMES = ("save_steps", "save_total_limit", "max_steps", "disk_bandwidth", "save_only_model", "fsdp_version",
         "fsdp_state_dict", "state_dict_on_gpu", "state_dict_all_ranks", "final_full_state_dict", "fsdp_flat_params",
         "fsdp_forward_prefetch", "eval_batch_size",
         "eval_seq_len", "eval_accumulate_logits", "eval_accumulation_steps", "eval_batches", "eval_generate_tokens",
         "eval_cache", "adapters", "show_phases", "load_on_gpu", "cpu_ram_efficient_loading")


def run_options(func: Callable) -> Callable:
    for option in reversed(RUN_OPTIONS):
        func = option(func)
    return func


@dataclass
class RunPlan:
    """The run phases asked for beside the step, and what they add."""

    checkpoint: Any = None           # planner.memory.checkpoints.CheckpointEstimate
    eval: Any = None                 # planner.memory.evaluation.EvalEstimate
    generation: Any = None           # planner.memory.rollouts.GenerationPhase (GRPO's rollouts)
    vllm_fraction: float = 0.0       # GRPO's colocated vLLM: its share of every GPU (gpu_memory_utilization)
    adapters: int | None = None
    per_adapter: int = 0
    resident: int = 0                # bytes of the adapters not in training
    before_step: dict[str, int] = field(default_factory=dict)   # load and first-step device totals (memory/load.py)
    load: Any = None                 # planner.memory.load.LoadEstimate, None where not modelled
    show_phases: bool = False        # --phases: every phase in the table and --json

    def all_phases(self, est) -> dict[str, int]:
        """Device total of every run phase (RunPhase values), in run order: load and first step always
        (where modelled), the step, eval and save when planned. The run's peak is the largest."""
        return {**{k: v + self.resident for k, v in self.before_step.items()}, **self.phases(est)}

    def decides(self, est) -> bool:
        """Whether a phase before the step (load, first step) is the run's peak."""
        planned = self.phases(est)
        return any(v > max(planned.values()) for v in self.before_step.values())   # ties go to the step

    def peak(self, est) -> tuple[str, int]:
        """(phase, device total) of the run's largest phase; a tie goes to the planned phases."""
        every = self.all_phases(est)
        planned = self.phases(est)
        phase = max(planned, key=planned.get)
        if self.decides(est):
            phase = max(self.before_step, key=self.before_step.get)
        return phase, every[phase]

    def shown(self, est) -> dict[str, int]:
        """The phases the table and --json show: every one with --phases; otherwise the planned ones
        (step, eval, save) and a phase before the step only where it is the run's peak."""
        every = self.all_phases(est)
        if self.show_phases:
            return every
        peak = max(self.before_step, key=self.before_step.get) if self.before_step else None
        return {peak: every[peak], **self.phases(est)} if self.decides(est) else self.phases(est)

    def phases(self, est) -> dict[str, int]:
        """Device total of each planned run phase (RunPhase values): the step always, eval and save
        when asked for, each with the step's allocator slack and context added to its allocated bytes."""
        ratio = est.peak_reserved_bytes / est.peak_allocated_bytes if est.peak_allocated_bytes else 1.0
        context = est.device_total_bytes - est.peak_reserved_bytes

        def total(allocated: int) -> int:
            return int(allocated * ratio) + context

        out = {RunPhase.STEP.value: est.device_total_bytes}
        if self.eval is not None:
            out[RunPhase.EVAL.value] = total(self.eval.peak_allocated_bytes)
        if self.generation is not None:
            out[RunPhase.GENERATE.value] = total(self.generation.peak_allocated_bytes)
        if self.checkpoint is not None:
            out[RunPhase.SAVE.value] = total(self.checkpoint.save_peak_bytes)
        return {k: v + self.resident for k, v in out.items()}   # the other adapters stay loaded in every phase

    @property
    def any(self) -> bool:
        return (self.checkpoint is not None or self.eval is not None or self.adapters is not None
                or self.generation is not None)

    def reported(self, est) -> bool:
        """Whether the run phases are reported: asked for, or a phase before the step decides the fit."""
        return self.any or self.show_phases or (bool(self.before_step) and self.decides(est))


def plan_run(model, setup, kw: dict[str, Any]) -> RunPlan:
    """RunPlan from the options; raises PlannerError for options that describe a phase not asked for."""
    from gpuplan.planner.memory.checkpoints import DEFAULT_DISK_BYTES_PER_S, SavePlan, checkpoint_estimate   # lazy: each command loads what it needs (fast start)
    from gpuplan.planner.memory.evaluation import EvalPlan, eval_estimate   # lazy: each command loads what it needs (fast start)
    from gpuplan.planner.techniques.generation import CacheKind   # lazy: each command loads what it needs (fast start)
    from gpuplan.planner.memory.pieces import terms   # lazy: each command loads what it needs (fast start)
    from gpuplan.planner.plans.cost import parse_bandwidth   # lazy: each command loads what it needs (fast start)
    from gpuplan.planner.techniques import lora   # lazy: each command loads what it needs (fast start)

    from gpuplan.planner.techniques import reward   # lazy: each command loads what it needs (fast start)

    model = reward.model_for(model, setup)   # reward modelling's phases run the sequence-classification model
    if setup.objective is Objective.RM and kw["eval_batch_size"] is not None:
        raise PlannerError("--eval-batch-size with --objective rm: RewardTrainer's eval (pooled rewards, no vocabulary "
                           "logits) is not modelled yet; plan the training step without it")
    run = RunPlan(show_phases=bool(kw.get("show_phases")))
    _plan_load(run, model, setup, kw)
    if setup.objective is Objective.GRPO:   # its rollouts are a phase of their own
        from gpuplan.planner.memory.rollouts import generation_phase   # lazy: each command loads what it needs (fast start)

        run.generation = generation_phase(model, setup)
        run.vllm_fraction = setup.vllm_colocate
    if setup.objective is Objective.PPO:    # its rollout: a phase of its own [planner/memory/ppo_step.py]
        from gpuplan.planner.memory.ppo_step import rollout_phase   # lazy: each command loads what it needs (fast start)

        run.generation = rollout_phase(model, setup)
    if kw["save_steps"] is not None:
        bandwidth = parse_bandwidth(kw["disk_bandwidth"]) if kw["disk_bandwidth"] else DEFAULT_DISK_BYTES_PER_S
        run.checkpoint = checkpoint_estimate(model, setup, SavePlan(kw["save_steps"], kw["save_total_limit"],
                                                                    kw["max_steps"], bandwidth, kw["save_only_model"],
                                                                    _state_dict_plan(kw)))
    elif any(kw[k] is not None for k in ("save_total_limit", "max_steps", "disk_bandwidth")) or kw["save_only_model"] \
            or kw.get("state_dict_on_gpu") or kw.get("state_dict_all_ranks"):
        raise PlannerError("--save-total-limit, --max-steps, --disk-bandwidth, --save-only-model, --state-dict-on-gpu "
                           "and --state-dict-all-ranks describe checkpoints: add --save-steps N")
    if kw["adapters"] is not None:
        if not setup.peft or kw["adapters"] < 1:
            raise PlannerError("--adapters counts LoRA adapters on one base: use it with --method lora or qlora, "
                               "at least 1")
        run.adapters = kw["adapters"]
        run.per_adapter = lora.resident_adapter_bytes(model, terms(model, setup)[0])
        run.resident = (run.adapters - 1) * run.per_adapter
    if kw["eval_batch_size"] is not None:
        run.eval = eval_estimate(model, setup, EvalPlan(kw["eval_batch_size"], kw["eval_seq_len"],
                                                        kw["eval_accumulate_logits"], kw["eval_accumulation_steps"],
                                                        kw["eval_batches"], kw.get("eval_generate_tokens") or 0,
                                                        CacheKind(kw.get("eval_cache") or "dynamic")))
    elif kw["eval_seq_len"] is not None or kw["eval_accumulate_logits"] or kw["eval_accumulation_steps"] is not None \
            or kw.get("eval_generate_tokens") is not None or kw.get("eval_cache") is not None:
        raise PlannerError("--eval-seq-len, --eval-accumulate-logits, --eval-accumulation-steps, --eval-generate-tokens "
                           "and --eval-cache describe the eval phase: add --eval-batch-size N")
    if kw.get("eval_cache") is not None and not kw.get("eval_generate_tokens"):
        raise PlannerError("--eval-cache is generate's KV cache: add --eval-generate-tokens N")
    return run


def _state_dict_plan(kw: dict[str, Any]):
    """The FSDP save's StateDictPlan (planner/memory/state_dicts.py) from the options; a config's FSDP keys
    (fsdp_version, fsdp_state_dict_type, fsdp_use_orig_params) arrive here too, and only count for FSDP."""
    from gpuplan.planner.memory.state_dicts import StateDictPlan, StateDictType   # lazy: fast start

    kind = kw.get("fsdp_state_dict")
    return StateDictPlan(int(kw.get("fsdp_version") or 2), StateDictType(kind) if kind else StateDictType.FULL,
                         not kw.get("state_dict_on_gpu"), not kw.get("state_dict_all_ranks"),
                         not kw.get("fsdp_flat_params"), bool(kw.get("final_full_state_dict")))


def _plan_load(run: RunPlan, model, setup, kw: dict[str, Any]) -> None:
    """The load and first-step phases (planner/memory/load.py), always planned: they enter the fit."""
    from gpuplan.planner.memory.estimate import estimate   # lazy: each command loads what it needs (fast start)
    from gpuplan.planner.memory.load import LoadDevice, LoadPlan, load_estimate, run_phase_totals   # lazy: each command loads what it needs (fast start)
    from gpuplan.planner.specs.engines import engine_of   # lazy: each command loads what it needs (fast start)

    if kw.get("cpu_ram_efficient_loading") and not engine_of(setup.parallel).fsdp:
        raise PlannerError("--cpu-ram-efficient-loading is FSDP's (accelerate fsdp_cpu_ram_efficient_loading): "
                           "add --fsdp full, or drop it")
    plan = LoadPlan(LoadDevice.GPU if kw.get("load_on_gpu") else LoadDevice.CPU, bool(kw.get("cpu_ram_efficient_loading")))
    est = estimate(model, setup)
    run.before_step = {k: v for k, v in run_phase_totals(model, setup, est, plan).items()
                       if k not in (RunPhase.STEP.value, RunPhase.GENERATE.value)}   # GRPO's rollouts: run.generation
    run.load = load_estimate(model, setup, plan)


def plan_run_refused(kw: dict[str, Any]) -> RunPlan:
    """A setup the simulator answered: the run phases need the closed form's terms."""
    asked = [f"--{k.replace('_', '-')}" for k in ("save_steps", "eval_batch_size", "adapters") if kw.get(k) is not None]
    asked += [f"--{k.replace('_', '-')}" for k in ("load_on_gpu", "cpu_ram_efficient_loading") if kw.get(k)]
    asked += ["--phases"] if kw.get("show_phases") else []
    if asked:
        raise PlannerError(f"{', '.join(asked)} need a closed form of this setup, and it has none (the simulator "
                           "answered its step): plan the run's other phases without them")
    return RunPlan()


def fit_rows_for_run(run: RunPlan, est, fit_rows: list[dict]) -> list[dict]:
    """The fit rows checked against the run's peak (and, with --adapters, how many fit)."""
    from gpuplan.planner.techniques import lora   # lazy: each command loads what it needs (fast start)

    if run.adapters is not None:
        fit_rows = [{**r, "adapters_that_fit": lora.adapters_that_fit(est.device_total_bytes, r["memory_bytes"],
                                                                       run.per_adapter)} for r in fit_rows]
    if run.reported(est):
        phase, total = run.peak(est)
        fit_rows = [{**r, "fits": r["memory_bytes"] >= total, "headroom_bytes": r["memory_bytes"] - total,
                     "phase": phase} for r in fit_rows]
    if run.vllm_fraction:   # vLLM's share of the device, taken before training allocates anything
        fit_rows = [{**r, "vllm_reserved_bytes": (v := int(r["memory_bytes"] * run.vllm_fraction)),
                     "fits": r["memory_bytes"] - v >= r["memory_bytes"] - r["headroom_bytes"],
                     "headroom_bytes": r["headroom_bytes"] - v} for r in fit_rows]
    return fit_rows


def add_json(run: RunPlan, est, out: dict) -> None:
    if run.checkpoint is not None:
        out["checkpoint"] = run.checkpoint.to_dict()
    if run.eval is not None:
        out["eval"] = run.eval.to_dict()
    if run.generation is not None:
        out["generation"] = run.generation.to_dict()
    if run.reported(est):
        out["run_phases"] = run.shown(est)
    if run.load is not None and (run.show_phases or RunPhase.LOAD.value in out.get("run_phases", {})):
        out["load"] = run.load.to_dict()
    if run.adapters is not None:
        out["adapters"] = {"count": run.adapters, "bytes_per_adapter": run.per_adapter, "resident_bytes": run.resident}


def render(run: RunPlan, est, fit_rows: list[dict], console) -> None:
    gib = 2**30
    if run.checkpoint is not None:
        from .report import render_checkpoint   # lazy: each command loads what it needs (fast start)

        render_checkpoint(run.checkpoint, console)
    phases = run.all_phases(est)
    if run.load is not None and (run.show_phases or run.decides(est)):
        ld = run.load
        console.print(f"load phase: {ld.peak_allocated_bytes / gib:,.2f} GiB allocated per GPU "
                      f"({phases['load'] / gib:,.2f} GiB device total) at {ld.moment}; host RAM "
                      f"{ld.host_bytes_per_rank / gib:,.2f} GiB per rank, {ld.host_bytes_per_node / gib:,.2f} GiB per node")
        for note in ld.notes:
            console.print(f"  note: {note}")
    if run.show_phases:
        console.print(f"first step: {phases['first_step'] / gib:,.2f} GiB device total (the optimizer state is "
                      "created in its optimizer.step, so step 1 never exceeds the steady step)")
    if run.eval is not None:
        console.print(f"eval phase: {run.eval.peak_allocated_bytes / gib:,.2f} GiB allocated "
                      f"({phases['eval'] / gib:,.2f} GiB device total)")
        for note in run.eval.notes:
            console.print(f"  note: {note}")
    if run.generation is not None:
        console.print(f"generation phase: {run.generation.peak_allocated_bytes / gib:,.2f} GiB allocated "
                      f"({phases['generate'] / gib:,.2f} GiB device total), {run.generation.completions} completions")
        for note in run.generation.notes:
            console.print(f"  note: {note}")
    if run.adapters is not None:
        console.print(f"{run.adapters} adapters on one base: {run.resident / gib:,.2f} GiB for the {run.adapters - 1} "
                      f"not in training ({run.per_adapter / 2**20:,.1f} MiB each); trained one after another, batches "
                      "never mix adapters (peft's adapter_names is inference only)")
        for r in fit_rows:
            console.print(f"  {r['gpu']}: {r['adapters_that_fit']:,} adapters of this rank fit")
    if run.reported(est):
        phase = run.peak(est)[0]
        console.print(f"the run's peak is its {phase} phase: {phases[phase] / gib:,.2f} GiB device total"
                      + (" (the fit above is checked against it)" if fit_rows else ""))
