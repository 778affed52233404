"""`gpuplan dashboard`: starts the Streamlit app (app/dashboard/main.py) on localhost."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

SCRIPT = Path(__file__).parent / "dashboard" / "main.py"


class UserError(click.ClickException):
    """Bad input: one line on stderr, exit status 2, no traceback."""

    exit_code = 2


def streamlit_argv(port: int, host: str, headless: bool) -> list[str]:
    """The `python -m streamlit run` command line for the dashboard."""
    return [sys.executable, "-m", "streamlit", "run", str(SCRIPT),
            "--server.port", str(port), "--server.address", host,
            "--server.headless", "true" if headless else "false",
            "--browser.gatherUsageStats", "false",   # no network: the app never phones home
            "--client.toolbarMode", "minimal",
            "--client.showErrorDetails", "none",     # pages catch errors themselves; never a traceback
            "--theme.base", "light"]


@click.command()
@click.option("--port", type=click.IntRange(1, 65535), default=8501, show_default=True)
@click.option("--host", default="localhost", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--headless", is_flag=True, help="Do not open a browser (servers, tests).")
@click.option("--gpu-catalog", "gpu_catalogs", multiple=True, type=click.Path(dir_okay=False),
              help="Your own GPU file (JSON/YAML, as data/gpus.json), for every page (repeatable; also "
                   "$GPUPLAN_GPU_CATALOG).")
def dashboard(port: int, host: str, headless: bool, gpu_catalogs: tuple[str, ...]) -> None:
    """Open the dashboard in the browser: estimate, compare, recommend, profile, watch, GPU catalog.

    \b
    Example:
      gpuplan dashboard --port 8501
    """
    try:
        import plotly  # noqa: F401
        import streamlit  # noqa: F401
    except ImportError as e:
        raise UserError(f"the dashboard needs streamlit and plotly ({e.name} is missing): "
                        "pip install 'gpuplan[app]'") from None
    if gpu_catalogs:   # checked here (one line, exit 2), then handed to the server as the catalog's env var
        from gpuplan.planner.io.catalog import GPU_CATALOG_ENV   # lazy: each command loads what it needs (fast start)
        from gpuplan.planner.specs.errors import PlannerError   # lazy: each command loads what it needs (fast start)

        from .cli_gpus import load_gpu_catalogs   # lazy: each command loads what it needs (fast start)

        try:
            load_gpu_catalogs(gpu_catalogs)
        except PlannerError as e:
            raise UserError(str(e)) from None
        paths = [os.path.abspath(os.path.expanduser(c)) for c in gpu_catalogs]
        os.environ[GPU_CATALOG_ENV] = os.pathsep.join([*filter(None, [os.environ.get(GPU_CATALOG_ENV)]), *paths])
    click.echo(f"gpuplan dashboard on http://{host}:{port}  (Ctrl-C stops it)", err=True)
    argv = streamlit_argv(port, host, headless)
    os.execv(argv[0], argv)   # Streamlit's process replaces this one: signals reach it directly
