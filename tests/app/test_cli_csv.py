"""`gpuplan gpus --csv` and `gpuplan recommend --csv`: the dashboard's downloadable tables from the CLI."""
import csv
import io
import json

import pytest
from click.testing import CliRunner

from gpuplan.app.cli import cli
from gpuplan.app.rows import catalog_rows, to_csv
from gpuplan.planner.io.catalog import all_gpus

RECOMMEND = ("recommend", "--model", "qwen2.5-1.5b", "--dataset-tokens", "50M", "--max-gpus", "2",
             "--gpu-types", "rtx-4090,l4,a100-40gb")


@pytest.fixture
def run():
    runner = CliRunner()
    return lambda *args: runner.invoke(cli, list(args))


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_gpus_csv_has_a_row_per_catalog_gpu_with_the_dashboards_columns(run):
    r = run("gpus", "--csv")
    assert r.exit_code == 0, r.output
    rows = _rows(r.stdout)
    assert [row["name"] for row in rows] == [g.name for g in all_gpus()]
    assert list(rows[0]) == list(catalog_rows()[0])
    h100 = next(row for row in rows if row["name"] == "h100-sxm-80gb")
    assert float(h100["memory_gib"]) == pytest.approx(next(g for g in all_gpus() if g.name == "h100-sxm-80gb")
                                                      .memory_bytes / 2**30, abs=0.01)
    cheapest = float(h100["usd_per_hour"])
    assert float(h100["usd_per_gib_hour"]) == pytest.approx(cheapest / float(h100["memory_gib"]), rel=1e-3)


def test_recommend_csv_lists_every_qualifying_plan_cheapest_first_and_marks_the_frontier(run):
    as_json = json.loads(run(*RECOMMEND, "--json").stdout)
    r = run(*RECOMMEND, "--csv")
    assert r.exit_code == 0, r.output
    rows = _rows(r.stdout)
    assert len(rows) == as_json["fitting"] > 0
    usd = [float(row["usd"]) for row in rows]
    assert usd == sorted(usd)
    assert sum(row["pareto"] == "True" for row in rows) == len(as_json["frontier"])
    assert float(rows[0]["usd"]) == pytest.approx(as_json["cheapest"]["usd"], abs=0.01)


@pytest.mark.parametrize("args", [("gpus", "--csv", "--json"), (*RECOMMEND, "--csv", "--json"),
                                  (*RECOMMEND, "--csv", "--buy")])
def test_csv_with_another_output_is_refused_in_one_line(run, args):
    r = run(*args)
    assert r.exit_code == 2
    assert "--csv" in r.output and "Traceback" not in r.output


def test_to_csv_writes_none_as_an_empty_field_and_nothing_for_no_rows():
    assert to_csv([]) == ""
    assert to_csv([{"a": 1, "b": None}]) == "a,b\n1,\n"
