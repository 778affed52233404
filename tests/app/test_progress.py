"""app/progress.py: N/M and elapsed time per step; warnings inside print once, above the progress."""
from __future__ import annotations

import io
import re
import warnings

from gpuplan.app.progress import step_progress


def test_plain_lines_with_count_and_elapsed_time():
    out = io.StringIO()
    with step_progress(3, "simulating", file=out) as advance:
        for name in ("a", "b", "c"):
            advance(name)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert re.fullmatch(r"\[3/3\] \d+\.\d s elapsed: simulating c", lines[-1]), lines[-1]


def test_future_warnings_print_once_and_do_not_escape():
    out = io.StringIO()
    with warnings.catch_warnings(record=True) as outside:
        warnings.simplefilter("always")
        with step_progress(2, "simulating", file=out) as advance:
            for _ in range(2):
                warnings.warn("`torch_dtype` is deprecated! Use `dtype` instead!", FutureWarning)
                advance()
    text = out.getvalue()
    assert text.count("FutureWarning: `torch_dtype` is deprecated") == 1
    assert "[2/2]" in text and not outside
