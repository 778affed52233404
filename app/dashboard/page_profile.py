"""Profile: a profiler JSON (`gpuplan profile --json/--output`) or a simulated step run from the page;
estimate vs measured per component, the per-module table and the memory timeline."""
from __future__ import annotations

import json
from typing import Any

import streamlit as st

from gpuplan.app import charts
from gpuplan.app.profile_tables import FIGURE_LABELS, fmt, group_modules, unit_for
from gpuplan.planner import PlannerError
from gpuplan.profiler import Device, measure, profile_json
from gpuplan.profiler.compare import explain

from .setup_form import build_setup, model_params, model_ui, setup_params, setup_ui
from .state import Param, Params
from .widgets import figure_ui, json_download, show_problems

SCOPE = "profile"
SOURCES = {"simulate": "simulate a setup here", "load": "load a profiler JSON"}
REQUIRED_KEYS = ("device", "peak_allocated_bytes", "peak_phase", "components", "phases", "phase_components")
RESULT_KEY = "profile._result.{}"   # one result per source
# Simulating is for small setups on this machine: FakeTensorMode runs every op of the real step.
MAX_STEPS = 5


def _page_params() -> Params:
    return Params(SCOPE, [Param("source", "simulate", str, list(SOURCES)),
                          Param("steps", 2, int, low=1, high=MAX_STEPS),
                          Param("per_module", True, bool)])


def parse_profile(data: bytes) -> dict[str, Any]:
    """The profile payload in an uploaded file; raises ValueError saying what is wrong with it."""
    try:
        payload = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"not valid JSON ({e})") from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(payload, dict) or k not in payload]
    if missing:
        raise ValueError(f"not a gpuplan profile: it lacks {', '.join(missing)}; "
                         "write one with `gpuplan profile --model ... --per-module --compare --output FILE`")
    return payload


def simulate_payload(model_arg: str, kw: dict[str, Any], steps: int, per_module: bool, status) -> dict[str, Any]:
    """What `gpuplan profile --device simulate --compare` prints as JSON: the same measure() and JSON."""
    spec, setup = build_setup(model_arg, kw)
    bar = status.progress(0.0, text="starting...")

    def progress(fraction: float, message: str) -> None:
        bar.progress(fraction, text=message)
        status.update(label=message, state="complete" if fraction >= 1.0 else "running")

    result = measure(spec, setup, Device.SIMULATE, steps=steps, per_module=per_module, progress=progress)
    payload = profile_json(spec, setup, result, with_estimate=True)
    payload["model"] = spec.name
    return payload


def _simulate_ui(pp: Params) -> None:
    mp, sp = model_params(SCOPE), setup_params(SCOPE, {"batch_size": 1, "seq_len": 256})
    show_problems(mp.init() + sp.init())
    with st.sidebar:
        st.markdown("**Setup to simulate**")
        model_arg, model = model_ui(mp)
        kw = setup_ui(sp, model)
        st.number_input("steps", min_value=1, max_value=MAX_STEPS, step=1, key=pp.key("steps"))
        st.checkbox("per-module table and timeline", key=pp.key("per_module"))
        run = st.button("Run simulation", type="primary", disabled=model is None, key="profile.run")
    if not run:
        return
    with st.status("starting...", expanded=False) as status:
        try:
            st.session_state[RESULT_KEY.format("simulate")] = simulate_payload(model_arg, kw, pp.get("steps"), pp.get("per_module"), status)
        except PlannerError as e:
            status.update(label="simulation refused", state="error")
            st.error(str(e))
        except ImportError as e:
            status.update(label="profiler not installed", state="error")
            st.error(f"the profiler needs torch, transformers and peft ({e.name} is missing): "
                     "pip install 'gpuplan[profile]'")


def _load_ui() -> None:
    upload = st.file_uploader("profile JSON (`gpuplan profile --output FILE`)", type=["json"], key="profile.upload")
    if upload is None:
        return
    try:
        payload = parse_profile(upload.getvalue())
        payload.setdefault("model", upload.name)   # a saved profile names its setup, not its model
        st.session_state[RESULT_KEY.format("load")] = payload
    except ValueError as e:
        st.session_state.pop(RESULT_KEY.format("load"), None)
        st.error(f"{upload.name}: {e}")


def figures_ui(p: dict[str, Any]) -> None:
    cols = st.columns(3)
    unit = unit_for(p.get(k) for k in FIGURE_LABELS)
    for col, (key, label) in zip(cols, FIGURE_LABELS.items()):
        value = p.get(key)
        col.metric(label, "not measurable here" if value is None else f"{fmt(value, unit)} {unit[0]}")


def comparison_ui(c: dict[str, Any]) -> None:
    figure_ui(charts.compare_bars(c), "profile-compare")
    rows = c["figures"] + c["components"] + c["phases"]
    unit = unit_for(v for r in rows for v in (r["estimate_bytes"], r["measured_bytes"]))
    st.dataframe([{"": FIGURE_LABELS.get(r["name"], r["name"]),
                   f"estimate {unit[0]}": None if r["estimate_bytes"] is None else r["estimate_bytes"] / unit[1],
                   f"measured {unit[0]}": None if r["measured_bytes"] is None else r["measured_bytes"] / unit[1],
                   "error %": r["error_pct"]} for r in rows], hide_index=True, key="profile.compare_table")
    for line in explain(c):
        st.caption(line)


def modules_ui(per_module: dict[str, Any]) -> None:
    groups = group_modules(per_module["modules"])
    unit = unit_for([per_module["param_bytes"], per_module["saved_bytes"]])
    st.markdown(f"**Per module** ({unit[0]}, summed over repeated layers; saved = activations kept for backward)")
    st.dataframe([{"module": g["name"], "type": g["type"], "copies": g["count"],
                   f"weights {unit[0]}": g["param_bytes"] / unit[1], f"saved {unit[0]}": g["saved_bytes"] / unit[1]}
                  for g in groups], hide_index=True, key="profile.modules_table")
    if per_module.get("timeline"):
        figure_ui(charts.timeline(per_module["timeline"]), "profile-timeline")


def result_ui(p: dict[str, Any]) -> None:
    s = p.get("setup", {})
    st.subheader(f"{p.get('model', 'profile')} on {p['device']}: {s.get('method', '?')}, {s.get('precision', '?')}, "
                 f"batch {s.get('batch_size', '?')} x {s.get('seq_len', '?')}")
    figures_ui(p)
    figure_ui(charts.phase_stack(p), "profile-phases")
    if "comparison" in p:
        comparison_ui(p["comparison"])
    else:
        st.info("This file holds no estimate to compare with: write it with `gpuplan profile --compare`.")
    if p.get("per_module"):
        modules_ui(p["per_module"])
    for note in p.get("notes", []):
        st.caption(f"note: {note}")
    json_download(p, "profile", "Download profile (JSON)")


def profile_ui() -> None:
    st.header("Profile")
    pp = _page_params()
    show_problems(pp.init())
    source = st.radio("Source", list(SOURCES), key=pp.key("source"), format_func=SOURCES.__getitem__, horizontal=True)
    if source == "simulate":
        st.caption("The real transformers/peft training step under FakeTensorMode on this machine's CPU: "
                   "no memory is allocated; small setups take seconds. Choose the setup in the sidebar.")
        _simulate_ui(pp)
    else:
        _load_ui()
    if RESULT_KEY.format(source) in st.session_state:
        result_ui(st.session_state[RESULT_KEY.format(source)])
