"""The watch loop, attached to a real (sleeping) process, with a fake NVML and step lines written as a
run's hook would: samples, steps, the estimate from the run's setup line, the warnings, the summary,
the live view's text and the record."""
import json
import subprocess
import sys

from fake_nvml import GIB, FakeNvml
from rich.console import Console

from gpuplan.planner import Checkpointing, Precision, TrainingSetup, model_from_config, resolve_gpu
from gpuplan.planner.io.records import validate_record
from gpuplan.profiler.watch.record import watch_record
from gpuplan.profiler.watch.schema import SCHEMA, line, Kind
from gpuplan.profiler.watch.session import ATTACH_NOTE, Session, WatchConfig
from gpuplan.profiler.watch.view import print_summary, render

TINY = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
        "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 256, "max_position_embeddings": 128}
SETUP = TrainingSetup(precision=Precision.FP32, batch_size=2, seq_len=32, checkpointing=Checkpointing.NONE)


def _steps_dir(tmp_path, pid, n=12):
    d = tmp_path / "steps"
    d.mkdir()
    spec = model_from_config(TINY, name="tiny-llama")
    rows = [line(Kind.PROCESS, 1.0, pid=pid, rank=0, local_rank=0, torch="2.13.0+cu128", cuda="12.8",
                 device="cuda:0", device_name="NVIDIA H100 80GB HBM3"),
            line(Kind.SETUP, 1.0, pid=pid, rank=0, model="tiny-llama", model_config=TINY, setup=SETUP.to_dict(spec))]
    for s in range(1, n + 1):   # allocated between steps grows 1 MiB a step (a leak); reserved near capacity
        rows.append(line(Kind.STEP, 1.0 + s, pid=pid, rank=0, step=s, step_time_s=None if s == 1 else 0.25,
                         tokens=64, device="cuda:0", allocated_bytes=GIB // 2 + s * 2**20,
                         peak_allocated_bytes=(GIB * 7) // 10, peak_reserved_bytes=(GIB * 8) // 10))
    (d / f"steps-{pid}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def test_attached_watch_samples_folds_steps_and_warns(tmp_path):
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.2)"])
    gpu = {"name": "NVIDIA H100 80GB HBM3", "total": GIB, "used": (GIB * 95) // 100}
    nv = FakeNvml([gpu], processes=lambda i: [(target.pid, (GIB * 9) // 10)])
    out = tmp_path / "run.jsonl"
    cfg = WatchConfig(output=out, pid=target.pid, interval_s=0.1, steps_dir=_steps_dir(tmp_path, target.pid),
                      max_seq_len=128, oom_margin=0.1)
    updates = []
    state = Session(cfg, nvml=nv).run(on_update=lambda st: updates.append(len(st.samples)))
    target.wait()

    objs = [json.loads(x) for x in out.read_text().splitlines()]
    assert all(o["schema"] == SCHEMA for o in objs)
    kinds = [o["kind"] for o in objs]
    assert kinds[0] == "start" and kinds[-1] == "summary" and kinds.count("step") == 12
    assert kinds.count("sample") == len(state.samples) >= 3 and updates[-1] == len(state.samples)
    sample = next(o for o in objs if o["kind"] == "sample")
    assert sample["processes"][0]["pid"] == target.pid and sample["rss_bytes"] > 0
    assert sample["gpus"][0]["run_memory_bytes"] == (GIB * 9) // 10 and sample["gpus"][0]["run_memory_source"] == "process"

    # the estimate comes from the run's own setup line; the longest sequence (128) grows it
    assert state.expected is not None and state.expected.setup.seq_len == 32 and state.expected.max_seq_len == 128
    assert state.expected.growth_bytes > 0 and state.expected.gpu == resolve_gpu("h100").name
    assert state.expected.tokens_per_s > 0
    # 0.8 GiB reserved + 0.1 GiB outside the allocator sits at the limit (1 GiB less 10%): the growth tips it
    assert state.oom is not None and state.oom.capacity_bytes == GIB and state.oom.growth_bytes == state.expected.growth_bytes
    assert state.oom.overhead_bytes == (GIB * 9) // 10 - (GIB * 8) // 10
    assert state.leak is not None and state.leak.rise_bytes == 8 * 2**20
    assert ATTACH_NOTE in state.notes

    summary = objs[-1]
    assert summary["measured"]["peak_reserved_bytes"] == (GIB * 8) // 10 and summary["measured"]["steps"] == 12
    assert summary["measured"]["step_time_s"] == 0.25 and summary["measured"]["tokens_per_s"] == 256.0
    assert len(summary["warnings"]) == 2 and summary["warnings"][0].startswith("OOM risk")
    rows = {r["name"]: r for r in summary["comparison"]}
    assert rows["peak_reserved_bytes"]["estimated"] == state.expected.peak_reserved_bytes

    console = Console(record=True, width=140)
    console.print(render(state))
    print_summary(console, state)
    text = console.export_text()
    for want in ("gpuplan watch", "attach: pid", "GPU 0 (run, NVML)", "reserved (step peak)", "tokens/s",
                 "OOM risk", "leak: allocated between steps rose", "measured vs estimated", "sw_power_cap"):
        assert want in text, want

    record = watch_record(state, driver="580.65.06", cuda_driver="12.8", alloc_conf="", files={"samples": str(out)})
    validate_record(record, "watch record")
    assert record["gpu"] == "h100-sxm-80gb" and record["environment"]["torch"] == "2.13.0+cu128"
    assert record["memory"]["peak_reserved_bytes"] == (GIB * 8) // 10
    assert record["memory"]["device_total_bytes"] == (GIB * 9) // 10
    assert record["run_phases"]["first_step"]["peak_allocated_bytes"] == (GIB * 7) // 10
    assert record["timing"] is None and any("not recorded as timing" in n for n in record["notes"])   # not a preset


def test_the_live_view_shows_the_end_of_the_runs_output(tmp_path):
    code = "import sys; [print(f'line {i}') for i in range(9)]; sys.exit(1)"
    cfg = WatchConfig(output=tmp_path / "r.jsonl", command=[sys.executable, "-c", code], interval_s=0.1,
                      log=tmp_path / "r.log")
    state = Session(cfg, nvml=FakeNvml([])).run()
    assert state.exit_code == 1 and state.log_tail(3) == ["line 6", "line 7", "line 8"]
    console = Console(record=True, width=100)
    console.print(render(state))
    text = console.export_text()
    assert "the run's output" in text and "line 4" in text and "line 3" not in text
    assert "the run exited with status 1" in text


def test_sigterm_to_the_watch_ends_the_run_and_the_watch_concludes(tmp_path):
    import os
    import signal

    before = signal.getsignal(signal.SIGTERM)
    cfg = WatchConfig(output=tmp_path / "t.jsonl", command=[sys.executable, "-c", "import time; time.sleep(60)"],
                      interval_s=0.1)
    sent = []

    def kill_the_watch(state):   # from the first update on, the watch's handler is in place
        if not sent:
            sent.append(os.kill(os.getpid(), signal.SIGTERM))
    state = Session(cfg, nvml=FakeNvml([])).run(on_update=kill_the_watch)
    assert state.exit_code == -signal.SIGTERM and state.summary["exit_code"] == -signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before           # the handler is the watch's only while it runs


def test_a_target_that_is_not_there_is_one_clear_error(tmp_path):
    import pytest

    from gpuplan.planner import PlannerError

    with pytest.raises(PlannerError, match="no process 999999999"):
        Session(WatchConfig(output=tmp_path / "x.jsonl", pid=999999999), nvml=FakeNvml([])).run()
