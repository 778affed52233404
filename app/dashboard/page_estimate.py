"""Estimate: one model and setup -> the three figures, components per phase, fit per GPU, assumptions."""
from __future__ import annotations

import streamlit as st

from gpuplan.app import charts
from gpuplan.app.options import setup_notes
from gpuplan.planner.specs.errors import PlannerError
from gpuplan.planner.memory.estimate import estimate, fits

from .setup_form import build_setup, model_params, model_ui, setup_params, setup_ui
from .widgets import figure_ui, gib, gpu_params, gpus_ui, json_download, metrics_ui, show_problems

SCOPE = "estimate"


def figures_ui(est) -> None:
    metrics_ui([
        ("peak allocated", gib(est.peak_allocated_bytes), {"help": "torch.cuda.max_memory_allocated()"}),
        ("peak reserved", gib(est.peak_reserved_bytes), {"help": "torch.cuda.max_memory_reserved()"}),
        ("device total", gib(est.device_total_bytes), {"help": "what nvidia-smi shows; decides the fit"}),
        ("parameters", f"{est.params.total / 1e9:.2f} B",
         {"delta": f"{est.trainable_params / 1e6:,.1f} M trainable", "delta_color": "off"}),
    ])


def fit_rows(est, gpus) -> list[dict]:
    return [{"GPU": g.label, "memory": gib(r["memory_bytes"]), "fits": "yes" if r["fits"] else "no",
             "headroom": gib(r["headroom_bytes"])} for g, r in ((g, fits(est, g)) for g in gpus)]


def assumptions_ui(est, extra_notes: list[str] = ()) -> None:
    with st.expander("Assumptions and notes", expanded=False):
        for a in est.assumptions:
            value = gib(a.value) if a.unit == "bytes" else f"{a.value} ({a.unit})"
            st.markdown(f"- **{a.name}** = {value}: {a.source}")
        for note in [*est.notes, *extra_notes]:
            st.markdown(f"- note: {note}")
        st.json(est.setup, expanded=False)


def estimate_ui() -> None:
    st.header("Estimate")
    mp, sp, gp = model_params(SCOPE), setup_params(SCOPE), gpu_params(SCOPE)
    show_problems(mp.init() + sp.init() + gp.init())
    inputs, out = st.columns([1, 2], gap="large")
    with inputs:
        model_arg, model = model_ui(mp)
        kw = setup_ui(sp, model)
        gpus = gpus_ui(gp)
    if model is None:
        return
    try:
        model, setup = build_setup(model_arg, kw)
        est = estimate(model, setup)
    except PlannerError as e:
        out.error(str(e))
        return
    with out:
        st.subheader(f"{model.name}: {setup.method.value}, {setup.precision.value}, "
                     f"batch {setup.batch_size} x {setup.seq_len}")
        figures_ui(est)
        capacities = [(g.label, g.memory_bytes) for g in gpus]
        figure_ui(charts.phase_stack(est.to_dict(), capacities), "estimate-phases")
        rows = fit_rows(est, gpus)
        if rows:
            st.dataframe(rows, hide_index=True, key="estimate.fit_table")
        notes = setup_notes(model, setup)
        for note in notes:
            st.warning(note)
        assumptions_ui(est, notes)
        json_download({**est.to_dict(), "fits": [fits(est, g) for g in gpus]}, "estimate",
                      "Download estimate (JSON, as `gpuplan estimate --json`)")
