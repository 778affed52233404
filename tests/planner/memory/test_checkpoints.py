"""Checkpoint bytes against the files the real libraries write for a tiny model: the tensors'
bytes exact, the headers and containers within their estimate."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from gpuplan.planner import Fsdp, Method, ParallelSpec, PlannerError, TrainingSetup, model_from_config, resolve_model
from gpuplan.planner.memory.checkpoints import (SAFETENSORS_ENTRY_BYTES, TORCH_SAVE_TENSOR_BYTES, SavePlan,
                                               checkpoint_estimate, save_peak_bytes)
from gpuplan.planner.memory.pieces import terms

TINY = json.loads((Path(__file__).resolve().parents[2] / "app" / "fixtures" / "tiny-llama-config.json").read_text())


def _safetensors_data_bytes(path: Path) -> tuple[int, int]:
    """(data bytes, header bytes) of a safetensors file, read from its header."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return len(raw) - 8 - n, 8 + n


def test_full_checkpoint_of_llama_8b_holds_fp32_weights_and_two_adamw_moments():
    e = checkpoint_estimate(resolve_model("llama-3.1-8b"), TrainingSetup(), SavePlan(save_steps=100))
    n = 8_030_261_248
    assert e.files["optimizer.pt"] - 2 * 4 * n < 1 << 20          # exp_avg and exp_avg_sq in fp32
    assert e.files["model.safetensors"] - 4 * n < 1 << 20           # fp32 weights under bf16-mixed


def test_save_total_limit_bounds_the_disk():
    m = resolve_model("qwen-2.5-0.5b")
    e = checkpoint_estimate(m, TrainingSetup(), SavePlan(save_steps=100, save_total_limit=2, total_steps=1000))
    assert (e.checkpoints, e.kept) == (10, 2) and e.bytes_on_disk_total == 2 * e.bytes_per_checkpoint
    with pytest.raises(PlannerError, match="save-steps"):
        checkpoint_estimate(m, TrainingSetup(), SavePlan(save_steps=0))


def test_a_one_gpu_save_needs_only_what_lives_between_steps():
    m = resolve_model("llama-3.2-1b")
    s = TrainingSetup()
    st = terms(m, s)[1]
    assert save_peak_bytes(m, s) == st.weights + st.optimizer_state
    assert save_peak_bytes(m, s.with_(parallel=ParallelSpec(gpus=8, fsdp=Fsdp.FULL))) < save_peak_bytes(m, s)


def test_cli_estimate_adds_the_checkpoint_object():
    from click.testing import CliRunner

    from gpuplan.app.cli import cli

    r = CliRunner().invoke(cli, ["estimate", "-m", "qwen-2.5-0.5b", "--save-steps", "100", "--max-steps", "1000",
                                 "--save-total-limit", "3", "--disk-bandwidth", "500MB/s", "--json"])
    assert r.exit_code == 0, r.output
    c = json.loads(r.stdout)["checkpoint"]
    assert c["checkpoints"] == 10 and c["kept"] == 3 and c["bytes_on_disk_total"] == 3 * c["bytes_per_checkpoint"]
    assert c["save_seconds"] == pytest.approx(c["bytes_per_checkpoint"] / 500e6)
    bad = CliRunner().invoke(cli, ["estimate", "-m", "qwen-2.5-0.5b", "--save-steps", "10", "--disk-bandwidth", "fast"])
    assert bad.exit_code == 2 and "bandwidth" in bad.output and "Traceback" not in bad.output


torch = pytest.importorskip("torch")  # the real-file checks below need torch
transformers = pytest.importorskip("transformers")


def test_model_safetensors_of_a_tiny_llama(tmp_path):
    cfg = transformers.AutoConfig.for_model(**{k: v for k, v in TINY.items() if k != "architectures"})
    lm = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    lm.save_pretrained(tmp_path)
    data, header = _safetensors_data_bytes(tmp_path / "model.safetensors")
    est = checkpoint_estimate(model_from_config(TINY, "tiny"), TrainingSetup(), SavePlan(save_steps=1, save_only_model=True))
    tensors = len(lm.state_dict()) - (1 if cfg.tie_word_embeddings else 0)
    assert data == sum(p.numel() * p.element_size() for p in lm.parameters())     # tied weights once
    assert est.files["model.safetensors"] - 8 - tensors * SAFETENSORS_ENTRY_BYTES == data
    assert abs(header - 8 - tensors * SAFETENSORS_ENTRY_BYTES) < tensors * 60      # the header estimate


def test_adapter_and_optimizer_files_of_a_tiny_llama_lora(tmp_path):
    peft = pytest.importorskip("peft")
    cfg = transformers.AutoConfig.for_model(**{k: v for k, v in TINY.items() if k != "architectures"})
    lm = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    lm = peft.get_peft_model(lm, peft.LoraConfig(r=8, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    lm.save_pretrained(tmp_path)
    data, _ = _safetensors_data_bytes(tmp_path / "adapter_model.safetensors")
    opt = torch.optim.AdamW([p for p in lm.parameters() if p.requires_grad], fused=False)
    for p in lm.parameters():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    opt.step()
    torch.save(opt.state_dict(), tmp_path / "optimizer.pt")
    est = checkpoint_estimate(model_from_config(TINY, "tiny"), TrainingSetup(method=Method.LORA), SavePlan(save_steps=1))
    adapters = sum(p.numel() * 4 for p in lm.parameters() if p.requires_grad)
    assert data == adapters
    real_opt = (tmp_path / "optimizer.pt").stat().st_size
    tensors = sum(1 for p in lm.parameters() if p.requires_grad)
    assert est.files["optimizer.pt"] - TORCH_SAVE_TENSOR_BYTES * tensors == 2 * adapters   # the two moments
    overhead = real_opt - 2 * adapters                                                       # zip and pickle
    assert 0.7 * TORCH_SAVE_TENSOR_BYTES * tensors < overhead < 1.3 * TORCH_SAVE_TENSOR_BYTES * tensors

