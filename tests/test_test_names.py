"""pytest imports test modules by basename (the test folders are not packages): two test files with
one name collect in one run and fail the other's import (`import file mismatch`)."""
from collections import Counter
from pathlib import Path


def test_no_two_test_files_share_a_name():
    names = Counter(p.name for p in Path(__file__).resolve().parent.rglob("test_*.py"))
    assert not [n for n, k in names.items() if k > 1], "rename one of each pair: " + \
        ", ".join(n for n, k in names.items() if k > 1)
