"""The GEMM ceiling (planner/speed/ceiling.py): measured matmul throughput per card, data/matmul.json."""
import json
import statistics

import pytest

from gpuplan.planner.specs.errors import PlannerError
from gpuplan.planner.io import catalog
from gpuplan.planner.io.catalog import all_gpus, data_dir, resolve_gpu, resolve_model
from gpuplan.planner.io.validate import validate_gpu_entry
from gpuplan.planner.specs.enums import Method
from gpuplan.planner.specs.gpu import GpuSpec
from gpuplan.planner.specs.setup import Checkpointing, TrainingSetup
from gpuplan.planner.speed import ceiling
from gpuplan.planner.speed.ceiling import matmul_ceiling
from gpuplan.planner.speed.throughput import step_time

RAW = json.loads((data_dir() / "matmul.json").read_text(encoding="utf-8"))


def test_h100_takes_its_mamf_figure_over_the_square_runs():
    # stas00's table row '| NVIDIA H100 SXM | 794.5 | 989 | 80.3% |'; the two square runs (797.51, 783.66) are not used
    c = matmul_ceiling(resolve_gpu("h100"), "bf16")
    assert c.flops == pytest.approx(794.5e12)
    assert c.ratio == pytest.approx(794.5 / 989.4)


def test_a_card_with_square_runs_only_takes_their_median():
    # six RTX 4090 runs of zzc0721's test: 170.06, 173.31, 162.39, 163.09, 165.71, 164.81 TFLOP/s
    c = matmul_ceiling(resolve_gpu("rtx-4090"), "bf16")
    assert c.flops == pytest.approx((164.81 + 165.71) / 2 * 1e12)
    # a GeForce card boosts past the clock its datasheet quotes: above its 71 TFLOP/s
    assert matmul_ceiling(resolve_gpu("rtx-3090"), "bf16").ratio > 1


def test_rtx_6000_ada_takes_the_l40s_ratio_not_the_geforce_one():
    ada, l40s = resolve_gpu("rtx-6000-ada"), resolve_gpu("l40s")
    c = matmul_ceiling(ada, "bf16")
    assert c.ratio == pytest.approx(269.15 / 362.05)
    assert c.flops == pytest.approx(364.25e12 * 269.15 / 362.05)
    assert "l40s" in c.source
    # the family constant fitted on RTX 4090 runs no longer carries the 4090's ~1.0 ratio to this card
    assert c.ratio < matmul_ceiling(resolve_gpu("rtx-4090"), "bf16").ratio - 0.2
    assert matmul_ceiling(l40s, "bf16").ratio == c.ratio


def test_an_unmeasured_card_takes_the_median_ratio_of_the_measured_ones():
    ratios = []
    for g in all_gpus():
        runs = RAW["gpus"].get(g.name, {}).get("bf16", [])
        mamf = [e["flops"] for e in runs if e["method"] == "mamf"]
        if runs:
            ratios.append((mamf[0] if mamf else statistics.median(e["flops"] for e in runs)) / g.peak_flops("bf16"))
    a10g = resolve_gpu("a10g")
    assert "a10g" not in RAW["gpus"]
    c = matmul_ceiling(a10g, "bf16")
    assert c.ratio == pytest.approx(statistics.median(ratios))
    assert c.flops == pytest.approx(a10g.peak_flops("bf16") * statistics.median(ratios))
    assert ceiling.median_ratio()[1] == len(ratios) >= 10


def test_the_ratio_applies_to_every_dtype():
    g = resolve_gpu("a100-sxm-80gb")
    r = matmul_ceiling(g, "bf16").ratio
    assert matmul_ceiling(g, "fp32").flops == pytest.approx(19.5e12 * r)


def test_every_measurement_is_quoted_and_names_a_catalog_gpu():
    names = {g.name for g in all_gpus()}
    for name, entry in RAW["gpus"].items():
        assert name in names, name
        if "sibling" in entry:
            assert RAW["gpus"][entry["sibling"]]["bf16"] and entry["note"], name
            continue
        for e in entry["bf16"]:
            assert e["method"] in RAW["methods"] and e["line"] > 0, name
            assert e["published"] in e["quote"] and e["flops"] == round(float(e["published"]) * 1e12), name
            assert "@" in e["source"] and len(e["source"].split("@")[1].split()[0]) == 40, name


def test_a_user_gpu_file_measurement_wins():
    raw = {**resolve_gpu("rtx-6000-ada").raw, "matmul_flops": {"bf16": 2.0e14}}
    c = matmul_ceiling(GpuSpec("rtx-6000-ada", 48 * 2**30, raw), "bf16")
    assert c.flops == pytest.approx(2.0e14) and "user GPU file" in c.source


@pytest.mark.parametrize("bad", [{"bf16": 200}, {"fp16": 2e14}, 2e14])
def test_a_user_measurement_in_the_wrong_shape_or_unit_is_refused(bad):
    with pytest.raises(PlannerError, match="matmul_flops"):
        validate_gpu_entry({"name": "rtx-4090", "matmul_flops": bad}, "my-gpus.json")


def test_gemm_seconds_are_flops_over_the_ceiling_times_the_efficiency():
    m, g = resolve_model("llama-3.1-8b"), resolve_gpu("h100")
    s = TrainingSetup(batch_size=4, seq_len=4096, checkpointing=Checkpointing.NONE)
    st = step_time(m, s, g)
    e = next(a.value for a in st.assumptions if a.name == "gemm_efficiency")
    fl = st.flops
    from gpuplan.planner.speed.throughput import TimeConstants
    c = TimeConstants.load()
    assert st.compute == pytest.approx(4 * 4096 * (fl.linear + fl.attention / c.attention_ratio) / (794.5e12 * e))
    # mfu_assumed stays a fraction of the datasheet peak (as papers quote it)
    assert st.mfu == pytest.approx(e * 794.5 / 989.4)
    note = next(a for a in st.assumptions if a.name == "matmul_ceiling")
    assert note.value == pytest.approx(794.5 / 989.4, abs=1e-4) and "matmul.json" in note.source


def test_a_lower_ceiling_never_makes_the_step_faster(monkeypatch):
    m, g = resolve_model("qwen-2.5-7b"), resolve_gpu("rtx-6000-ada")
    s = TrainingSetup(method=Method.LORA, batch_size=4)
    before = step_time(m, s, g).total
    low = {**g.raw, "matmul_flops": {"bf16": 1.0e14}}
    assert step_time(m, s, GpuSpec(g.name, g.memory_bytes, low)).total > before


def test_the_catalog_loader_reads_the_file():
    assert catalog.matmul_measurements()["gpus"]["h100-sxm-80gb"]["bf16"][0]["method"] == "mamf"
