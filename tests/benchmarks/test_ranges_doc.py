"""docs/readme/ranges.md holds the tables benchmarks/ranges.py prints from the recorded ranges (never
copied by hand): a re-record without `python benchmarks/ranges.py --write` fails here."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from gpuplan.planner.plans.ranges import recorded_table

ROOT = Path(__file__).resolve().parents[2]


def _script():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("ranges_benchmark", ROOT / "benchmarks" / "ranges.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_section_has_the_tables_of_the_recorded_ranges():
    text = (ROOT / "docs" / "readme" / "ranges.md").read_text()
    assert _script().report(recorded_table()) in text, "stale: run python benchmarks/ranges.py --write"
    readme = (ROOT / "README.md").read_text()
    assert text.rstrip("\n") + "\n" in readme, "README's Ranges section differs: run python benchmarks/ranges.py --write"


def test_every_kind_an_estimate_can_ask_for_is_in_the_kind_table():
    table = recorded_table()
    shown = _script().kind_table(table)
    methods = {r["method"] for r in table["rows"]}
    for key in table["kinds"]:
        stack, method, _ = key.split("|")
        if method in methods:
            assert f"| {stack} | {method} |" in shown
