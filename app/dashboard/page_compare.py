"""Compare: several setups of one model side by side, and sweeps of seq len / batch size as curves."""
from __future__ import annotations

from typing import Any

import streamlit as st

from gpuplan.app import charts
from gpuplan.planner.specs.errors import PlannerError
from gpuplan.planner.io.validate import context_check
from gpuplan.planner.memory.estimate import estimate, fits

from .setup_form import build_setup, model_params, model_ui, setup_params, setup_ui
from .state import Param, Params
from .widgets import figure_ui, gib, gpu_params, gpus_ui, json_download, show_problems

SCOPE = "compare"
MAX_SETUPS = 4
# What each column starts as: the comparisons users ask for first (full vs LoRA vs QLoRA, checkpointing).
STARTING_SETUPS: list[dict[str, Any]] = [{"method": "full"}, {"method": "lora"}, {"method": "qlora"},
                                         {"method": "full", "grad_ckpt": False}]
SWEEPS = {"seq_len": ("sequence length", [2**k for k in range(7, 18)], [512, 1024, 2048, 4096, 8192, 16384]),
          "batch_size": ("micro-batch", [2**k for k in range(0, 9)], [1, 2, 4, 8, 16, 32])}


def _page_params() -> Params:
    return Params(SCOPE, [Param("setups", 3, int, low=1, high=MAX_SETUPS),
                          Param("sweep", "seq_len", str, list(SWEEPS)),
                          *(Param(f"{field}_values", [str(v) for v in default], list, [str(v) for v in options])
                            for field, (_, options, default) in SWEEPS.items())])


def label(i: int, setup) -> str:
    ckpt = "" if setup.checkpointing.value == "full" else ", no ckpt"
    return f"{i + 1}: {setup.method.value}, {setup.precision.value}{ckpt}, b{setup.batch_size}x{setup.seq_len}"


def _setup_columns(n: int, model_arg: str, model) -> list[tuple[str, Any, Any]]:
    """(label, TrainingSetup, MemoryEstimate) of each valid column; errors shown in their column."""
    results = []
    for i, col in enumerate(st.columns(n)):
        sp = setup_params(f"{SCOPE}.s{i + 1}", STARTING_SETUPS[i])
        show_problems(sp.init(url_prefix=f"s{i + 1}."))
        with col:
            st.markdown(f"**Setup {i + 1}**")
            kw = setup_ui(sp, model, compact=True)
            try:
                _, setup = build_setup(model_arg, kw)
                results.append((label(i, setup), setup, estimate(model, setup)))
            except PlannerError as e:
                st.error(str(e))
    return results


def sweep(model, setups, field: str, values: list[int]) -> dict[str, list[tuple[int, int | None]]]:
    """Device total bytes of each setup at each value of `field` (None where the planner refuses it)."""
    series = {}
    for name, setup, _ in setups:
        points = []
        for v in values:
            try:
                varied = setup.with_(**{field: v})
                context_check(model, varied.seq_len)   # GPT-2 past its learned positions: no point
                points.append((v, estimate(model, varied).device_total_bytes))
            except PlannerError:
                points.append((v, None))
        series[name] = points
    return series


def compare_ui() -> None:
    st.header("Compare")
    pp, mp, gp = _page_params(), model_params(SCOPE), gpu_params(SCOPE)
    show_problems(pp.init() + mp.init() + gp.init())
    top = st.columns([2, 2, 1])
    with top[0]:
        model_arg, model = model_ui(mp)
    with top[1]:
        gpus = gpus_ui(gp)
    top[2].number_input("setups", min_value=1, max_value=MAX_SETUPS, step=1, key=pp.key("setups"))
    if model is None:
        return
    results = _setup_columns(pp.get("setups"), model_arg, model)
    if not results:
        return
    capacities = [(g.label, g.memory_bytes) for g in gpus]
    st.subheader("Side by side")
    rows = []
    for name, _, est in results:
        row = {"setup": name, "peak allocated": gib(est.peak_allocated_bytes),
               "peak reserved": gib(est.peak_reserved_bytes), "device total": gib(est.device_total_bytes),
               "peak phase": est.peak_phase.value}
        row.update({g.label: "fits" if fits(est, g)["fits"] else "no" for g in gpus})
        rows.append(row)
    st.dataframe(rows, hide_index=True, key="compare.table")
    figure_ui(charts.setups_stack([(n, {c.value: v for c, v in e.components.items()}) for n, _, e in results],
                                  capacities), "compare-setups")
    json_download([{"label": n, **e.to_dict()} for n, _, e in results], "compare", "Download estimates (JSON)")

    st.subheader("Sweep")
    field = st.selectbox("sweep over", list(SWEEPS), key=pp.key("sweep"), format_func=lambda f: SWEEPS[f][0])
    title, options, _ = SWEEPS[field]
    chosen = st.multiselect(f"{title} values", [str(v) for v in options], key=pp.key(f"{field}_values"))
    values = sorted(int(v) for v in chosen)
    if values:
        figure_ui(charts.sweep_lines(title, sweep(model, results, field, values), capacities), "compare-sweep")
