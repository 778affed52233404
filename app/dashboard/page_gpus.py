"""GPUs: the catalog (`data/gpus.json`), filterable, with what a GiB and a TFLOP/s cost per hour."""
from __future__ import annotations

from typing import Any

import streamlit as st

from gpuplan.app import charts
from gpuplan.app.rows import catalog_rows, to_csv
from gpuplan.planner.io.catalog import _gpu_catalog

from .state import Param, Params
from .widgets import figure_ui, show_problems

SCOPE = "gpus"


def filter_rows(rows: list[dict[str, Any]], vendors: list[str], min_memory_gib: float, providers: list[str],
                text: str) -> list[dict[str, Any]]:
    out = [r for r in rows if r["memory_gib"] >= min_memory_gib and (not vendors or r["vendor"] in vendors)]
    if providers:
        out = [r for r in out if set(r["providers"].split(", ")) & set(providers)]
    if text:
        out = [r for r in out if text.lower() in r["name"].lower() or text.lower() in r["architecture"].lower()]
    return out


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
