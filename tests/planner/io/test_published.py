"""data/published/: every file validates, every figure is in its verbatim quote, every mapped run
estimates, and no run's error has grown since benchmarks/published*.py --record."""
import json
import re

import pytest

from gpuplan.planner import PlannerError, estimate, resolve_gpu, resolve_model, step_time
from gpuplan.planner.plans.evidence import memory_errors, recorded, regressions, time_errors
from gpuplan.planner.io.published import (FigureKind, published_dir, held_out_sources, load_file, load_published,
                                          recorded_errors)

RUNS = load_published()
MAPPED = [r for r in RUNS if r.mapping is not None]
UNIT = {"bytes": 1, "MiB": 2**20, "GiB": 2**30, "GB": 10**9}


def test_every_source_file_loads_with_unique_ids():
    files = {r.file for r in RUNS}
    assert files >= {"peft-metamathqa.json", "fms-acceleration.json", "answerai-fsdp-qlora.json",
                     "torchtune-readme.json", "litgpt.json"}
    assert len({r.id for r in RUNS}) == len(RUNS)
    assert len(MAPPED) >= 80


def test_sources_name_a_commit_and_quotes_are_not_empty():
    for r in RUNS:
        assert re.fullmatch(r"[0-9a-f]{40}", r.source.commit), r.id
        assert r.source.commit in r.source.url, r.id
        assert r.quote.strip(), r.id
        assert r.setup_text.strip(), r.id


def test_every_published_figure_is_in_its_quote_and_converts_exactly():
    for r in RUNS:
        for f in r.measured:
            if f.derivation is None:
                assert f.published in r.quote, (r.id, f.kind, f.published)
            if f.kind.memory:
                assert f.bytes == round(float(f.published) * UNIT[f.unit]), (r.id, f.published, f.unit)


def test_every_mapped_run_builds_estimates_and_times():
    for r in MAPPED:
        model = resolve_model(r.model)
        est = estimate(model, r.setup())
        assert est.peak_allocated_bytes <= est.peak_reserved_bytes <= est.device_total_bytes, r.id
        if r.gpu_catalog:
            assert step_time(model, r.time_setup(), resolve_gpu(r.gpu_catalog)).tokens_per_s > 0, r.id


def test_unmapped_runs_say_why_and_catalog_names_resolve():
    for r in RUNS:
        if r.mapping is None:
            assert r.mapping_null_reason, r.id
            with pytest.raises(PlannerError, match=re.escape(r.id)):
                r.setup()
        if r.gpu_catalog:
            assert resolve_gpu(r.gpu_catalog).name == r.gpu_catalog, r.id


def test_memory_kinds_compare_with_the_matching_estimate_figure():
    assert FigureKind.MAX_MEMORY_ALLOCATED.compared_with == "peak_allocated_bytes"
    assert FigureKind.TORCHTUNE_ACTIVE.compared_with == "peak_allocated_bytes"
    assert FigureKind.MAX_MEMORY_RESERVED.compared_with == "peak_reserved_bytes"
    assert FigureKind.NVIDIA_SMI.compared_with == "device_total_bytes"
    assert not FigureKind.TOKENS_PER_S.memory


def test_held_out_split_is_whole_sources_about_a_third():
    held = held_out_sources()
    assert held and held < {r.file for r in RUNS}
    share = sum(r.file in held for r in MAPPED) / len(MAPPED)
    assert 0.2 <= share <= 0.5, share


def _bad(tmp_path, mutate):
    d = json.loads((published_dir() / "litgpt.json").read_text())
    mutate(d)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d))
    return p


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["source"].update(commit="abc123"), r"bad\.json: field 'source\.commit' must be 40"),
    (lambda d: d["runs"][0].update(quote=""), r"bad\.json, run litgpt-lora-7b-none-mb1: field 'quote' is empty"),
    (lambda d: d["runs"][0]["measured"][0].update(kind="vram"), r"run litgpt-lora-7b-none-mb1: field 'measured\[0\]\.kind' is 'vram'"),
    (lambda d: d["runs"][0]["measured"][0].update(bytes=1.5), r"field 'measured\[0\]\.bytes' must be an integer"),
    (lambda d: d["runs"][0].update(mapping=None), r"field 'mapping_null_reason' is missing"),
    (lambda d: d["runs"][0].pop("hardware"), r"field 'hardware' is missing"),
    (lambda d: d["runs"][1].update(id=d["runs"][0]["id"]), r"field 'id' is used twice"),
])
def test_a_bad_file_fails_with_one_line_naming_file_run_and_field(tmp_path, mutate, message):
    with pytest.raises(PlannerError, match=message) as e:
        load_file(_bad(tmp_path, mutate))
    assert "\n" not in str(e.value)


def test_errors_only_improve_since_they_were_recorded():
    before = recorded_errors()
    assert before.get("memory") and before.get("time"), \
        "data/published/errors_recorded.json lacks memory or time: run benchmarks/published.py --record and published_time.py --record"
    problems = (regressions(recorded(memory_errors()), before["memory"])
                + regressions(recorded(time_errors()), before["time"]))
    assert not problems, "\n".join(problems)


def test_regressions_catch_growth_and_further_under_estimates():
    assert regressions({"a": -5.0}, {"a": -5.0}) == []
    assert regressions({"a": 3.0}, {"a": 1.0}) and regressions({"a": -2.1}, {"a": -2.0})
    assert regressions({"a": 1.4}, {"a": 1.0}) == []          # within 0.5 points, not under
    assert regressions({}, {"a": 1.0}) and regressions({"a": 1.0}, {})
