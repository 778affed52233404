"""Small pieces every page uses: a downloadable figure, GiB text, the GPU picker, a JSON download."""
from __future__ import annotations

import json
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from gpuplan.planner.io.catalog import gpu_names, resolve_gpu

from .state import Param, Params

GIB = 2**30
DEFAULT_GPUS = ["rtx-4090", "a100-sxm-80gb", "h100-sxm-80gb"]


def gib(nbytes: float | None, missing: str = "n/a") -> str:
    return missing if nbytes is None else f"{nbytes / GIB:,.2f} GiB"


def figure_ui(fig: go.Figure, name: str) -> None:
    """The chart (its camera button saves a PNG) and a button that downloads it as standalone HTML."""
    st.plotly_chart(fig, key=f"fig.{name}",
                    config={"displaylogo": False, "toImageButtonOptions": {"filename": f"gpuplan-{name}", "scale": 2}})
    st.download_button("Download figure (HTML)", data=lambda: fig.to_html(include_plotlyjs=True),
                       file_name=f"gpuplan-{name}.html", mime="text/html", key=f"dl.{name}", on_click="ignore")


def json_download(data: Any, name: str, label: str = "Download JSON") -> None:
    st.download_button(label, data=json.dumps(data, indent=2), file_name=f"gpuplan-{name}.json",
                       mime="application/json", key=f"dl.{name}.json", on_click="ignore")


def gpu_params(scope: str) -> Params:
    return Params(scope, [Param("gpus", DEFAULT_GPUS, list, gpu_names())])


def gpus_ui(gp: Params, container=st) -> list:
    """The chosen GpuSpecs (catalog names only: nothing else can be picked)."""
    names = container.multiselect("GPUs to fit against", gpu_names(), key=gp.key("gpus"),
                                  help="`gpuplan gpus` lists the catalog")
    return [resolve_gpu(n) for n in names]


def show_problems(problems: list[str]) -> None:
    for p in problems:
        st.warning(p)


# Streamlit's metric value is one line cut with an ellipsis when its column is narrow
# (`text-overflow: ellipsis` on [data-testid="stMetricValue"]): let it shrink with the window instead.
METRIC_CSS = """<style>
[data-testid="stMetricValue"], [data-testid="stMetricValue"] > div {
  overflow: visible !important; text-overflow: clip !important; white-space: nowrap !important;
  font-size: clamp(1.1rem, 1.9vw, 2.0rem) !important;
}
</style>"""


# Streamlit's multiselect chips cap their width and cut long names with an ellipsis ("h200-sxm-1…"):
# let each chip be as wide as its name (the select wraps them onto more lines instead)
CHIP_CSS = """<style>
[data-testid="stMultiSelectTagsContainer"] [data-tag], [data-testid="stMultiSelectTagsContainer"] [data-tag] span {
  max-width: none !important; overflow: visible !important; text-overflow: clip !important;
}
</style>"""


def page_css() -> None:
    """CSS every page needs: whole multiselect chips."""
    st.markdown(CHIP_CSS, unsafe_allow_html=True)


def metrics_ui(tiles: list[tuple[str, str, dict]], per_row: int = 2, container=st) -> None:
    """Metric tiles (label, value, st.metric kwargs), `per_row` to a row so that number and unit stay whole."""
    container.markdown(METRIC_CSS, unsafe_allow_html=True)
    for start in range(0, len(tiles), per_row):
        cols = container.columns(per_row)
        for col, (label, value, kw) in zip(cols, tiles[start:start + per_row]):
            col.metric(label, value, **kw)
