"""Table rows shared by the CLI's `--csv` and the dashboard's downloads: one dict per GPU or plan,
the same columns in both (GiB and $ rounded here, at the display edge). No streamlit, no rich."""
from __future__ import annotations

import csv
import io
from typing import Any

GIB = 2**30
TFLOP = 1e12


def catalog_rows() -> list[dict[str, Any]]:
    """One row per GPU with its cheapest on-demand price; the per-GiB and per-TFLOP prices are that
    price divided by the card's memory and its dense bf16 peak (the catalog's own figures)."""
    from gpuplan.planner.io.catalog import _gpu_catalog   # lazy: each command loads what it needs (fast start)

    rows = []
    for g in _gpu_catalog()["gpus"]:
        prices = [p for p in g.get("prices", []) if p.get("usd_per_hour") is not None]
        cheapest = min(prices, key=lambda p: p["usd_per_hour"], default=None)
        bf16 = g.get("peak_flops", {}).get("bf16")
        usd = cheapest["usd_per_hour"] if cheapest else None
        mem = g["memory_bytes"] / GIB
        rows.append({
            "name": g["name"], "vendor": g.get("vendor", ""), "architecture": g.get("architecture", ""),
            "memory_gib": round(mem, 2),
            "bf16_tflops": None if bf16 is None else round(bf16 / TFLOP, 1),
            "bandwidth_gb_per_s": round(g.get("memory_bandwidth_bytes_per_s", 0) / 1e9),
            "usd_per_hour": usd, "cheapest_provider": cheapest["provider"] if cheapest else "",
            "providers": ", ".join(sorted(p["provider"] for p in prices)),
            "usd_per_gib_hour": None if usd is None else round(usd / mem, 4),
            "usd_per_tflops_hour": None if usd is None or not bf16 else round(usd / (bf16 / TFLOP), 5),
            "purchase_usd": g.get("purchase_usd"),
            "purchase_usd_per_gib": None if not g.get("purchase_usd") else round(g["purchase_usd"] / mem, 1),
        })
    return rows


def plan_row(p, pareto: bool) -> dict[str, Any]:
    """One table row of a Plan (GiB only here, at the display edge)."""
    s = p.setup
    return {"GPU": p.gpu.name, "GPUs": p.gpus, "method": s.method.value, "precision": s.precision.value,
            "optimizer": s.optimizer.value, "micro-batch": s.batch_size, "grad-accum": s.grad_accum,
            "checkpointing": s.checkpointing.value, "hours": round(p.hours, 3),
            "usd": round(p.usd, 2), "provider": p.best.provider if p.best else None,
            "tokens/s": round(p.step.tokens_per_s), "memory GiB": round(p.device_total_bytes / GIB, 2),
            "headroom GiB": round(p.headroom_bytes / GIB, 2), "pareto": pareto, "plan": p.describe()}


def plan_rows(rec, frontier_only: bool = False) -> list[dict[str, Any]]:
    """The rows of a Recommendation's qualifying plans (or its frontier alone), cheapest first."""
    frontier = {p.describe() for p in rec.frontier}   # describe() names GPU, count and every knob
    rows = [plan_row(p, p.describe() in frontier) for p in rec.plans]
    if frontier_only:
        rows = [r for r in rows if r["pareto"]]
    return sorted(rows, key=lambda r: (r["usd"], r["hours"]))


def to_csv(rows: list[dict[str, Any]]) -> str:
    """RFC 4180 CSV with a header row (empty for no rows); None becomes an empty field."""
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()
