"""`gpuplan dashboard`: the Streamlit command line it hands over to."""
import os

from click.testing import CliRunner

from gpuplan.app import cli_dashboard
from gpuplan.app.cli import cli


def test_dashboard_execs_streamlit_on_the_script(monkeypatch):
    seen = []
    monkeypatch.setattr(os, "execv", lambda path, argv: seen.append(argv))
    r = CliRunner().invoke(cli, ["dashboard", "--port", "8599", "--headless"])
    assert r.exit_code == 0, r.output
    (argv,) = seen
    assert argv[1:5] == ["-m", "streamlit", "run", str(cli_dashboard.SCRIPT)]
    assert cli_dashboard.SCRIPT.is_file()
    opts = dict(zip(argv[5::2], argv[6::2]))
    assert opts["--server.port"] == "8599" and opts["--server.headless"] == "true"
    assert opts["--server.address"] == "localhost" and opts["--browser.gatherUsageStats"] == "false"
    assert "http://localhost:8599" in r.output


def test_dashboard_bad_port_exit_2():
    r = CliRunner().invoke(cli, ["dashboard", "--port", "70000"])
    assert r.exit_code == 2 and "70000" in r.output


def test_dashboard_gpu_catalog_checked_then_handed_to_the_server(monkeypatch, tmp_path):
    from gpuplan.planner.io.catalog import GPU_CATALOG_ENV

    monkeypatch.setattr(os, "execv", lambda path, argv: None)
    monkeypatch.setenv(GPU_CATALOG_ENV, "")   # restored after the test, whatever the command sets
    bad = tmp_path / "bad.json"
    bad.write_text('{"gpus": [{"name": "h100", "prices": {"aws": 3}}]}')
    r = CliRunner().invoke(cli, ["dashboard", "--headless", "--gpu-catalog", str(bad)])
    assert r.exit_code == 2 and "prices" in r.output and "Traceback" not in r.output
    good = tmp_path / "good.json"
    good.write_text('{"gpus": [{"name": "h100", "prices": [{"provider": "lab", "usd_per_hour": 1.0}]}]}')
    r = CliRunner().invoke(cli, ["dashboard", "--headless", "--gpu-catalog", str(good)])
    assert r.exit_code == 0 and os.environ[GPU_CATALOG_ENV] == str(good)
