"""The README's memory tables of "Against real GPUs" are what benchmarks/published.py computes today: a change
that moves an estimate of a published run fails here until `python benchmarks/published.py --readme README.md`."""
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "published.py"


def _script():
    sys.path.insert(0, str(SCRIPT.parent))            # its _published_common and ranges helpers
    try:
        spec = importlib.util.spec_from_file_location("published_memory", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(SCRIPT.parent))


def test_the_readme_memory_tables_are_current():
    pub = _script()
    text = (ROOT / "README.md").read_text()
    assert pub.BEGIN in text and pub.END in text, "README.md lost its generated block"
    block = text.split(pub.BEGIN, 1)[1].split(pub.END, 1)[0]
    from gpuplan.planner.plans.evidence import memory_errors

    assert block == "\n" + pub.readme_tables(memory_errors()), \
        "README's memory tables are stale: run python benchmarks/published.py --readme README.md"
