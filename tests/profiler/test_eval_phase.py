"""The eval phase's estimate (planner/memory/evaluation.py) against the real eval step under
FakeTensorMode: `model(**inputs)` under no_grad and the training autocast, and, with
compute_metrics, the logits kept across steps by transformers' own EvalLoopContainer."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from transformers.trainer_pt_utils import EvalLoopContainer  # noqa: E402

from gpuplan.planner import Component, Method, Phase, Precision, TrainingSetup, resolve_model  # noqa: E402
from gpuplan.planner.memory.evaluation import EvalPlan, eval_estimate  # noqa: E402
from gpuplan.profiler.simulate import fake_eval_model  # noqa: E402


def _simulated_eval(name: str, setup: TrainingSetup, plan: EvalPlan) -> tuple[int, int]:
    """(weights, peak allocated) of `plan.eval_batches` eval steps, logits kept as Trainer keeps them."""
    with fake_eval_model(resolve_model(name), setup) as (lm, tracker, built):
        weights = tracker.current
        preds = EvalLoopContainer(do_nested_concat=True, padding_index=-100)
        for _ in range(plan.eval_batches):
            ids = torch.randint(0, lm.config.vocab_size, (plan.batch_size, plan.seq_len))
            with torch.no_grad(), built.autocast():
                out = lm(input_ids=ids, labels=ids)
            logits = out.logits
            del out
            if plan.accumulate_logits:
                preds.add(logits)
            del logits
        return weights, tracker.peaks[Phase.FORWARD].total


@pytest.mark.parametrize("name,setup,plan", [
    ("qwen-2.5-0.5b", TrainingSetup(), EvalPlan(batch_size=4, seq_len=256)),
    ("qwen-2.5-0.5b", TrainingSetup(method=Method.LORA), EvalPlan(batch_size=2, seq_len=512)),
    ("llama-3.2-1b", TrainingSetup(method=Method.QLORA), EvalPlan(batch_size=2, seq_len=256)),
    ("qwen-2.5-0.5b", TrainingSetup(precision=Precision.BF16_TRUE),
     EvalPlan(batch_size=2, seq_len=256, accumulate_logits=True, eval_batches=3)),
])
def test_eval_peak_matches_the_simulated_eval_steps(name, setup, plan):
    weights, peak = _simulated_eval(name, setup, plan)
    est = eval_estimate(resolve_model(name), setup, plan)
    # the simulation builds the optimizer without state (it is lazy): compare without it
    planned = est.peak_allocated_bytes - est.components[Component.OPTIMIZER_STATE]
    assert planned == pytest.approx(peak, rel=0.005), (planned, peak)
    assert est.components[Component.WEIGHTS] == pytest.approx(weights, rel=0.001)


def test_accumulated_logits_grow_with_the_eval_steps_kept_on_the_gpu():
    m, s = resolve_model("llama-3.1-8b"), TrainingSetup(method=Method.QLORA, seq_len=2048)
    one = eval_estimate(m, s, EvalPlan())
    many = eval_estimate(m, s, EvalPlan(accumulate_logits=True, eval_batches=100))
    bounded = eval_estimate(m, s, EvalPlan(accumulate_logits=True, eval_batches=100, accumulation_steps=4))
    per_step = 8 * 2048 * m.vocab * 2
    assert many.components[Component.LOGITS] == (2 * 100 - 1) * per_step
    assert one.peak_allocated_bytes < bounded.peak_allocated_bytes < many.peak_allocated_bytes
    assert many.steps_on_gpu == 100 and bounded.steps_on_gpu == 4
