"""Buy or rent: for a workload, which card(s) to buy, and after how many hours (runs) buying beats renting.

API: `purchase_options(rec_all, rented, Ownership(...)) -> tuple[PurchaseOption, ...]` where `rec_all`
holds every qualifying plan of a recommend() run that did not require a rental price, and `rented`
is the best rented plan (the comparison). `PurchaseOption.to_dict()` for JSON.

    energy $/h      = GPUs x board power (kW) x overhead x $/kWh
    break-even runs = purchase / (rented $ per run - energy $ per run)
    break-even time = runs x hours per run / utilization   (calendar time)
Renting cost per run is the best rented plan's (cheapest provider, on-demand unless --spot).
Not counted: the host machine, resale value, interest, staff, cloud egress and storage.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from .plan import Plan
from ..memory.result import Assumption

# Average US commercial electricity price, 2024: 12.7 cents/kWh [EIA Electric Power Monthly,
# Table 5.6.A]; rounded up to 0.15 to cover higher-priced states. Override with --kwh-price.
DEFAULT_USD_PER_KWH = 0.15
# Host CPU, PSU losses and cooling on top of the GPU's board power: assumption (a datacenter
# PUE of ~1.2-1.5 plus the host; the Uptime Institute 2023 survey's average PUE is 1.58).
DEFAULT_POWER_OVERHEAD = 1.5
DEFAULT_UTILIZATION = 0.5    # fraction of calendar time the cards train: assumption, --utilization


@dataclass(frozen=True)
class Ownership:
    usd_per_kwh: float = DEFAULT_USD_PER_KWH
    utilization: float = DEFAULT_UTILIZATION
    power_overhead: float = DEFAULT_POWER_OVERHEAD

    def assumptions(self) -> tuple[Assumption, ...]:
        return (Assumption("usd_per_kwh", self.usd_per_kwh, "USD/kWh", "EIA 2024 US commercial average 12.7 c/kWh, rounded up; --kwh-price"),
                Assumption("utilization", self.utilization, "fraction", "assumption: share of calendar time training; --utilization"),
                Assumption("power_overhead", self.power_overhead, "x board power", "assumption: host, PSU losses, cooling (PUE ~1.2-1.6)"))


@dataclass(frozen=True)
class PurchaseOption:
    plan: Plan                          # the workload on the owned cards
    purchase_usd: float                 # all cards
    energy_usd_per_run: float
    rent_usd_per_run: float             # the best rented plan's cost per run
    break_even_runs: float | None       # None: renting is cheaper per run than the power bill
    break_even_days: float | None       # calendar days at the utilization

    @property
    def owned_usd_per_gpu_hour(self) -> float:
        return self.energy_usd_per_run / max(self.plan.gpu_hours, 1e-12)

    def to_dict(self) -> dict[str, Any]:
        return {"gpu": self.plan.gpu.name, "gpus": self.plan.gpus, "purchase_usd": self.purchase_usd,
                "hours_per_run": self.plan.hours, "energy_usd_per_run": self.energy_usd_per_run,
                "rent_usd_per_run": self.rent_usd_per_run, "break_even_runs": self.break_even_runs,
                "break_even_days": self.break_even_days, "description": self.plan.describe(),
                "purchase_source": self.plan.gpu.raw.get("purchase_source", "")}


def energy_usd(plan: Plan, own: Ownership) -> float:
    """Electricity for one run on owned cards."""
    kw = plan.gpus * plan.gpu.power_watts / 1000 * own.power_overhead
    return kw * plan.hours * own.usd_per_kwh


def purchase_options(plans: Iterable[Plan], rented: Plan, own: Ownership | None = None) -> tuple[PurchaseOption, ...]:
    """Per GPU type with a purchase price: the fewest cards that run the workload (then the fastest),
    with break-even against `rented`; soonest break-even first."""
    own = own or Ownership()
    best: dict[str, Plan] = {}
    for p in plans:
        if p.gpu.purchase_usd is None:
            continue
        cur = best.get(p.gpu.name)
        if cur is None or (p.gpus, p.hours) < (cur.gpus, cur.hours):
            best[p.gpu.name] = p
    out = []
    for p in best.values():
        buy = p.gpus * float(p.gpu.purchase_usd)
        energy = energy_usd(p, own)
        saving = rented.usd - energy
        runs = buy / saving if saving > 0 else None
        days = runs * p.hours / own.utilization / 24 if runs is not None else None
        out.append(PurchaseOption(p, buy, energy, rented.usd, runs, days))
    return tuple(sorted(out, key=lambda o: (o.break_even_runs is None, o.break_even_runs or 0.0, o.purchase_usd)))
