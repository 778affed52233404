"""The README's generated tables are what the benchmarks compute today: the memory tables of "Against real
GPUs" (benchmarks/published.py) and the time tables of "Time and cost" (benchmarks/published_time.py, also in
docs/readme/time.md). A change that moves an estimate or a time of a published run fails here until
`python benchmarks/published.py --readme README.md` / `python benchmarks/published_time.py --readme <doc>` is run."""
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"


def _script(name: str):
    sys.path.insert(0, str(BENCHMARKS))            # their _published_common and ranges helpers
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


def _block(doc: str, module) -> str:
    return _script("_published_common").generated_block((ROOT / doc).read_text(), module.BEGIN, module.END)


def test_the_readme_memory_tables_are_current():
    from gpuplan.planner.plans.evidence import memory_errors

    pub = _script("published")
    assert _block("README.md", pub) == "\n" + pub.readme_tables(memory_errors()), \
        "README's memory tables are stale: run python benchmarks/published.py --readme README.md"


@pytest.mark.parametrize("doc", ["README.md", "docs/readme/time.md"])
def test_the_time_tables_are_current(doc):
    pt = _script("published_time")
    assert _block(doc, pt) == "\n" + pt.readme_tables(pt.time_errors()), \
        f"{doc}'s time tables are stale: run python benchmarks/published_time.py --readme {doc}"
