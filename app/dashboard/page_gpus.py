"""GPUs: the catalog (`data/gpus.json`), filterable, with what a GiB and a TFLOP/s cost per hour."""
from __future__ import annotations

import csv
import io
from typing import Any

import streamlit as st

from gpuplan.app import charts
from gpuplan.planner.io.catalog import _gpu_catalog

from .state import Param, Params
from .widgets import figure_ui, show_problems

SCOPE = "gpus"
GIB = 2**30
TFLOP = 1e12


def catalog_rows() -> list[dict[str, Any]]:
    """One row per GPU with its cheapest on-demand price; the per-GiB and per-TFLOP prices are that
    price divided by the card's memory and its dense bf16 peak (the catalog's own figures)."""
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


def filter_rows(rows: list[dict[str, Any]], vendors: list[str], min_memory_gib: float, providers: list[str],
                text: str) -> list[dict[str, Any]]:
    out = [r for r in rows if r["memory_gib"] >= min_memory_gib and (not vendors or r["vendor"] in vendors)]
    if providers:
        out = [r for r in out if set(r["providers"].split(", ")) & set(providers)]
    if text:
        out = [r for r in out if text.lower() in r["name"].lower() or text.lower() in r["architecture"].lower()]
    return out


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()


def gpus_ui() -> None:
    st.header("GPUs")
    rows = catalog_rows()
    vendors = sorted({r["vendor"] for r in rows})
    providers = sorted({p for r in rows for p in r["providers"].split(", ") if p})
    top = max(r["memory_gib"] for r in rows)
    pp = Params(SCOPE, [Param("vendor", [], list, vendors), Param("min_memory", 0, int, low=0, high=int(top)),
                        Param("provider", [], list, providers), Param("q", "", str)])
    show_problems(pp.init())
    cols = st.columns(4)
    cols[0].multiselect("vendor", vendors, key=pp.key("vendor"), placeholder="all")
    cols[1].slider("memory at least (GiB)", 0, int(top), step=8, key=pp.key("min_memory"))
    cols[2].multiselect("rented at", providers, key=pp.key("provider"), placeholder="any provider")
    cols[3].text_input("name contains", key=pp.key("q"))
    shown = filter_rows(rows, pp.get("vendor"), pp.get("min_memory"), pp.get("provider"), pp.get("q").strip())
    st.caption(f"{len(shown)} of {len(rows)} GPUs. Prices: cheapest on-demand list price in the catalog, per GPU-hour "
               f"(as of {_gpu_catalog().get('as_of', '?')}; each with its source in data/gpus.json). "
               "Memory as the device reports it (GiB = 2^30 bytes); TFLOP/s dense bf16.")
    if not shown:
        st.info("No GPU matches these filters.")
        return
    st.dataframe(shown, hide_index=True, key="gpus.table", column_config={
        "memory_gib": st.column_config.NumberColumn("memory GiB", format="%.1f"),
        "usd_per_hour": st.column_config.NumberColumn("$/GPU-h", format="$%.2f"),
        "usd_per_gib_hour": st.column_config.NumberColumn("$ per GiB-h", format="$%.4f"),
        "usd_per_tflops_hour": st.column_config.NumberColumn("$ per TFLOP/s-h", format="$%.5f"),
        "purchase_usd": st.column_config.NumberColumn("purchase $", format="$%d"),
    })
    st.download_button("Download table (CSV)", data=to_csv(shown), file_name="gpuplan-gpus.csv", mime="text/csv",
                       key="dl.gpus.csv", on_click="ignore")
    figure_ui(charts.gpu_scatter(shown), "gpus-price")
