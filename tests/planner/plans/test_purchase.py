"""Buy vs rent: break-even arithmetic and the choice of cards."""
import pytest

from gpuplan.planner.io.catalog import resolve_gpu, resolve_model
from gpuplan.planner.specs.enums import Method
from gpuplan.planner.plans.plan import make_plan
from gpuplan.planner.plans.purchase import Ownership, energy_usd, purchase_options
from gpuplan.planner.specs.setup import TrainingSetup

M = resolve_model("qwen-2.5-1.5b")
S = TrainingSetup(method=Method.LORA, batch_size=4)


def plan(gpu):
    return make_plan(M, S, resolve_gpu(gpu), 100_000_000, 1.0, 10 * 2**30)


def test_break_even_arithmetic():
    owned, rented = plan("rtx-4090"), plan("h100")
    own = Ownership(usd_per_kwh=0.2, utilization=0.5, power_overhead=1.5)
    (o,) = purchase_options([owned], rented, own)
    energy = 450 / 1000 * 1.5 * owned.hours * 0.2
    assert o.energy_usd_per_run == pytest.approx(energy) == pytest.approx(energy_usd(owned, own))
    assert o.break_even_runs == pytest.approx(1599 / (rented.usd - energy))
    assert o.break_even_days == pytest.approx(o.break_even_runs * owned.hours / 0.5 / 24)


def test_never_when_power_costs_more_than_renting():
    owned, rented = plan("rtx-4090"), plan("rtx-4090")
    (o,) = purchase_options([owned], rented, Ownership(usd_per_kwh=100.0))
    assert o.break_even_runs is None and o.break_even_days is None


def test_cards_without_a_price_are_skipped_and_sorted():
    rented = plan("h100")
    opts = purchase_options([plan("rtx-4090"), plan("a10g"), plan("rtx-3090"), plan("h100")], rented)
    names = [o.plan.gpu.name for o in opts]
    assert "a10g" not in names      # no purchase price in the catalog
    runs = [o.break_even_runs for o in opts if o.break_even_runs is not None]
    assert runs == sorted(runs)
