"""`gpuplan gpus`: the GPU catalog as a table (memory, TFLOP/s, bandwidth, interconnect, prices)."""
from __future__ import annotations

import json

import click

from gpuplan.planner.specs.errors import PlannerError

gpu_catalog_option = click.option(
    "--gpu-catalog", "gpu_catalogs", multiple=True, type=click.Path(dir_okay=False),
    help="Your own GPU file (JSON/YAML, as data/gpus.json): adds GPUs or overrides fields and prices "
         "(repeatable; also $GPUPLAN_GPU_CATALOG).")


def load_gpu_catalogs(paths: tuple[str, ...]) -> None:
    """Overlay the --gpu-catalog files for this command only: when the command ends (in-process
    callers: tests, the README generator) the catalog is as before."""
    from gpuplan.planner.io.catalog import add_gpu_catalog   # lazy: each command loads what it needs (fast start)

    ctx = click.get_current_context(silent=True)
    for p in paths:
        add_gpu_catalog(p)
        if ctx is not None:
            ctx.call_on_close(lambda p=p: _remove_gpu_catalog(p))


def _remove_gpu_catalog(path: str) -> None:
    from gpuplan.planner.io.catalog import remove_gpu_catalog   # lazy: each command loads what it needs (fast start)

    remove_gpu_catalog(path)


@click.command()
@gpu_catalog_option
@click.option("--prices/--no-prices", default=True, show_default=True, help="Show $/GPU-hour per provider.")
@click.option("--json", "as_json", is_flag=True, help="Print the catalog entries as JSON.")
@click.option("--csv", "as_csv", is_flag=True,
              help="Print one CSV row per GPU (the dashboard's GPUs table: cheapest price, $ per GiB-hour and per TFLOP/s-hour).")
def gpus(gpu_catalogs: tuple[str, ...], prices: bool, as_json: bool, as_csv: bool) -> None:
    """List the GPU catalog: memory as the device reports it, dense TFLOP/s, bandwidth,
    interconnect, power, purchase price and $/GPU-hour per provider (on-demand / spot).

    \b
    Example:
      gpuplan gpus
      gpuplan gpus --gpu-catalog my-prices.yaml
      gpuplan gpus --csv > gpus.csv
    """
    from gpuplan.planner.io.catalog import all_gpus   # lazy: each command loads what it needs (fast start)

    try:
        load_gpu_catalogs(gpu_catalogs)
        specs = all_gpus()
    except PlannerError as e:
        raise click.UsageError(str(e)) from None
    if as_json and as_csv:
        raise click.UsageError("--json and --csv are two output formats: give one")
    if as_json:
        click.echo(json.dumps([g.raw for g in specs], indent=2))
        return
    if as_csv:
        from .rows import catalog_rows, to_csv   # lazy: each command loads what it needs (fast start)

        click.echo(to_csv(catalog_rows()), nl=False)
        return
    from rich.table import Table   # lazy: each command loads what it needs (fast start)

    from .console import make_console, print_table   # lazy: each command loads what it needs (fast start)

    console = make_console()
    t = Table(title="GPU catalog (dense peak TFLOP/s; memory as nvidia-smi reports it)", title_justify="left")
    for col in ("GPU", "GiB", "bf16", "fp16", "fp32", "fp8", "TB/s", "link GB/s", "W", "buy $"):
        t.add_column(col, justify="left" if col == "GPU" else "right")

    def tf(x: float | None) -> str:
        return f"{x / 1e12:,.0f}" if x else "-"

    for g in specs:
        f = g.raw["peak_flops"]
        t.add_row(g.name, f"{g.memory_bytes / 2**30:.1f}", tf(f.get("bf16")), tf(f.get("fp16")), tf(f.get("fp32")),
                  tf(f.get("fp8")), f"{g.memory_bandwidth / 1e12:.2f}",
                  f"{g.interconnect_kind} {g.interconnect_bandwidth / 1e9:.0f}", str(g.power_watts),
                  f"{g.purchase_usd:,.0f}" if g.purchase_usd else "-")
    print_table(console, t, drop_order=("fp8", "fp16", "W", "buy $", "fp32", "link GB/s"))
    if prices:
        pt = Table(title="$/GPU-hour: on-demand (spot) per provider, cheapest first; * = verified against a dated "
                         "public price table", title_justify="left")
        pt.add_column("GPU")
        pt.add_column("prices")
        for g in specs:
            pt.add_row(g.name, ", ".join(f"{p.provider} {p.usd_per_hour:.2f}"
                                         + (f" ({p.spot_usd_per_hour:.2f})" if p.spot_usd_per_hour else "")
                                         + ("*" if p.verified else "")
                                         for p in sorted(g.prices, key=lambda p: p.usd_per_hour)))
        print_table(console, pt, wrap=("prices",))
    click.echo("Sources and dates per figure: gpuplan gpus --json (source, as_of); unstarred prices are "
               "recalled list prices, not verified.", err=True)
