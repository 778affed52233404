"""The README's time tables (and docs/readme/time.md's) are what benchmarks/published_time.py computes
today: a change to the time model or to a published run that moves a number fails here until
`python benchmarks/published_time.py --readme README.md` (and `--readme docs/readme/time.md`) is run."""
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "published_time.py"


@pytest.fixture(scope="module")
def published_time():
    sys.path.insert(0, str(SCRIPT.parent))            # its _published_common helper
    try:
        spec = importlib.util.spec_from_file_location("published_time", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(SCRIPT.parent))


@pytest.mark.parametrize("doc", ["README.md", "docs/readme/time.md"])
def test_generated_time_tables_are_current(published_time, doc):
    text = (ROOT / doc).read_text()
    assert published_time.BEGIN in text and published_time.END in text, f"{doc} lost its generated block"
    block = text.split(published_time.BEGIN, 1)[1].split(published_time.END, 1)[0]
    assert block == "\n" + published_time.readme_tables(published_time.time_errors()), (
        f"{doc}'s time tables are stale: run python benchmarks/published_time.py --readme {doc}")
