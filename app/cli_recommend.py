"""`gpuplan recommend`: the cheapest and fastest ways to run a fine-tuning job, the time-cost
frontier, and with --buy, which cards to buy instead of renting."""
from __future__ import annotations

import json
from dataclasses import replace

import click

from gpuplan.planner.specs.errors import PlannerError

from .cli_gpus import gpu_catalog_option, load_gpu_catalogs


@click.command()
@click.option("--model", "-m", required=True, help="Preset name (gpuplan models), a config.json path, or a hub id.")
@click.option("--dataset-tokens", required=True, help="Tokens per epoch: 200M, 1.5B, 2e9.")
@click.option("--epochs", type=float, default=1.0, show_default=True)
@click.option("--methods", default="full,lora,qlora", show_default=True, help="Comma list of methods allowed.")
@click.option("--max-gpus", type=int, default=8, show_default=True, help="Most GPUs per plan (8 per node).")
@click.option("--deadline", default=None, help="Wall-clock limit: 48h, 2d, 90m.")
@click.option("--budget", default=None, help="Dollar limit for the whole run: 500, $1.2k.")
@click.option("--providers", default=None, help="Comma list of clouds allowed (default: all in the catalog).")
@click.option("--gpu-types", "gpu_names", default=None,
              help="Comma list of GPU types allowed (default: all): rtx-4090,l40s,h100.")
@click.option("--gpus", "gpu_names_legacy", default=None, hidden=True, help="Deprecated spelling of --gpu-types.")
@click.option("--spot", is_flag=True, help="Price at spot rates where the catalog records one.")
@click.option("--seq-len", "-s", type=int, default=1024, show_default=True, help="Tokens per sequence (packed).")
@click.option("--global-batch", type=int, default=64, show_default=True,
              help="Sequences per optimizer step; gradient accumulation fills it.")
@click.option("--mfu", type=float, default=None, help="Override the achievable fraction of peak FLOP/s (data/mfu.json).")
@click.option("--objective", default="sft", show_default=True,
              help="TRL trainer planned: sft, dpo, kto, orpo, grpo (GRPOConfig's defaults), rm; each candidate's fit "
                   "holds that trainer's step and run phases.")
@click.option("--fsdp-version", type=click.Choice(["1", "2"]), default="2", show_default=True,
              help="The FSDP full-shard candidates' step: 1 FullyShardedDataParallel (FlatParameters; QLoRA's is "
                   "still planned as FSDP2's, a note says so) or 2 fully_shard.")
@click.option("--top", type=int, default=8, show_default=True, help="Frontier rows to show.")
@click.option("--buy", is_flag=True, help="Also: which cards to buy, and break-even against renting.")
@click.option("--kwh-price", type=float, default=None, help="Electricity $/kWh for --buy [0.15].")
@click.option("--utilization", type=float, default=None, help="Share of calendar time the bought cards train [0.5].")
@gpu_catalog_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--csv", "as_csv", is_flag=True,
              help="Print one CSV row per qualifying plan, cheapest first (the dashboard's table; `pareto` marks the frontier).")
def recommend(model: str, dataset_tokens: str, epochs: float, methods: str, max_gpus: int, deadline: str | None,
              budget: str | None, providers: str | None, gpu_names: str | None, gpu_names_legacy: str | None,
              spot: bool, seq_len: int,
              global_batch: int, mfu: float | None, objective: str, fsdp_version: str, top: int, buy: bool, kwh_price: float | None,
              utilization: float | None, gpu_catalogs: tuple[str, ...], as_json: bool, as_csv: bool) -> None:
    """Search GPU type x count x sharding x method x precision x optimizer x checkpointing x
    micro-batch (the largest that fits) and show the cheapest plan, the fastest, and the
    time-vs-cost Pareto frontier; when nothing qualifies, the knob that gets closest.

    \b
    Examples:
      gpuplan recommend --model qwen2.5-7b --dataset-tokens 200M --epochs 2
      gpuplan recommend --model llama-3.1-70b --dataset-tokens 1B --max-gpus 16 --deadline 48h --methods full,lora
      gpuplan recommend --model llama-3.1-8b --dataset-tokens 100M --buy --kwh-price 0.30
      gpuplan recommend --model qwen2.5-7b --dataset-tokens 200M --csv > plans.csv
    """
    from gpuplan.planner.io.catalog import resolve_model   # lazy: each command loads what it needs (fast start)
    from gpuplan.planner.plans.cost import parse_tokens   # lazy: each command loads what it needs (fast start)
    from gpuplan.planner.plans.purchase import Ownership, purchase_options   # lazy: each command loads what it needs (fast start)
    from gpuplan.planner.plans.recommend import recommend as run, search_from_inputs   # lazy: each command loads what it needs (fast start)

    if as_json and as_csv:
        raise click.UsageError("--json and --csv are two output formats: give one")
    if as_csv and buy:
        raise click.UsageError("--csv prints the rented plans' table; --buy's purchase table is in the text and --json output")
    if gpu_names_legacy is not None:
        click.echo("note: recommend --gpus is deprecated (estimate/fit use --gpus-per-node for a count): "
                   "use --gpu-types a,b,c", err=True)
        if gpu_names is not None and gpu_names != gpu_names_legacy:
            raise click.UsageError("--gpus and --gpu-types disagree; give only --gpu-types")
        gpu_names = gpu_names_legacy
    try:
        load_gpu_catalogs(gpu_catalogs)
        m = resolve_model(model)
        c, space = search_from_inputs(methods, max_gpus, deadline, budget, providers, gpu_names, spot, seq_len,
                                      global_batch, mfu, objective, int(fsdp_version))
        from gpuplan.planner.io.validate import config_notes, context_check   # lazy: each command loads what it needs (fast start)

        for note in config_notes(m.hf_config) + context_check(m, seq_len):   # GPT-2 past its positions: refused
            click.echo(f"note: {note}", err=True)
        tokens = parse_tokens(dataset_tokens)
        rec = run(m, tokens, epochs, c, space)
        options = ()
        if buy:
            own = Ownership(**{k: v for k, v in (("usd_per_kwh", kwh_price), ("utilization", utilization)) if v is not None})
            if not 0 < own.utilization <= 1:
                raise PlannerError(f"--utilization is a fraction in (0, 1], got {own.utilization}")
            owned = run(m, tokens, epochs, replace(c, require_price=False, budget_usd=None, providers=None), space)
            if rec.cheapest is not None:
                options = purchase_options(owned.plans, rec.cheapest, own)
    except PlannerError as e:
        raise click.UsageError(str(e)) from None
    if as_csv:
        from .rows import plan_rows, to_csv   # lazy: each command loads what it needs (fast start)

        click.echo(to_csv(plan_rows(rec)), nl=False)
        if rec.cheapest is None:
            raise SystemExit(1)
        return
    if as_json:
        out = rec.to_dict()
        if buy:
            out["buy"] = [o.to_dict() for o in options]
            out["ownership_assumptions"] = [a.__dict__ for a in own.assumptions()]
        click.echo(json.dumps(out, indent=2, default=str))
        return
    from .console import make_console   # lazy: each command loads what it needs (fast start)
    from .recommend_report import render_purchase, render_recommendation   # lazy: each command loads what it needs (fast start)

    console = make_console()
    render_recommendation(rec, m.name, tokens, epochs, console, top)
    if buy and rec.cheapest is not None:
        render_purchase(options, rec.cheapest, own, console)
    if rec.cheapest is None:
        raise SystemExit(1)
