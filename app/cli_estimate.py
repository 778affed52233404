"""`gpuplan estimate` and `gpuplan models`: the planner from the command line (imports no torch).
`gpuplan gpus` lives in cli_gpus.py."""
from __future__ import annotations

import json

import click

from gpuplan.planner.specs.errors import PlannerError

from .options import setup_from_options, setup_options


@click.command()
@setup_options
@click.option("--gpu", "gpus", multiple=True, help="GPU to check the fit against (repeatable): rtx-4090, h100, a100-40gb...")
@click.option("--save-steps", type=int, default=None, help="Checkpoint every N optimizer steps: adds what each "
              "save writes, the disk the run keeps, the save time and the save phase's memory.")
@click.option("--save-total-limit", type=int, default=None, help="Checkpoints kept on disk [all].")
@click.option("--max-steps", type=int, default=None, help="Optimizer steps of the run, to count checkpoints [one].")
@click.option("--disk-bandwidth", default=None, help="Checkpoint write speed: 1.5GB/s, 800MB/s [2GB/s, a datacenter NVMe].")
@click.option("--save-only-model", is_flag=True, help="Checkpoints without the optimizer state (HF save_only_model).")
@click.option("--eval-batch-size", type=int, default=None, help="Plan the eval phase too, at this "
              "per_device_eval_batch_size (HF default 8): no grads, the eval batch's logits.")
@click.option("--eval-seq-len", type=int, default=None, help="Eval sequence length [--seq-len].")
@click.option("--eval-accumulate-logits", is_flag=True, help="A compute_metrics without preprocess_logits_for_metrics: "
              "Trainer keeps every eval step's logits on the GPU.")
@click.option("--eval-accumulation-steps", type=int, default=None, help="eval_accumulation_steps: logits move to the "
              "host after this many steps.")
@click.option("--eval-batches", type=int, default=1, show_default=True, help="Batches one evaluation runs.")
@click.option("--adapters", type=int, default=None, help="LoRA: adapters loaded on one base, trained one after "
              "another in one process: adds their weights and, per --gpu, how many of this rank fit.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (schema in README.md).")
def estimate(adapters: int | None, gpus: tuple[str, ...], as_json: bool, save_steps: int | None, save_total_limit: int | None,
             max_steps: int | None, disk_bandwidth: str | None, save_only_model: bool, eval_batch_size: int | None,
             eval_seq_len: int | None, eval_accumulate_logits: bool, eval_accumulation_steps: int | None,
             eval_batches: int, **kw) -> None:
    """Peak GPU memory of one training step, by component and phase, and whether it fits.

    \b
    Example:
      gpuplan estimate --model llama-3.1-8b --method qlora --batch-size 4 --seq-len 4096 --gpu rtx-4090
    """
    from gpuplan.planner.io.catalog import resolve_gpu
    from gpuplan.planner.memory.estimate import estimate as run_estimate, fits

    try:
        model, setup = setup_from_options(**kw)
        gpu_specs = [resolve_gpu(g) for g in gpus]
        est = run_estimate(model, setup)
        ckpt = None
        if save_steps is not None:
            from gpuplan.planner.memory.checkpoints import DEFAULT_DISK_BYTES_PER_S, SavePlan, checkpoint_estimate
            from gpuplan.planner.plans.cost import parse_bandwidth

            plan = SavePlan(save_steps, save_total_limit, max_steps,
                            parse_bandwidth(disk_bandwidth) if disk_bandwidth else DEFAULT_DISK_BYTES_PER_S,
                            save_only_model)
            ckpt = checkpoint_estimate(model, setup, plan)
        elif any(v is not None for v in (save_total_limit, max_steps, disk_bandwidth)) or save_only_model:
            raise PlannerError("--save-total-limit, --max-steps, --disk-bandwidth and --save-only-model "
                               "describe checkpoints: add --save-steps N")
        resident = 0
        if adapters is not None:
            if not setup.peft or adapters < 1:
                raise PlannerError("--adapters counts LoRA adapters on one base: use it with --method lora or qlora, "
                                   "at least 1")
            from gpuplan.planner.memory.pieces import terms
            from gpuplan.planner.techniques import lora

            rs = terms(model, setup)[0]
            per_adapter = lora.resident_adapter_bytes(model, rs)
            resident = (adapters - 1) * per_adapter
        ev = None
        if eval_batch_size is not None:
            from gpuplan.planner.memory.evaluation import EvalPlan, eval_estimate

            ev = eval_estimate(model, setup, EvalPlan(eval_batch_size, eval_seq_len, eval_accumulate_logits,
                                                      eval_accumulation_steps, eval_batches))
        elif eval_seq_len is not None or eval_accumulate_logits or eval_accumulation_steps is not None:
            raise PlannerError("--eval-seq-len, --eval-accumulate-logits and --eval-accumulation-steps describe "
                               "the eval phase: add --eval-batch-size N")
    except PlannerError as e:
        raise click.UsageError(str(e)) from None
    phases = run_phases(est, ev, ckpt)
    if resident:
        phases = {k: v + resident for k, v in phases.items()}    # the others' weights stay loaded in every phase
    fit_rows = [fits(est, g) for g in gpu_specs]
    if adapters is not None:
        from gpuplan.planner.techniques import lora

        fit_rows = [{**r, "adapters_that_fit": lora.adapters_that_fit(est.device_total_bytes, r["memory_bytes"],
                                                                       per_adapter)} for r in fit_rows]
    if len(phases) > 1 or resident:       # the run's peak over its phases decides the fit
        phase, total = max(phases.items(), key=lambda kv: kv[1])
        fit_rows = [{**r, "fits": r["memory_bytes"] >= total, "headroom_bytes": r["memory_bytes"] - total,
                     "phase": phase} for r in fit_rows]
    if as_json:
        out = est.to_dict()
        out["fits"] = fit_rows
        if ckpt is not None:
            out["checkpoint"] = ckpt.to_dict()
        if ev is not None:
            out["eval"] = ev.to_dict()
        if len(phases) > 1 or resident:
            out["run_phases"] = phases
        if adapters is not None:
            out["adapters"] = {"count": adapters, "bytes_per_adapter": per_adapter, "resident_bytes": resident}
        from .from_config import from_config_block

        block = from_config_block(click.get_current_context(silent=True))
        if block is not None:
            out["from_config"] = block
        click.echo(json.dumps(out, indent=2))
        return
    from rich.console import Console

    from .report import render_estimate

    console = Console()
    render_estimate(est, fit_rows, console)
    if ckpt is not None:
        from .report import render_checkpoint

        render_checkpoint(ckpt, console)
    if ev is not None:
        console.print(f"eval phase: {ev.peak_allocated_bytes / 2**30:,.2f} GiB allocated "
                      f"({phases['eval'] / 2**30:,.2f} GiB device total)")
        for note in ev.notes:
            console.print(f"  note: {note}")
    if adapters is not None:
        console.print(f"{adapters} adapters on one base: {resident / 2**30:,.2f} GiB for the {adapters - 1} not in "
                      f"training ({per_adapter / 2**20:,.1f} MiB each); trained one after another, batches never mix "
                      "adapters (peft's adapter_names is inference only)")
        for r in fit_rows:
            console.print(f"  {r['gpu']}: {r['adapters_that_fit']:,} adapters of this rank fit")
    if len(phases) > 1 or resident:
        phase = max(phases, key=phases.get)
        console.print(f"the run's peak is its {phase} phase: {phases[phase] / 2**30:,.2f} GiB device total"
                      + (" (the fit above is checked against it)" if fit_rows else ""))


def run_phases(est, ev, ckpt) -> dict[str, int]:
    """Device total of each planned run phase (RunPhase values): the step always, eval and save
    when asked for, each with the step's allocator slack and context added to its allocated bytes."""
    from gpuplan.planner import RunPhase

    extra = est.device_total_bytes - est.peak_allocated_bytes      # slack, context, outside the allocator
    ratio = est.peak_reserved_bytes / est.peak_allocated_bytes if est.peak_allocated_bytes else 1.0
    context = est.device_total_bytes - est.peak_reserved_bytes

    def total(allocated: int) -> int:
        return int(allocated * ratio) + context if extra else allocated

    out = {RunPhase.STEP.value: est.device_total_bytes}
    if ev is not None:
        out[RunPhase.EVAL.value] = total(ev.peak_allocated_bytes)
    if ckpt is not None:
        out[RunPhase.SAVE.value] = total(ckpt.save_peak_bytes)
    return out


@click.command()
def models() -> None:
    """List the bundled model presets."""
    from gpuplan.planner.io.catalog import load_preset, model_names

    for name in model_names():
        preset = load_preset(name)
        click.echo(f"{name:28s} {preset['params_total'] / 1e9:8.2f} B  {preset['hf_id']}")

