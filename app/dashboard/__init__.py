"""The Streamlit dashboard (`gpuplan dashboard`): layout only, every number from planner/profiler.

`main.py` is the script Streamlit runs; one module per page; `state.py` keeps each page's inputs
in the URL's query parameters; the figures come from the pure builders in `gpuplan.app.charts`.
"""
