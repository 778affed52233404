"""Every golden case (tests/golden/cases.py) gives today what the golden file recorded: numbers
byte-identical, texts apart. A change that moves a number rewrites the file on purpose
(`python tests/golden/cases.py --write`), in a commit that says why."""
from __future__ import annotations

import pytest

from cases import cases, compute, diff, load  # noqa: E402  (tests/golden is on sys.path via conftest)


@pytest.fixture(scope="module")
def both():
    return load(), compute()


def test_every_case_is_recorded(both):
    old, new = both
    assert sorted(old) == sorted(new), "cases were added or removed: rewrite the golden file on purpose"
    assert len(new) == len(list(cases())) > 2000


def test_numbers_unchanged(both):
    nums, _ = diff(*both)
    assert not nums, f"{len(nums)} numbers differ from the golden file, e.g.:\n" + "\n".join(nums[:20])


def test_texts_unchanged(both):
    _, texts = diff(*both)
    assert not texts, f"{len(texts)} notes/assumptions differ from the golden file, e.g.:\n" + "\n".join(texts[:20])


def test_diff_sees_a_changed_number(both):
    old, _ = both
    name = next(n for n, r in old.items() if r["exit"] == 0 and "peak_allocated_bytes" in r["output"])
    changed = {**old, name: {**old[name], "output": {**old[name]["output"],
                                                     "peak_allocated_bytes": old[name]["output"]["peak_allocated_bytes"] + 1}}}
    nums, texts = diff(old, changed)
    assert len(nums) == 1 and "peak_allocated_bytes" in nums[0] and not texts
