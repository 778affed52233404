"""The hook inside a training process: one step line per call under a watch, nothing outside one."""
import json
import os
import sys

import pytest
import torch

from gpuplan.planner import Checkpointing, TrainingSetup, model_from_config
from gpuplan.profiler.watch import hook
from gpuplan.profiler.watch.schema import ENV_DIR, SCHEMA, Tail, step_file

TINY = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
        "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 256, "max_position_embeddings": 128}


@pytest.fixture
def watched(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_DIR, str(tmp_path))
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setattr(hook, "_writer", None)
    yield tmp_path
    if hook._writer is not None:
        hook._writer.file.close()
    monkeypatch.setattr(hook, "_writer", None)


def test_outside_a_watch_the_hook_does_nothing(monkeypatch):
    monkeypatch.delenv(ENV_DIR, raising=False)
    monkeypatch.setattr(hook, "_writer", None)
    assert hook.step(tokens=10) is None and hook.report_setup(TrainingSetup()) is None and hook._writer is None


def test_steps_are_written_with_time_tokens_and_cpu_memory(watched):
    hook.start()
    a = hook.step(tokens=64)
    b = hook.step(tokens=64, peak_reserved_bytes=123)
    lines = Tail(step_file(watched, os.getpid())).read()
    assert [x["kind"] for x in lines] == ["process", "step", "step"] and all(x["schema"] == SCHEMA for x in lines)
    assert lines[0]["rank"] == 3 and lines[0]["device"] == "cpu" and lines[0]["torch"] == torch.__version__
    assert (a["step"], b["step"], a["tokens"], b["rank"]) == (1, 2, 64, 3)
    assert a["step_time_s"] >= 0 and b["step_time_s"] >= 0
    assert a["rss_bytes"] > 0 and a["peak_rss_bytes"] > 0 and a["device"] == "cpu"
    assert b["peak_reserved_bytes"] == 123 and lines[2] == b


def test_report_setup_carries_the_models_config(watched):
    spec = model_from_config(TINY, name="tiny-llama")
    setup = TrainingSetup(batch_size=2, seq_len=32, checkpointing=Checkpointing.NONE)
    obj = hook.report_setup(setup, spec)
    assert obj["model"] == "tiny-llama" and obj["model_config"]["hidden_size"] == 64
    assert TrainingSetup.from_dict(obj["setup"]) == setup.with_(base_dtype=setup.base_weight_dtype)


def test_tail_reads_only_complete_lines(tmp_path):
    path = tmp_path / "steps-1.jsonl"
    t = Tail(path)
    assert t.read() == []   # not there yet
    path.write_text(json.dumps({"schema": SCHEMA, "kind": "step", "step": 1}) + "\n" + '{"schema": "gpu')
    assert [x["step"] for x in t.read()] == [1]
    with open(path, "a") as f:
        f.write('plan.watch-sample/1", "kind": "step", "step": 2}\nnot json\n')
    assert [x["step"] for x in t.read()] == [2] and t.read() == []


def test_a_gone_watch_never_stops_the_training(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "removed-by-the-watch"))
    monkeypatch.setattr(hook, "_writer", None)
    monkeypatch.setattr(hook, "_broken", None)
    assert hook.step(tokens=1) is None and hook.step(tokens=1) is None   # no folder: off, no exception
    monkeypatch.setenv(ENV_DIR, str(tmp_path))
    assert hook.step(tokens=1)["step"] == 1
    hook._writer.file.close()                                            # the file went away under the hook
    assert hook.step(tokens=1) is None
    monkeypatch.setattr(hook, "_writer", None)


class _FakeCuda:
    """torch.cuda as the hook sees it in a GPU process (no GPU here): allocator figures and a peak reset."""

    def __init__(self):
        self.resets, self.peak = 0, 7 * 2**30

    def is_available(self):
        return True

    def is_initialized(self):
        return True

    def current_device(self):
        return 1

    def get_device_name(self, d):
        return "NVIDIA H100 80GB HBM3"

    def memory_allocated(self, d):
        return 5 * 2**30

    def memory_reserved(self, d):
        return 8 * 2**30

    def max_memory_allocated(self, d):
        return self.peak

    def max_memory_reserved(self, d):
        return 9 * 2**30

    def reset_peak_memory_stats(self, d):
        self.resets += 1
        self.peak = 5 * 2**30


def test_on_a_gpu_the_hook_reads_the_allocator_and_resets_its_peaks(watched, monkeypatch):
    from types import SimpleNamespace

    cuda = _FakeCuda()
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda, __version__="2.13.0+cu128",
                                                              version=SimpleNamespace(cuda="12.8")))
    a = hook.step(tokens=8192)
    b = hook.step(tokens=8192)
    assert (a["device"], a["allocated_bytes"], a["reserved_bytes"]) == ("cuda:1", 5 * 2**30, 8 * 2**30)
    assert a["peak_allocated_bytes"] == 7 * 2**30 and a["peak_reserved_bytes"] == 9 * 2**30
    assert b["peak_allocated_bytes"] == 5 * 2**30 and cuda.resets == 2    # each step's peak is its own
    assert "rss_bytes" not in a
    process = Tail(step_file(watched, os.getpid())).read()[0]
    assert (process["device"], process["device_name"], process["cuda"]) == ("cuda:1", "NVIDIA H100 80GB HBM3", "12.8")
