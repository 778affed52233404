"""GpuplanCallback inside a real (tiny, CPU) HF Trainer run, and the setup it reads from the run."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
import transformers

from gpuplan.planner import Attention, Checkpointing, DType, Method, Optimizer, PlannerError, Precision
from gpuplan.planner.io.hf_vocabulary import HF_OPTIM
from gpuplan.profiler.callbacks import REPORT_NAME, GpuplanCallback, StepMemory
from gpuplan.profiler.trainer_setup import setup_from_trainer


def _args(tmp_path, **kw) -> transformers.TrainingArguments:
    defaults = dict(output_dir=str(tmp_path), per_device_train_batch_size=2, max_steps=3, report_to=[],
                    save_strategy="no", logging_strategy="no", use_cpu=True, disable_tqdm=True)
    return transformers.TrainingArguments(**{**defaults, **kw})


def test_trainer_run_writes_a_report_with_the_estimate(tmp_path, tiny_hf):
    data = [{"input_ids": torch.randint(0, 256, (16,)), "labels": torch.randint(0, 256, (16,))} for _ in range(6)]
    args = _args(tmp_path, bf16=True, gradient_checkpointing=True)
    trainer = transformers.Trainer(model=tiny_hf(), args=args, train_dataset=data, callbacks=[GpuplanCallback()])
    trainer.train()
    report = json.loads((tmp_path / REPORT_NAME).read_text())
    assert report["device"] == "cpu" and [s["step"] for s in report["steps"]] == [1, 2, 3]
    assert all(s["process_peak_rss_bytes"] > 0 and s["peak_allocated_bytes"] is None for s in report["steps"])
    assert report["setup"] == {**report["setup"], "method": "full", "precision": "bf16-mixed", "batch_size": 2,
                               "seq_len": 16, "checkpointing": "full", "optimizer": "adamw-fused"}
    assert report["estimate"]["peak_allocated_bytes"] > 0
    rows = {r["name"]: r for r in report["comparison"]}
    assert rows["peak_allocated_bytes"]["measured_bytes"] is None and rows["peak_allocated_bytes"]["error_pct"] is None


def test_lora_run_maps_onto_a_gpuplan_setup(tmp_path, tiny_hf):
    import peft

    lm = peft.get_peft_model(tiny_hf(), peft.LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05,
                                                       target_modules=["q_proj", "v_proj"]))
    args = _args(tmp_path, bf16=True, gradient_accumulation_steps=4, gradient_checkpointing=True,
                 optim="adamw_torch", per_device_train_batch_size=8)
    spec, setup = setup_from_trainer(lm, args, seq_len=512)
    assert spec.model_type == "llama" and spec.n_layers == 2
    assert (setup.method, setup.precision, setup.optimizer) == (Method.LORA, Precision.BF16_MIXED, Optimizer.ADAMW)
    assert (setup.batch_size, setup.seq_len, setup.grad_accum) == (8, 512, 4)
    assert setup.checkpointing is Checkpointing.FULL and setup.attention is Attention.SDPA
    assert (setup.lora.r, setup.lora.alpha, setup.lora.dropout) == (16, 32.0, 0.05)
    assert setup.lora.targets == ("q_proj", "v_proj") and setup.adapter_dtype is DType.FP32


def test_16_bit_weights_are_true_precision(tmp_path, tiny_hf):
    lm = tiny_hf().to(torch.bfloat16)
    _, setup = setup_from_trainer(lm, _args(tmp_path, bf16=True), seq_len=128)
    assert setup.precision is Precision.BF16_TRUE and setup.checkpointing is Checkpointing.NONE


TRANSFORMERS_OPTIM = {m.value for m in transformers.training_args.OptimizerNames}


@pytest.mark.parametrize("optim", sorted(n for n in HF_OPTIM if n in TRANSFORMERS_OPTIM))
def test_every_hf_optimizer_name_of_the_vocabulary_maps(tmp_path, tiny_hf, optim):
    """The callback reads the one table --from-config reads (`sgd` was refused here before)."""
    _, setup = setup_from_trainer(tiny_hf(), _args(tmp_path, optim=optim), seq_len=16)
    assert setup.optimizer is HF_OPTIM[optim]


def test_unmappable_run_reports_why_instead_of_failing(tmp_path, tiny_hf):
    callback = GpuplanCallback()
    callback.steps = [StepMemory(step=1, process_peak_rss_bytes=10)]
    args = _args(tmp_path, optim="rmsprop")
    with pytest.raises(PlannerError, match="optim='rmsprop' has no gpuplan model"):
        setup_from_trainer(tiny_hf(), args, seq_len=16)
    report = callback.report(tiny_hf(), args)
    assert report["estimate"] is None and report["notes"][-1].startswith("no estimate: optim=")


def test_gpu_steps_record_the_allocator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda d=None: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d=None: 3 * 2**30)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda d=None: 4 * 2**30)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda d=None: (75 * 2**30, 80 * 2**30))
    callback = GpuplanCallback()
    callback.device = torch.device("cuda", 0)
    for step in (1, 2):
        callback.on_step_begin(None, SimpleNamespace(global_step=step - 1), None)
        callback.on_step_end(None, SimpleNamespace(global_step=step), None)
    assert callback.measured() == {"peak_allocated_bytes": 3 * 2**30, "peak_reserved_bytes": 4 * 2**30,
                                   "device_total_bytes": 5 * 2**30, "process_peak_rss_bytes": None}


def test_under_gpuplan_watch_the_callback_writes_steps_and_the_setup(tmp_path, tiny_hf, monkeypatch):
    """With GPUPLAN_WATCH_DIR set (as `gpuplan watch` sets it), each optimizer step goes to the watch's
    step file with the training tokens it saw, and the run's setup is reported once."""
    import os

    from gpuplan.profiler.watch import hook
    from gpuplan.profiler.watch.schema import ENV_DIR, Tail, step_file

    monkeypatch.setenv(ENV_DIR, str(tmp_path))
    monkeypatch.setattr(hook, "_writer", None)
    data = [{"input_ids": torch.randint(0, 256, (16,)), "labels": torch.randint(0, 256, (16,))} for _ in range(8)]
    args = _args(tmp_path / "out", gradient_accumulation_steps=2)
    try:
        transformers.Trainer(model=tiny_hf(), args=args, train_dataset=data, callbacks=[GpuplanCallback()]).train()
    finally:
        if hook._writer is not None:
            hook._writer.file.close()
        monkeypatch.setattr(hook, "_writer", None)
    lines = Tail(step_file(tmp_path, os.getpid())).read()
    assert [x["kind"] for x in lines] == ["process", "setup", "step", "step", "step"]
    setup = lines[1]
    assert setup["setup"]["batch_size"] == 2 and setup["setup"]["grad_accum"] == 2 and setup["setup"]["seq_len"] == 16
    assert setup["model_config"]["hidden_size"] == 64
    steps = lines[2:]
    assert [s["step"] for s in steps] == [1, 2, 3]
    assert all(s["tokens"] == 2 * 2 * 16 for s in steps)            # micro-batch x accumulation x sequence
    assert all(s["device"] == "cpu" and s["peak_rss_bytes"] > 0 for s in steps)   # CPU: RSS, no allocator
