"""Recommend: constraints in; the cheapest and fastest plans, the cost-vs-time Pareto scatter and a
sortable, downloadable table of plans out. The search is `planner.recommend.recommend`."""
from __future__ import annotations


import streamlit as st

from gpuplan.app import charts
from gpuplan.planner.io.catalog import gpu_names
from gpuplan.planner.specs.enums import Method
from gpuplan.planner.specs.errors import PlannerError

from gpuplan.app.rows import plan_rows, to_csv
from .setup_form import model_params, model_ui
from .state import Param, Params
from .widgets import figure_ui, gib, json_download, metrics_ui, show_problems
from gpuplan.planner.io.catalog import all_gpus
from gpuplan.planner.io.catalog import resolve_model
from gpuplan.planner.plans.cost import parse_tokens
from gpuplan.planner.plans.recommend import recommend, search_from_inputs

SCOPE = "recommend"
TABLES = {"frontier": "Pareto frontier", "all": "every qualifying plan"}


def _providers() -> list[str]:

    return sorted({p.provider for g in all_gpus() for p in g.prices})


def _page_params() -> Params:
    return Params(SCOPE, [
        Param("tokens", "100M", str), Param("epochs", 1.0, float, low=0.01, high=1000),
        Param("methods", Method.values(), list, Method.values()),
        Param("max_gpus", 8, int, low=1, high=512), Param("deadline", "", str), Param("budget", "", str),
        Param("providers", [], list, _providers()), Param("gpus", [], list, gpu_names()),
        Param("spot", False, bool), Param("seq_len", 1024, int, low=1, high=4 * 1024 * 1024),
        Param("global_batch", 64, int, low=1, high=1 << 20), Param("table", "frontier", str, list(TABLES)),
    ])


@st.cache_resource(max_entries=16, show_spinner=False)
def run_recommend(model_arg: str, tokens: str, epochs: float, methods: tuple[str, ...], max_gpus: int,
                  deadline: str, budget: str, providers: tuple[str, ...], gpus: tuple[str, ...], spot: bool,
                  seq_len: int, global_batch: int):
    """The planner's Recommendation for these inputs (cached: a search takes about a second)."""

    c, space = search_from_inputs(methods, max_gpus, deadline, budget, providers, gpus, spot, seq_len, global_batch)
    return recommend(resolve_model(model_arg), parse_tokens(tokens), epochs, c, space)


def _inputs(pp: Params) -> None:
    a, b, c = st.columns(3)
    a.text_input("dataset tokens per epoch", key=pp.key("tokens"), help="200M, 1.5B, 2e9")
    a.number_input("epochs", min_value=0.01, max_value=1000.0, step=0.5, key=pp.key("epochs"))
    a.multiselect("methods", Method.values(), key=pp.key("methods"))
    b.text_input("deadline", key=pp.key("deadline"), placeholder="none (e.g. 48h, 2d)")
    b.text_input("budget (USD)", key=pp.key("budget"), placeholder="none (e.g. 500)")
    b.number_input("max GPUs", min_value=1, max_value=512, step=1, key=pp.key("max_gpus"))
    c.multiselect("providers", _providers(), key=pp.key("providers"), placeholder="all")
    c.multiselect("GPU types", gpu_names(), key=pp.key("gpus"), placeholder="all in the catalog")
    c.checkbox("spot prices where recorded", key=pp.key("spot"))
    with st.expander("Sequence and batch"):
        st.number_input("seq len", min_value=1, max_value=4 * 1024 * 1024, step=256, key=pp.key("seq_len"))
        st.number_input("global batch (sequences per optimizer step)", min_value=1, max_value=1 << 20, step=8,
                        key=pp.key("global_batch"))


def _best_ui(title: str, p) -> None:
    st.markdown(f"**{title}**: {p.describe()}")
    metrics_ui([
        (f"{title}: time", f"{p.hours:,.2f} h", {}),
        (f"{title}: cost", f"${p.usd:,.2f}", {"help": f"at {p.best.provider}" if p.best else None}),
        (f"{title}: tokens/s", f"{p.step.tokens_per_s:,.0f}", {}),
        (f"{title}: memory per GPU", gib(p.device_total_bytes),
         {"delta": f"{gib(p.headroom_bytes)} free", "delta_color": "off"}),
    ], per_row=4)
    st.caption(p.why)


def recommend_ui() -> None:
    st.header("Recommend")
    pp, mp = _page_params(), model_params(SCOPE)
    show_problems(pp.init() + mp.init())
    model_arg, model = model_ui(mp)
    _inputs(pp)
    if model is None:
        return
    if not pp.get("methods"):
        st.error("Choose at least one method.")
        return
    g = pp.get
    try:
        with st.spinner("searching GPU type x count x sharding x method x precision x optimizer x micro-batch..."):
            rec = run_recommend(model_arg, g("tokens").strip(), float(g("epochs")), tuple(g("methods")), g("max_gpus"),
                                g("deadline").strip(), g("budget").strip(), tuple(g("providers")), tuple(g("gpus")),
                                g("spot"), g("seq_len"), g("global_batch"))
    except PlannerError as e:
        st.error(str(e))
        return
    st.caption(rec.counts() + ".")
    for note in rec.notes:
        st.caption(f"note: {note}")
    if rec.cheapest is None:
        st.warning("No plan meets these constraints.")
        for h in rec.closest:
            st.markdown(f"- **{h.knob}**: {h.message}")
        return
    _best_ui("Cheapest", rec.cheapest)
    _best_ui("Fastest", rec.fastest)
    rows = plan_rows(rec)
    points = [{"hours": r["hours"], "usd": r["usd"], "plan": r["plan"], "pareto": r["pareto"]} for r in rows]
    figure_ui(charts.pareto_scatter(points, "hours", "usd", "plan", "hours", "USD"), "recommend-pareto")
    table = st.radio("table", list(TABLES), key=pp.key("table"), format_func=TABLES.__getitem__, horizontal=True)
    shown = [r for r in rows if r["pareto"]] if table == "frontier" else rows
    st.dataframe(shown, hide_index=True, key="recommend.table")
    cols = st.columns(2)
    with cols[0]:
        st.download_button("Download table (CSV)", data=to_csv(shown), file_name="gpuplan-plans.csv", mime="text/csv",
                           key="dl.recommend.csv", on_click="ignore")
    with cols[1]:
        json_download(rec.to_dict(), "recommend", "Download recommendation (JSON)")
