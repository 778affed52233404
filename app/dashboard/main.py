"""The Streamlit script of `gpuplan dashboard`: navigation, then the chosen page; never a traceback.

Run it with `gpuplan dashboard` (or `streamlit run app/dashboard/main.py`).
"""
from __future__ import annotations

import streamlit as st

from gpuplan.app.dashboard import (page_compare, page_estimate, page_gpus, page_profile, page_recommend, page_watch,
                                  state)
from gpuplan.app.dashboard.widgets import page_css
from gpuplan.planner.specs.errors import PlannerError

PAGES = {
    "estimate": ("Estimate", page_estimate.estimate_ui),
    "compare": ("Compare", page_compare.compare_ui),
    "recommend": ("Recommend", page_recommend.recommend_ui),
    "profile": ("Profile", page_profile.profile_ui),
    "watch": ("Watch", page_watch.watch_ui),
    "gpus": ("GPUs", page_gpus.gpus_ui),
}
DEFAULT_PAGE = "estimate"


def main() -> None:
    st.set_page_config(page_title="gpuplan", page_icon=":material/memory:", layout="wide")
    state.begin_run()
    page_css()
    st.sidebar.title("gpuplan")
    st.sidebar.caption("Will this fine-tuning setup fit, how fast, and what is the cheapest way to run it?")
    titles = {slug: title for slug, (title, _) in PAGES.items()}
    page = state.choose_page(titles, DEFAULT_PAGE)
    unknown = state.unknown_page_message(titles, DEFAULT_PAGE)
    if unknown:
        st.warning(unknown)
    try:
        PAGES[page][1]()
    except PlannerError as e:
        st.error(str(e))
    except Exception as e:  # the app shows one line, never a traceback
        st.error(f"Something went wrong on this page ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
                 "Change an input, or report it with the page's link.")
    state.sync_url(page, DEFAULT_PAGE)
    st.sidebar.caption("The address bar holds this page's inputs: copy it to share the setup.")


if __name__ == "__main__":
    main()
