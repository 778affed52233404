"""Recommend: constraints in, cheapest/fastest plans and the cost-vs-time Pareto scatter out."""
from __future__ import annotations

import streamlit as st


def recommend_ui() -> None:
    st.header("Recommend")
    st.info("The recommender (planner/recommend.py) is not part of this installation yet.")
