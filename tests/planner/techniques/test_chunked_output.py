"""techniques/chunked_output.py: torchtune's CEWithChunkedOutputLoss, against its own formula's parts and
the recorded simulated rows (profiler/matrix.py TORCHTUNE_MATRIX) within 1%."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpuplan.planner import Method, Precision, TrainingSetup, estimate, resolve_model
from gpuplan.planner.specs.enums import DType, Loss
from gpuplan.planner.specs.errors import NoClosedForm, PlannerError
from gpuplan.planner.specs.parallel import ParallelSpec
from gpuplan.planner.specs.resolved import resolve
from gpuplan.planner.specs.setup import LoraSpec
from gpuplan.planner.techniques import chunked_output

LLAMA = resolve_model("llama-3.2-1b")
RECORD = Path(__file__).resolve().parents[3] / "data" / "measurements" / "accuracy_simulate_torchtune.json"
TT = TrainingSetup(method=Method.LORA, precision=Precision.BF16_TRUE, loss=Loss.CHUNKED_OUTPUT,
                   lora=LoraSpec(adapter_dtype=DType.BF16), batch_size=4, seq_len=1000)


def test_bytes_of_the_chunks():
    """4 x 1000 tokens in 8 chunks of ceil(1000/8) = 125 positions: bf16 logits of all, fp32 log_softmax
    outputs of all, one chunk's fp32 upcast; backward starts with one chunk's two fp32 gradients."""
    V, T, Tc = LLAMA.vocab, 4000, 4 * 125
    fwd, saved, bwd = chunked_output.loss_bytes(LLAMA, resolve(LLAMA, TT), T, 4)
    assert (fwd, saved, bwd) == (T * V * 2 + T * V * 4 + Tc * V * 4, T * V * 4, Tc * V * 8)


def test_between_the_full_logits_and_liger():
    peaks = {loss: estimate(LLAMA, TT.with_(loss=loss)).peak_allocated_bytes for loss in Loss if loss is not Loss.TRL}
    assert peaks[Loss.CHUNKED] < peaks[Loss.CHUNKED_OUTPUT] < peaks[Loss.HF]


@pytest.mark.parametrize("setup, model", [
    (TT.with_(method=Method.FULL, precision=Precision.BF16_MIXED), "llama-3.2-1b"),  # fp32 lm_head under autocast
    (TT, "gemma-2-2b"),                                                                 # final logit soft-capping
])
def test_what_torchtune_does_not_run_has_no_closed_form(setup, model):
    with pytest.raises(NoClosedForm, match="chunked-output"):
        estimate(resolve_model(model), setup)


def test_multi_gpu_is_refused_in_one_line():
    with pytest.raises(PlannerError, match="planned for one GPU only"):
        TT.with_(parallel=ParallelSpec(gpus=2)).validate()


def _rows() -> list[dict]:
    return [r for r in json.loads(RECORD.read_text())["results"] if r["measured_bytes"]]


@pytest.mark.parametrize("row", _rows(), ids=lambda r: f'{r["model"]} {r["setup"]}')
def test_each_torchtune_row_within_one_percent_of_the_simulated_step(row):
    setup = TrainingSetup.from_dict({**row["setup"], "batch_size": row["batch_size"], "seq_len": row["seq_len"]})
    est = estimate(resolve_model(row["model"]), setup).peak_allocated_bytes
    assert abs(est - row["measured_bytes"]) <= 0.01 * row["measured_bytes"]
