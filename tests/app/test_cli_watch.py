"""`gpuplan watch -- python train_tiny.py`: a real tiny training run on the CPU, watched end to end
(samples, step lines, summary, record), with a fake NVML that claims the run on an H100; and the
command's one-line errors."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpuplan.app.cli import cli
from gpuplan.planner.io.records import validate_record

sys.path.insert(0, str(Path(__file__).parents[1] / "profiler" / "watch"))
from fake_nvml import GIB, FakeNvml  # noqa: E402

SCRIPT = Path(__file__).parents[1] / "profiler" / "watch" / "fixtures" / "train_tiny.py"
TINY_CONFIG = Path(__file__).parent / "fixtures" / "tiny-llama-config.json"
SETUP_FLAGS = ["--model", str(TINY_CONFIG), "--precision", "fp32", "--optimizer", "adamw", "-b", "2", "-s", "32",
               "--no-grad-ckpt"]


def _run_pids() -> list[int]:
    """PIDs of the training script (what a real NVML would list for the run)."""
    out = []
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and b"train_tiny.py" in Path(f"/proc/{name}/cmdline").read_bytes():
                out.append(int(name))
        except OSError:
            continue
    return out


def _objs(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_a_real_cpu_run_watched_with_a_fake_nvml(tmp_path, monkeypatch):
    nv = FakeNvml([{"name": "NVIDIA H100 80GB HBM3", "total": 80 * GIB, "used": 3 * GIB}],
                  processes=lambda i: [(pid, 2 * GIB) for pid in _run_pids()])
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    out = tmp_path / "run.jsonl"
    result = CliRunner().invoke(cli, ["watch", "--interval", "0.2", "-o", str(out), "--max-seq-len", "128",
                                      *SETUP_FLAGS, "--", sys.executable, str(SCRIPT), "12"])
    assert result.exit_code == 0, result.output
    objs = _objs(out)
    kinds = [o["kind"] for o in objs]
    assert kinds[0] == "start" and kinds[-1] == "summary" and kinds.count("step") == 12 and "process" in kinds
    start = objs[0]
    assert start["mode"] == "launch" and start["expected"]["source"] == "the setup flags"
    assert start["expected"]["gpu"] == "h100-sxm-80gb" and start["expected"]["tokens_per_s"] > 0
    assert start["expected"]["max_seq_len"] == 128 and start["expected"]["growth_bytes"] > 0

    samples = [o for o in objs if o["kind"] == "sample"]
    assert len(samples) >= 3
    run_samples = [s for s in samples if s["gpus"][0]["run_memory_bytes"] == 2 * GIB]
    assert run_samples and all(s["gpus"][0]["run_memory_source"] == "process" for s in run_samples)
    pids = {p["pid"] for s in samples for p in s["processes"]}
    assert set(_pids_of_steps(objs)) <= pids               # the training process is in the sampled tree
    assert max(s["rss_bytes"] for s in samples) > 50 * 2**20   # torch + transformers resident

    steps = [o for o in objs if o["kind"] == "step"]
    assert [s["step"] for s in steps] == list(range(1, 13)) and all(s["tokens"] == 64 for s in steps)
    assert all(s["step_time_s"] >= 0.05 for s in steps)      # the script sleeps 50 ms a step
    assert all(s["device"] == "cpu" and s["rss_bytes"] > 0 for s in steps)

    summary = objs[-1]
    m = summary["measured"]
    assert m["steps"] == 12 and m["steps_timed"] == 11 and m["step_time_s"] >= 0.05
    steady = [s for s in steps if s["step"] >= 2]
    assert m["tokens_per_s"] == pytest.approx(sum(s["tokens"] for s in steady) / sum(s["step_time_s"] for s in steady))
    assert m["device_total_bytes"] == 2 * GIB and m["peak_allocated_bytes"] is None   # CPU: no allocator figures
    assert summary["exit_code"] == 0 and summary["warnings"] == []
    assert "measured vs estimated" in result.stdout and "tokens_per_s" in result.stdout

    record = json.loads((tmp_path / "run.record.json").read_text())
    validate_record(record, "run.record.json")
    assert record["kind"] == "watch" and record["gpu"] == "h100-sxm-80gb" and record["environment"]["driver"] == "580.65.06"
    assert record["environment"]["torch"] and record["model"] == str(TINY_CONFIG)
    assert record["setup"]["batch_size"] == 2 and record["memory"]["device_total_bytes"] == 2 * GIB
    # a config file resolves again, on a catalog GPU: the step times calibrate the time model
    assert record["timing"]["steps_timed"] == 11 and record["timing"]["step_time_s"] == m["step_time_s"]
    assert record["files"] == {"samples": str(out)}


def _pids_of_steps(objs):
    return [o["pid"] for o in objs if o["kind"] == "step"]


HOOK_ONLY = f"""
import time
from gpuplan.planner import Checkpointing, TrainingSetup, resolve_model
from gpuplan.profiler.watch import hook
hook.report_setup(TrainingSetup(batch_size=2, seq_len=32, checkpointing=Checkpointing.NONE), resolve_model({str(TINY_CONFIG)!r}))
hook.start()
for _ in range(3):
    time.sleep(0.05)
    hook.step(tokens=64)
"""


def test_without_nvml_or_torch_the_setup_comes_from_the_hook(tmp_path, monkeypatch):
    """A loop that reports through the hook only (no torch imported: RSS figures), on a machine without NVML."""
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([], init_error=True))
    out = tmp_path / "cpu.jsonl"
    result = CliRunner().invoke(cli, ["watch", "--interval", "0.1", "-o", str(out), "--record",
                                      str(tmp_path / "rec.json"), "--", sys.executable, "-c", HOOK_ONLY])
    assert result.exit_code == 0, result.output
    objs = _objs(out)
    summary = objs[-1]
    assert summary["expected"]["source"].startswith("the run's own setup")
    assert summary["expected"]["model"] == "tiny-llama-config" and summary["expected"]["gpu"] is None
    assert summary["measured"]["steps"] == 3 and summary["measured"]["device_total_bytes"] is None
    assert any("NVML is not available" in n for n in summary["notes"])
    process = next(o for o in objs if o["kind"] == "process")
    assert process["torch"] is None and process["device"] == "cpu"
    record = json.loads((tmp_path / "rec.json").read_text())
    validate_record(record, "rec.json")
    assert record["gpu"] == "cpu" and record["environment"]["gpu_count"] == 0 and record["timing"] is None
    assert any("not recorded as timing" in n for n in record["notes"])
    assert any(n.startswith("no GPU: the run's peak resident memory") for n in record["notes"])


def test_the_runs_exit_status_is_the_watchs(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([], init_error=True))
    result = CliRunner().invoke(cli, ["watch", "--interval", "0.1", "-o", str(tmp_path / "x.jsonl"), "--log",
                                      str(tmp_path / "x.log"), "--", sys.executable, "-c",
                                      "import sys; print('to stdout'); print('to stderr', file=sys.stderr); sys.exit(3)"])
    assert result.exit_code == 3
    summary = _objs(tmp_path / "x.jsonl")[-1]
    assert summary["exit_code"] == 3 and any("no step lines" in n for n in summary["notes"])
    assert sorted((tmp_path / "x.log").read_text().split("\n")) == ["", "to stderr", "to stdout"]
    record = json.loads((tmp_path / "x.record.json").read_text())
    assert record["files"] == {"samples": str(tmp_path / "x.jsonl"), "log": str(tmp_path / "x.log")}


@pytest.mark.parametrize("args, message", [
    ([], "give the training command after --"),
    (["--pid", "1", "--", "python"], "give the training command after --"),
    (["--pid", "999999999"], "no process 999999999"),
    (["--steps-dir", "/tmp", "--", "python"], "--steps-dir applies to --pid"),
    (["--gpu", "h1000", "--", "python"], "unknown GPU 'h1000'"),
    (["--model", "no-such-model", "--", "python"], "unknown model 'no-such-model'"),
    (["--", "/no/such/binary"], "cannot start '/no/such/binary'"),
])
def test_bad_input_is_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([], init_error=True))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["watch", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


LAUNCHER = """
import os, subprocess, sys
worker = '''
import time
from gpuplan.profiler.watch import hook
hook.start()
for _ in range(4):
    time.sleep(0.3)
    hook.step(tokens=100)
'''
procs = [subprocess.Popen([sys.executable, '-c', worker], env={**os.environ, 'RANK': str(r), 'LOCAL_RANK': str(r)})
         for r in (0, 1)]
sys.exit(max(p.wait() for p in procs))
"""


def test_a_launcher_s_workers_are_followed_one_file_per_rank(tmp_path, monkeypatch):
    """As torchrun does: a launcher process starts one worker per rank (RANK / LOCAL_RANK in its environment)."""
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([], init_error=True))
    out = tmp_path / "ranks.jsonl"
    result = CliRunner().invoke(cli, ["watch", "--interval", "0.1", "-o", str(out), "--", sys.executable, "-c", LAUNCHER])
    assert result.exit_code == 0, result.output
    objs = _objs(out)
    ranks_seen = {p["rank"] for o in objs if o["kind"] == "sample" for p in o["processes"]}
    assert {0, 1} <= ranks_seen and None in ranks_seen          # the launcher has no RANK
    steps = [o for o in objs if o["kind"] == "step"]
    assert sorted((s["rank"], s["step"]) for s in steps) == [(r, s) for r in (0, 1) for s in (1, 2, 3, 4)]
    assert len({s["pid"] for s in steps}) == 2                  # one step file per worker
    m = objs[-1]["measured"]
    assert m["steps"] == 4 and m["steps_timed"] == 3
    per_rank = [sum(s["tokens"] for s in steps if s["rank"] == r and s["step"] >= 2) /
                sum(s["step_time_s"] for s in steps if s["rank"] == r and s["step"] >= 2) for r in (0, 1)]
    assert m["tokens_per_s"] == pytest.approx(sum(per_rank))    # the run's tokens/s: both ranks


def test_the_live_view_sends_the_runs_output_to_a_log(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([], init_error=True))
    out = tmp_path / "live.jsonl"
    result = CliRunner().invoke(cli, ["watch", "--live", "--interval", "0.1", "-o", str(out), "--",
                                      sys.executable, "-c", "print('hello from the run')"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "live.log").read_text() == "hello from the run\n"   # default: the output's name + .log
    assert "gpuplan watch" in result.stderr and "hello from the run" in result.stderr   # the view's last frame


def test_an_unwritable_record_path_is_one_note(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([], init_error=True))
    (tmp_path / "a-file").write_text("")
    result = CliRunner().invoke(cli, ["watch", "--interval", "0.1", "-o", str(tmp_path / "r.jsonl"), "--record",
                                      str(tmp_path / "a-file" / "rec.json"), "--", sys.executable, "-c", "pass"])
    assert result.exit_code == 0 and "Traceback" not in result.output
    assert "no record written to" in " ".join(result.stdout.split()) and "record:" not in result.stderr
