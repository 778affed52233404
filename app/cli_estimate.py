"""`gpuplan estimate` and `gpuplan models`: the planner from the command line (imports no torch).
`gpuplan gpus` lives in cli_gpus.py."""
from __future__ import annotations

import json

import click

from gpuplan.planner.specs.errors import PlannerError

from .cli_gpus import gpu_catalog_option, load_gpu_catalogs
from .options import setup_from_options, setup_notes, setup_options
from .run_options import NAMES as RUN_NAMES, add_json, fit_rows_for_run, plan_run, plan_run_refused, render, run_options

CHECK_FAILED = 3   # `estimate --check`: a --gpu does not fit (0: every one fits, 2: bad input)


@click.command()
@setup_options
@click.option("--gpu", "gpus", multiple=True, help="GPU to check the fit against (repeatable): rtx-4090, h100, a100-40gb...")
@gpu_catalog_option
@click.option("--check", is_flag=True,
              help=f"For scripts: exit {CHECK_FAILED} when the setup does not fit a --gpu (0 when every one fits, 2 on bad input).")
@run_options
@click.option("--dataset-tokens", default=None, help="With --gpu: tokens per epoch (200M, 1.5B) for hours and dollars.")
@click.option("--epochs", type=float, default=1.0, show_default=True, help="With --dataset-tokens.")
@click.option("--ranges-stack", type=click.Choice(["hf", "torchtune", "other"]), default=None,   # EvidenceStack
              help="The stack whose published real-GPU runs give each figure's range (default: torchtune for "
                   "--stack-versions torchtune-* or a torchtune config, other for an Unsloth script, else hf).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (schema in README.md).")
def estimate(gpus: tuple[str, ...], gpu_catalogs: tuple[str, ...], check: bool, dataset_tokens: str | None,
             epochs: float, ranges_stack: str | None, as_json: bool, **kw) -> None:
    """Peak GPU memory of one training step, by component and phase, and whether it fits.
    A --gpu it does not fit says by how much, and the cheapest knobs that make it fit.

    \b
    Exit status: 0; 2 for bad input; with --check, 3 when a --gpu does not fit.

    \b
    Example:
      gpuplan estimate --model llama-3.1-8b --method qlora --batch-size 4 --seq-len 4096 --gpu rtx-4090
      gpuplan estimate -m llama-3.1-8b --method lora --gpu a10g --check || echo "does not fit"
      gpuplan estimate --model llama-3.1-8b --method lora --gpu a100-80gb --dataset-tokens 200M --epochs 2
    """
    from gpuplan.planner.io.catalog import resolve_gpu   # lazy: each command loads what it needs (fast start)
    from gpuplan.planner.memory.estimate import fits   # lazy: each command loads what it needs (fast start)
    from gpuplan.planner.plans.cost import parse_tokens   # lazy: each command loads what it needs (fast start)
    from gpuplan.planner.plans.plan import time_report   # lazy: each command loads what it needs (fast start)

    run_kw = {k: kw.pop(k) for k in RUN_NAMES}
    try:
        load_gpu_catalogs(gpu_catalogs)
        model, setup = setup_from_options(**kw)
        run_kw = _config_run_options(run_kw)
        from gpuplan.planner.memory.fsdp1 import step_setup   # lazy: fast start
        # FSDP version 1, the command line's or a config's (its launcher's default where it names none), plans
        # FSDP1's step where it is modelled, and says so where it is not
        setup, fsdp1_note = step_setup(model, setup, int(run_kw["fsdp_version"]) if run_kw.get("fsdp_version")
                                       else None, not run_kw.get("fsdp_flat_params"),
                                       bool(run_kw.get("fsdp_forward_prefetch")))
        gpu_specs = [resolve_gpu(g) for g in gpus]
        from gpuplan.planner.techniques.fp8 import check_gpu as fp8_check_gpu   # lazy: fast start
        for g in gpu_specs:
            fp8_check_gpu(setup, g)
        est, source = _estimate(model, setup)
        closed = source.value == "closed-form"
        run = plan_run(model, setup, run_kw) if closed else plan_run_refused(run_kw)
        tokens = parse_tokens(dataset_tokens) if dataset_tokens else None
        if (tokens is not None and tokens <= 0) or epochs <= 0:
            raise PlannerError("--dataset-tokens and --epochs must be positive")
        times = [time_report(model, setup, g, tokens, epochs) for g in gpu_specs] if closed else []
    except PlannerError as e:
        raise click.UsageError(str(e)) from None
    fit_rows = fit_rows_for_run(run, est, [fits(est, g) for g in gpu_specs])
    notes = setup_notes(model, setup) + ([fsdp1_note] if fsdp1_note else [])
    from .stack_options import stack_notes   # lazy: each command loads what it needs (fast start)

    notes += stack_notes(click.get_current_context(silent=True))
    from .ranges_report import ranges_block, stack_of   # lazy: each command loads what it needs (fast start)

    ranges = ranges_block(est, setup, fit_rows, *stack_of(click.get_current_context(silent=True), ranges_stack))
    if as_json:
        out = est.to_dict()
        out["notes"] = [*out["notes"], *notes]
        out["fits"] = [{**row, "time": tm} for row, tm in zip(fit_rows, times)] if times else fit_rows
        add_json(run, est, out)
        from .from_config import from_config_block   # lazy: each command loads what it needs (fast start)

        block = from_config_block(click.get_current_context(silent=True))
        if block is not None:
            out["from_config"] = block
        from .stack_options import stack_block   # lazy: each command loads what it needs (fast start)

        stack = stack_block(click.get_current_context(silent=True))
        if stack is not None:   # --stack-versions: the library versions the estimate describes
            out["stack"] = stack
        if ranges is not None:   # the real-GPU range of each figure (planner/plans/ranges.py)
            out["ranges"] = ranges
        click.echo(json.dumps(out, indent=2))
    else:
        from .console import make_console   # at call time: tests swap the console
        from .report import render_estimate, render_time   # lazy: rich loads only to print tables

        console = make_console()
        render_estimate(est, fit_rows, console, extra_notes=notes, ranges=ranges)
        for row in fit_rows:   # the caching allocator's verdict where the tensors fit and its cache does not
            if row.get("allocator_note"):
                console.print(f"{row['gpu']}: {row['allocator_note']}", highlight=False, markup=False)
        render_time(fit_rows, times, console)
        render(run, est, fit_rows, console)
        console.print(f"answered by: {source.value}" + ("" if closed else " (no closed form; see the notes)"))
        for gpu, row in ((g, row) for g, row in zip(gpu_specs, fit_rows) if not row["fits"]):
            _why_not(model, setup, gpu, row, console)
    if check and not all(row["fits"] for row in fit_rows):
        if as_json:
            click.echo(f"does not fit: {', '.join(r['gpu'] for r in fit_rows if not r['fits'])}", err=True)
        raise SystemExit(CHECK_FAILED)


def _estimate(model, setup):
    """(MemoryEstimate, Source): the closed form, or the simulator where the planner has none."""
    from gpuplan.planner import NoClosedForm, Source   # lazy: each command loads what it needs (fast start)
    from gpuplan.planner.memory.estimate import estimate as run_estimate   # lazy: each command loads what it needs (fast start)

    try:
        return run_estimate(model, setup), Source.CLOSED_FORM
    except NoClosedForm:
        from gpuplan.profiler.answer import estimate_or_simulate   # lazy: torch loads only to simulate

        return estimate_or_simulate(model, setup)


def _why_not(model, setup, gpu, row: dict, console) -> None:
    """By how much the run misses `gpu` (its fit row: the run's peak phase, vLLM's share taken), and what
    makes the training step fit (planner.fit, memory-only knobs)."""
    from gpuplan.planner.plans.fit import fit as run_fit   # lazy: each command loads what it needs (fast start)

    from .cli_fit import knob_lines   # lazy: each command loads what it needs (fast start)

    gib = 2**30
    per_gpu = " per GPU" if not setup.parallel.single_gpu else ""
    over = -row["headroom_bytes"]
    phase = row.get("phase")
    at = f" at its {phase} phase" if phase and phase != "step" else ""
    console.print(f"[red]Does not fit {gpu.name}[/]{at} by {over / gib:,.2f} GiB (needs "
                  f"{(gpu.memory_bytes + over) / gib:,.2f} of {gpu.memory_bytes / gib:,.2f} GiB{per_gpu}).",
                  highlight=False)
    r = run_fit(model, setup, gpu, memory_only=True)
    if at and r.fits:
        console.print(f"  the training step fits ({r.device_total_bytes / gib:,.2f} GiB): the {phase} phase is what "
                      f"misses; its notes above say what it holds", highlight=False, markup=False)
        return
    for line in knob_lines(r):
        console.print("  " + line, highlight=False, markup=False)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the presets as a JSON list.")
def models(as_json: bool) -> None:
    """List the bundled model presets: architecture (family, layers, hidden size, attention heads /
    key-value heads, vocabulary, MoE experts) and exact parameter count.

    \b
    Example:
      gpuplan models
      gpuplan models --json
    """
    from gpuplan.planner.io.catalog import load_preset, model_names, resolve_model   # lazy: each command loads what it needs (fast start)

    rows = []
    for name in model_names():
        preset, m = load_preset(name), resolve_model(name)
        rows.append({"name": name, "hf_id": preset.get("hf_id"), "family": m.model_type, "layers": m.n_layers,
                     "hidden": m.hidden, "heads": m.n_heads, "kv_heads": m.n_kv_heads, "head_dim": m.head_dim,
                     "intermediate": m.intermediate, "vocab": m.vocab, "experts": m.n_experts, "top_k": m.top_k,
                     "tied_embeddings": m.tied_embeddings, "params_total": preset["params_total"],
                     "context": m.hf_config.get("max_position_embeddings") or m.hf_config.get("n_positions"),
                     "aliases": preset.get("aliases", []), "source": preset.get("source")})   # where the numbers were seen
        if m.kv_lora_rank:   # DeepSeek's multi-head latent attention: its own head dims
            rows[-1]["mla"] = {"q_lora_rank": m.q_lora_rank, "kv_lora_rank": m.kv_lora_rank,
                               "qk_rope_head_dim": m.qk_rope_head_dim, "qk_nope_head_dim": m.qk_nope_head_dim,
                               "v_head_dim": m.v_head_dim, "shared_experts_intermediate": m.shared_expert_intermediate}
        if m.vision is not None:   # a multimodal wrapper: its vision tower beside the text tower
            rows[-1]["vision"] = {"tower": m.vision.tower.value, "params": m.vision.params,
                                  "image_tokens": m.vision.image_tokens}   # null: Qwen2-VL's dynamic resolution
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table   # lazy: rich loads only to print tables

    from .console import make_console, print_table   # at call time: tests swap the console

    t = Table(title=f"{len(rows)} model presets (data/models/; config numbers from each hf_id's config.json)",
              title_justify="left")
    for col in ("model", "family", "layers", "hidden", "heads/kv", "experts", "vocab", "context", "params", "hf_id"):
        t.add_column(col, justify="left" if col in ("model", "family", "hf_id") else "right")
    for r in rows:
        t.add_row(r["name"], r["family"], str(r["layers"]), f"{r['hidden']:,}", f"{r['heads']}/{r['kv_heads']}",
                  f"{r['experts']} top-{r['top_k']}" if r["experts"] else "-", f"{r['vocab']:,}",
                  f"{r['context']:,}" if r["context"] else "-", f"{r['params_total'] / 1e9:.2f} B", r["hf_id"] or "-")
    print_table(make_console(), t, drop_order=("hf_id", "context", "experts", "family"))


def _config_run_options(run_kw: dict) -> dict:
    """The run-phase options a --from-config file sets (its eval phase), under the command line's."""
    from click.core import ParameterSource   # lazy: each command loads what it needs (fast start)

    from .from_config import FROM_CONFIG_META   # lazy: each command loads what it needs (fast start)

    ctx = click.get_current_context(silent=True)
    cfg = ctx.meta.get(FROM_CONFIG_META) if ctx is not None else None
    if cfg is None:
        return run_kw
    out = dict(run_kw)
    for name in run_kw:
        given = ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
        if name in cfg.options and not given:
            out[name] = cfg.options[name]
    return out
