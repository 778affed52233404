"""planner/io/suggest.py: prefix, then shared tokens, then edit distance."""
from gpuplan.planner.io.catalog import gpu_names, model_names
from gpuplan.planner.io.suggest import closest, did_you_mean


def test_prefix_first():
    assert closest("h10", gpu_names())[0].startswith("h100")
    assert closest("qwen2.5-7", model_names())[0] == "qwen-2.5-7b"


def test_shared_token_then_typo():
    assert closest("4090", gpu_names())[0] == "rtx-4090"
    assert closest("rtx-4091", gpu_names())[0] == "rtx-4090"
    assert closest("lamma-3.1-8b", model_names())[0] == "llama-3.1-8b"


def test_nothing_close():
    assert did_you_mean("zzzz", gpu_names()) == ""
    assert did_you_mean("", gpu_names()) == ""
