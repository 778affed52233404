"""`gpuplan estimate`: the real-GPU range of each figure in the table and in `--json` (bytes), and the
fit verdict over the range (app/ranges_report.py, planner/plans/ranges.py)."""
from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from gpuplan.app.cli import cli
from gpuplan.app.cli_estimate import estimate
from gpuplan.app.ranges_report import verdict_line
from gpuplan.planner.plans.ranges import FIGURES, EvidenceStack, Kind, Range, bounds, figure_range

GIB = 2**30
LORA = ("estimate", "-m", "llama-3.2-1b", "--method", "lora", "-b", "2", "-s", "512")


def run(*args):
    r = CliRunner().invoke(cli, list(args))
    assert r.exit_code == 0, r.output
    return r.output


def test_json_ranges_name_the_kind_and_round_trip_to_the_recorded_range():
    d = json.loads(run(*LORA, "--gpu", "rtx-4090", "--json"))
    block = d["ranges"]
    assert block["kind"] == {"stack": "hf", "method": "lora", "stack_from": block["kind"]["stack_from"]}
    for f in FIGURES:
        b = block[f]
        assert b["estimate_bytes"] == d[f]
        r = Range.from_dict({k: v for k, v in b.items() if k not in ("estimate_bytes", "low_bytes", "high_bytes")})
        assert r == figure_range(Kind(EvidenceStack.HF, "lora"), f)
        assert (b["low_bytes"], b["high_bytes"]) == bounds(d[f], r)
        assert b["rows"] >= 5 and len(b["sources"]) >= 2 and b["evidence"] == "published"
    fit = block["fits"][0]
    needed = d["fits"][0]["memory_bytes"] - d["fits"][0]["headroom_bytes"]
    assert fit["headroom_bytes"] == d["fits"][0]["headroom_bytes"]
    lo, hi = bounds(needed, figure_range(Kind(EvidenceStack.HF, "lora"), "device_total_bytes"))
    assert (fit["headroom_low_bytes"], fit["headroom_high_bytes"]) == (d["fits"][0]["memory_bytes"] - hi,
                                                                       d["fits"][0]["memory_bytes"] - lo)


def test_table_shows_the_range_and_the_verdict_with_its_spread():
    d = json.loads(run(*LORA, "--gpu", "a100-80gb", "--json"))
    out = run(*LORA, "--gpu", "a100-80gb")
    assert "Real-GPU range of each figure" in out and "hf|lora|device_total_bytes" in out
    fit = d["ranges"]["fits"][0]
    assert fit["verdict"] == "fits"
    spare = f"{fit['headroom_bytes'] / GIB:,.2f}"
    up = f"{(fit['headroom_high_bytes'] - fit['headroom_bytes']) / GIB:,.2f}"
    down = f"{(fit['headroom_bytes'] - fit['headroom_low_bytes']) / GIB:,.2f}"
    assert f"fits with {spare} GiB to spare, +{up}/-{down} GiB" in re.sub(r"\s+", " ", out)


def test_verdict_lines_say_may_not_fit_where_the_range_straddles_the_capacity():
    assert verdict_line("g", {"headroom_bytes": GIB, "headroom_low_bytes": -GIB // 2, "headroom_high_bytes": 2 * GIB,
                              "verdict": "may not fit"}) == \
        "g: may not fit: 1.00 GiB to spare by the estimate, +1.00/-1.50 GiB: at the range's top it is 0.50 GiB over"
    assert verdict_line("g", {"headroom_bytes": -GIB, "headroom_low_bytes": -3 * GIB, "headroom_high_bytes": GIB,
                              "verdict": "may fit"}).startswith("g: does not fit by 1.00 GiB by the estimate, +2.00/-2.00 GiB")
    assert verdict_line("g", {"headroom_bytes": 2 * GIB, "headroom_low_bytes": GIB, "headroom_high_bytes": 3 * GIB,
                              "verdict": "fits"}) == "g: fits with 2.00 GiB to spare, +1.00/-1.00 GiB"


def test_a_straddling_fit_on_the_command_line():
    # Llama-3.1-8B QLoRA, 1 x 4096: 6.3 GiB to spare on a 24 GiB card by the estimate, 2.7 GiB over at the top
    d = json.loads(run("estimate", "-m", "llama-3.1-8b", "--method", "qlora", "-b", "1", "-s", "4096",
                       "--gpu", "rtx-4090", "--json"))
    fit = d["ranges"]["fits"][0]
    assert d["fits"][0]["fits"] and fit["headroom_low_bytes"] < 0 <= fit["headroom_bytes"]
    assert fit["verdict"] == "may not fit"
    out = run("estimate", "-m", "llama-3.1-8b", "--method", "qlora", "-b", "1", "-s", "4096", "--gpu", "rtx-4090")
    assert "rtx-4090: may not fit:" in out


def test_torchtune_stack_and_a_method_no_published_run_covers():
    d = json.loads(run(*LORA, "--stack-versions", "torchtune-0.6.1", "--json"))
    assert d["ranges"]["kind"]["stack"] == "torchtune" and "torchtune-0.6.1" in d["ranges"]["kind"]["stack_from"]
    assert d["ranges"]["peak_allocated_bytes"]["fallback"] == "all stacks"     # one torchtune LoRA run
    d = json.loads(run(*LORA, "--use-dora", "--json"))
    b = d["ranges"]["device_total_bytes"]
    assert d["ranges"]["kind"]["method"] == "lora-dora" and b["evidence"] == "simulated"
    assert "no real-GPU evidence covers lora-dora" in b["why"]


def test_ranges_stack_chooses_the_evidence():
    opt = next(p for p in estimate.params if p.name == "ranges_stack")
    assert list(opt.type.choices) == EvidenceStack.values()
    d = json.loads(run(*LORA, "--ranges-stack", "other", "--json"))
    assert d["ranges"]["kind"] == {"stack": "other", "method": "lora", "stack_from": "--ranges-stack other"}
    assert d["ranges"]["peak_allocated_bytes"]["group"] == "other|lora|peak_allocated_bytes"
    base = json.loads(run(*LORA, "--json"))
    assert {k: v for k, v in d.items() if k != "ranges"} == {k: v for k, v in base.items() if k != "ranges"}


def test_fit_adds_the_range_verdict_and_keeps_its_own():
    out = run("fit", "--model", "llama-3.1-8b", "--gpu", "rtx-4090", "--method", "qlora")
    lines = out.splitlines()
    assert "does NOT fit" in lines[1]                                   # the estimate's verdict, unchanged
    assert lines[2].startswith("  on a real GPU (hf stack, qlora; published runs held out by source): does not fit by")
    d = json.loads(run("fit", "--model", "llama-3.1-8b", "--gpu", "rtx-4090", "--method", "qlora", "--json"))
    assert "ranges" not in d and d["fits"] is False


def test_recommend_names_the_range_of_its_cheapest_and_fastest_plans():
    args = ("recommend", "--model", "qwen2.5-1.5b", "--dataset-tokens", "50M", "--max-gpus", "1", "--gpus", "rtx-4090,h100")
    out = run(*args)
    r = CliRunner().invoke(cli, [*args, "--json"])
    assert r.exit_code == 0 and "on a real GPU" not in r.stdout and "ranges" not in json.loads(r.stdout)                                # the plans and their JSON are unchanged
    lines = out.splitlines()
    for title in ("Cheapest: ", "Fastest: "):
        i = next(k for k, ln in enumerate(lines) if ln.startswith(title))
        assert lines[i + 2].startswith("  on a real GPU (hf stack, ")


def test_a_config_file_names_its_stack():
    configs = Path(__file__).resolve().parents[1] / "fixtures" / "configs"
    for path, stack in ((configs / "torchtune" / "llama3_2-1B_lora_single_device.yaml", "torchtune"),
                        (configs / "unsloth" / "Llama3.1_8B-Alpaca.py", "other"),
                        (configs / "axolotl" / "llama-2-qlora-fsdp.yml", "hf")):
        r = CliRunner().invoke(cli, ["estimate", "--from-config", str(path), "--seq-len", "1024", "--json"])
        assert r.exit_code == 0, r.output
        kind = json.loads(r.stdout)["ranges"]["kind"]
        assert kind["stack"] == stack and kind["stack_from"] == f"the {path.parent.name} config (--from-config)", path
