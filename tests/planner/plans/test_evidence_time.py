"""data/mfu.json holds what the fit on the published runs gives today, and the time classes split the runs."""
import json

import pytest

from gpuplan.planner.io.catalog import data_dir
from gpuplan.planner.io.published import held_out_sources
from gpuplan.planner.plans.evidence import fitted_constants, time_errors


def test_mfu_json_is_what_the_fit_gives_now():
    """Rewrite with `python benchmarks/published_time.py --write-constants` when a formula or a run changes."""
    c, samples = fitted_constants()
    f = json.loads((data_dir() / "mfu.json").read_text())["fitted"]
    for fam, v in c.gemm_efficiency:
        assert f["gemm_efficiency"]["families"][fam]["value"] == pytest.approx(v, abs=1e-4)
    assert f["gemm_efficiency"]["cross_family"]["value"] == pytest.approx(c.cross_family, abs=1e-4)
    assert f["per_layer_pass_s"]["value"] == pytest.approx(c.per_layer_pass_s, abs=1e-6)
    assert f["memory_efficiency"]["value"] == pytest.approx(c.memory_efficiency, abs=1e-6)
    assert sorted(f["per_step_s"]["runs"]) == sorted(s.id for s in samples)
    held = held_out_sources()
    assert not any(s.source in held for s in samples)          # held-out sources are never fitted on


def test_distorting_runs_are_never_fitted_on():
    _, samples = fitted_constants()
    ids = {s.id for s in samples}
    rows = time_errors()
    assert any(r.time_class == "distorting" for r in rows)
    assert all(r.run.id not in ids for r in rows if r.time_class == "distorting")


def test_runs_at_the_cards_capacity_are_time_distorting_by_their_nvidia_smi_peak():
    from gpuplan.planner.io.published import load_published
    from gpuplan.planner.plans.evidence import AT_CAPACITY, time_class
    runs = {r.id: r for r in load_published()}
    stem = "fmsliger-meta-llama-3-8b-full-foak-fast-kernels-"
    for k in ("2gpu-bs4", "4gpu-bs8", "liger-2gpu-bs4", "liger-2gpu-bs8"):   # 80809-81143 of 81920 MiB
        assert time_class(runs[stem + k]) == "distorting", k
    assert time_class(runs[stem + "liger-1gpu-bs8"]) == "mild"               # 79881 MiB: 97.5%
    assert 0.975 < AT_CAPACITY < 0.986
