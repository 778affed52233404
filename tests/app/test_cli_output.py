"""Output a person can read: no table cuts a number or a name (piped, or an 80-column terminal),
a missed fit says by how much and what fixes it, flags say what they mean."""
from __future__ import annotations

import functools
import io
import json

import pytest
from click.testing import CliRunner
from rich.console import Console

import gpuplan.app.console as app_console
from gpuplan.app.cli import cli
from gpuplan.planner.io.catalog import all_gpus, model_names

ELLIPSIS = "…"


def run(*argv: str):
    r = CliRunner().invoke(cli, list(argv))
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r


@pytest.fixture
def terminal80(monkeypatch):
    """The CLI's console as an 80-column terminal; yields the buffer it writes to."""
    buf = io.StringIO()
    monkeypatch.setattr(app_console, "make_console",
                        lambda file=None: Console(file=buf, width=80, force_terminal=True, color_system=None))
    return buf


def test_gpus_piped_has_every_name_and_number_whole():
    r = run("gpus")
    assert r.exit_code == 0 and ELLIPSIS not in r.stdout
    for g in all_gpus():
        assert g.name in r.stdout
        if g.purchase_usd:
            assert f"{g.purchase_usd:,.0f}" in r.stdout
    row = next(ln for ln in r.stdout.splitlines() if " mi300x " in ln and "infinity-fabric" in ln)
    assert "192.0" in row          # one line per GPU: the table is not wrapped when piped


def test_gpus_in_80_columns_drops_columns_not_digits(terminal80):
    assert run("gpus").exit_code == 0
    out = terminal80.getvalue()
    assert ELLIPSIS not in out and max(len(ln) for ln in out.splitlines()) <= 80
    assert "left out to fit 80 columns" in out
    for g in all_gpus():
        assert g.name in out


RECOMMEND = ("recommend", "-m", "qwen-2.5-7b", "--dataset-tokens", "200M", "--max-gpus", "2", "--methods", "lora,qlora")


@functools.lru_cache(maxsize=1)
def _frontier() -> tuple:
    return tuple(json.loads(run(*RECOMMEND, "--json").stdout)["frontier"])


def _frontier_whole(text: str) -> None:
    plans = _frontier()
    assert plans and ELLIPSIS not in text
    for p in plans:
        assert f"{p['usd']:,.2f}" in text and p["gpu"] in text


def test_recommend_frontier_whole_piped():
    r = run(*RECOMMEND)
    assert r.exit_code == 0
    _frontier_whole(r.stdout)


def test_recommend_frontier_whole_in_80_columns(terminal80):
    assert run(*RECOMMEND).exit_code == 0
    out = terminal80.getvalue()
    terminal80.truncate(0)
    _frontier_whole(out)
    assert max(len(ln) for ln in out.splitlines()) <= 80


def test_estimate_tables_in_80_columns(terminal80):
    assert run("estimate", "-m", "llama-3.1-70b", "--gpus-per-node", "8", "--zero", "3", "--gpu", "h100").exit_code == 0
    out = terminal80.getvalue()
    assert ELLIPSIS not in out and max(len(ln) for ln in out.splitlines()) <= 80
    assert "device total" in out and "171.64" in out   # reserved from the allocator replay (planner/memory/reserved.py)


def test_estimate_says_by_how_much_and_what_fits():
    r = run("estimate", "-m", "llama-3.1-8b", "--method", "qlora", "-b", "8", "-s", "2048", "--gpu", "rtx-4090")
    assert r.exit_code == 0
    assert "Does not fit rtx-4090 by 22.01 GiB (needs 46.00 of 23.99 GiB)" in r.stdout   # reserved: the allocator replay
    assert "fits at --batch-size 2 --grad-accum 4 (the same 8 sequences per optimizer step; the largest " \
           "micro-batch that fits is 3)" in r.stdout
    assert "--loss chunked" in r.stdout and "--seq-len" not in r.stdout.split("Does not fit")[1]


def test_estimate_says_which_phase_misses_and_by_how_much():
    # FSDP1's full state dict kept on rank 0's GPU: the step fits an L40S, the save does not
    r = run("estimate", "-m", "llama-3.1-8b", "--gpus-per-node", "8", "--fsdp", "full", "--save-steps", "100",
            "--fsdp-version", "1", "--state-dict-on-gpu", "--gpu", "l40s", "--json")
    row = json.loads(r.stdout)["fits"][0]
    assert not row["fits"] and row["phase"] == "save"
    r = run("estimate", "-m", "llama-3.1-8b", "--gpus-per-node", "8", "--fsdp", "full", "--save-steps", "100",
            "--fsdp-version", "1", "--state-dict-on-gpu", "--gpu", "l40s")
    over, needs = -row["headroom_bytes"] / 2**30, (row["memory_bytes"] - row["headroom_bytes"]) / 2**30
    assert over > 0
    assert f"Does not fit l40s at its save phase by {over:,.2f} GiB (needs {needs:,.2f} of" in r.stdout
    assert "the training step fits" in r.stdout and "knobs that make it fit" not in r.stdout


def test_check_exit_status():
    args = ("estimate", "-m", "llama-3.1-8b", "--method", "qlora", "-b", "8", "-s", "2048")
    assert run(*args, "--gpu", "h100", "--check").exit_code == 0
    assert run(*args, "--gpu", "t4", "--gpu", "h100", "--check").exit_code == 3
    assert run(*args, "--gpu", "t4", "--check", "--json").exit_code == 3
    assert run(*args, "--gpu", "t4").exit_code == 0          # without --check: a report, not a status
    assert "exit 3" in run("estimate", "--help").stdout


def test_fit_offers_only_knobs_that_buy_memory():
    out = json.loads(run("fit", "-m", "llama-3.1-8b", "--gpu", "rtx-4090", "--method", "qlora", "--json").stdout)
    assert not out["fits"] and out["max_batch_size"] == 6   # 7 with the fixed 6% slack; the allocator replay reserves more
    assert out["knobs"], "a knob makes micro-batch 8 fit"
    for k in out["knobs"]:
        assert "--seq-len" not in k["changes"]
        assert k["batch_size"] > out["max_batch_size"], k   # an 8-bit optimizer at micro-batch 7 buys nothing
    text = run("fit", "-m", "llama-3.1-8b", "--gpu", "rtx-4090", "--method", "qlora").stdout
    assert "fits at --batch-size 4 --grad-accum 2 (the same 8 sequences" in text and "adamw-8bit" not in text


def test_gpus_per_node_and_the_old_spelling():
    new = run("estimate", "-m", "llama-3.2-1b", "--gpus-per-node", "4", "--zero", "2", "--json")
    old = run("estimate", "-m", "llama-3.2-1b", "--gpus", "4", "--zero", "2", "--json")
    assert json.loads(new.stdout) == json.loads(old.stdout)
    assert "deprecated" in old.stderr and "--gpus-per-node" in old.stderr and "deprecated" not in new.stderr
    assert "--gpus-per-node" in run("estimate", "--help").stdout
    bad = run("estimate", "-m", "llama-3.2-1b", "--gpus", "4", "--gpus-per-node", "2")
    assert bad.exit_code == 2 and "disagree" in bad.stderr


def test_recommend_gpu_types_and_the_old_spelling():
    argv = ("recommend", "-m", "llama-3.1-8b", "--dataset-tokens", "100M", "--json")
    new = run(*argv, "--gpu-types", "rtx-4090,h100")
    old = run(*argv, "--gpus", "rtx-4090,h100")
    assert json.loads(new.stdout) == json.loads(old.stdout) and "deprecated" in old.stderr
    assert {p["gpu"] for p in json.loads(new.stdout)["frontier"]} <= {"rtx-4090", "h100-sxm-80gb"}


def test_models_table_and_json():
    r = run("models")
    assert r.exit_code == 0 and ELLIPSIS not in r.stdout
    header = next(ln for ln in r.stdout.splitlines() if "model" in ln and "layers" in ln)
    for col in ("family", "layers", "hidden", "heads/kv", "vocab", "params"):
        assert col in header
    rows = json.loads(run("models", "--json").stdout)
    assert [r["name"] for r in rows] == model_names()
    llama = next(r for r in rows if r["name"] == "llama-3.1-8b")
    assert (llama["layers"], llama["hidden"], llama["heads"], llama["kv_heads"], llama["vocab"],
            llama["params_total"]) == (32, 4096, 32, 8, 128256, 8030261248)


@pytest.mark.parametrize("typed, first", [("h10", "h100"), ("4090", "rtx-4090"), ("qwen2.5-7", "qwen-2.5-7b"),
                                          ("lamma-3.1-8b", "llama-3.1-8b")])
def test_did_you_mean(typed, first):
    flag = "--gpu" if typed in ("h10", "4090x") else "-m"
    argv = ["estimate", "-m", "llama-3.2-1b", "--gpu", typed] if typed == "h10" else ["estimate", "-m", typed]
    if typed == "4090":
        argv = ["fit", "-m", "llama-3.2-1b", "--gpu", "rtx4090x"]
    r = run(*argv)
    assert r.exit_code == 2, flag
    suggestions = r.stderr.split("did you mean: ")[1]
    assert suggestions.startswith(first), suggestions


def test_estimate_reads_a_gpu_catalog(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("gpus:\n  - name: my-card\n    memory_bytes: 25757220864\n    peak_flops: {bf16: 1.65e14}\n"
                 "    memory_bandwidth_bytes_per_s: 1.0e12\n    interconnect: {kind: pcie4, bytes_per_s: 3.2e10}\n"
                 "    power_watts: 450\n")
    r = run("estimate", "-m", "llama-3.2-1b", "--method", "lora", "--gpu", "my-card", "--gpu-catalog", str(p), "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["fits"][0]["gpu"] == "my-card"
    assert run("estimate", "-m", "llama-3.2-1b", "--gpu", "my-card").exit_code == 2   # scoped to that command
