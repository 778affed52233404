"""Two paths to one answer [DESIGN.md]: the planner's closed form where it has one, else the
simulator (the real transformers model and the real peft method under FakeTensorMode), saying
which answered; and, for sweeps over setups without a closed form, a model fitted to a few
simulations.

    estimate_or_simulate(model, setup) -> (MemoryEstimate, Source)
    fitted(model, setup) -> SweepFit        # fit.estimate(b, s) in microseconds
    fit_from_simulations(model, setup, gpu, reason) -> FitResult   # gpuplan fit without a closed form

Simulated answers and fits are cached on disk (cache_dir()), keyed by the model's config, the
setup and the torch / transformers / peft versions, so a repeated query costs a file read.
This module imports torch only when it simulates: without the [profile] extra it still answers
every closed-form setup, and says what to install for the rest.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from gpuplan.planner.memory.estimate import estimate
from gpuplan.planner.memory.load import run_phase_totals
from gpuplan.planner.plans.fit import fit as run_fit
from gpuplan.planner import peak_figures
from gpuplan.planner.memory.result import MemoryEstimate
from gpuplan.planner.specs.enums import Component, Phase, Source
from gpuplan.planner.specs.errors import NoClosedForm, PlannerError
from gpuplan.planner.specs.model import ModelSpec
from gpuplan.planner.specs.params import param_counts
from gpuplan.planner.specs.setup import TrainingSetup

CACHE_ENV = "GPUPLAN_CACHE_DIR"
CACHE_SCHEMA = 1          # bump when what is stored changes
INSTALL_HINT = "pip install 'gpuplan[profile]'"


def cache_dir() -> Path:
    """$GPUPLAN_CACHE_DIR, else $XDG_CACHE_HOME/gpuplan, else ~/.cache/gpuplan."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gpuplan"


def _versions() -> dict[str, str | None]:
    out = {}
    for dist in ("torch", "transformers", "peft", "bitsandbytes"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def cache_key(model: ModelSpec, setup: TrainingSetup, kind: str) -> str:
    """sha256 of (model config, setup, library versions, what is cached)."""
    payload = {"schema": CACHE_SCHEMA, "kind": kind, "config": dict(model.hf_config), "model": model.name,
               "setup": setup.to_dict(), "versions": _versions()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _read(key: str) -> dict[str, Any] | None:
    try:
        return json.loads((cache_dir() / f"{key}.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _write(key: str, value: dict[str, Any]) -> None:
    """Atomic: a temporary file in the same folder, renamed over the key's file."""
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(value, f)
        os.replace(tmp, folder / f"{key}.json")
    except OSError:
        pass   # a read-only cache folder costs speed, not the answer


def _require_profiler(reason: str) -> None:
    missing = [m for m in ("torch", "transformers", "peft") if importlib.util.find_spec(m) is None]
    if missing:
        raise PlannerError(f"{reason}; the simulator answers it but needs {', '.join(missing)}: {INSTALL_HINT}")


def _phases_to_json(phases: dict[Phase, dict[Component, int]]) -> dict[str, dict[str, int]]:
    return {p.value: {c.value: int(v) for c, v in comps.items()} for p, comps in phases.items()}


def _phases_from_json(d: dict[str, dict[str, int]]) -> dict[Phase, dict[Component, int]]:
    return {Phase(p): {Component(c): int(v) for c, v in comps.items()} for p, comps in d.items()}


def trainable_params(model: ModelSpec, setup: TrainingSetup) -> int:
    """Trainable parameters as peft counts them (get_nb_trainable_parameters), on a meta build."""
    import torch  # lazy: torch, transformers and peft load only when a setup is simulated

    from .build import build_model  # lazy: torch, transformers and peft load only when a setup is simulated

    lm, _ = build_model(model, setup, torch.device("meta"), simulated=True)
    return int(lm.get_nb_trainable_parameters()[0])


def _simulated_record(model: ModelSpec, setup: TrainingSetup) -> dict[str, Any]:
    from .simulate import simulate  # lazy: torch, transformers and peft load only when a setup is simulated

    sim = simulate(model, setup)
    return {"phase_components": _phases_to_json(sim.phase_components), "trainable": trainable_params(model, setup),
            "notes": list(sim.notes)}


def _run_simulation(model: ModelSpec, setup: TrainingSetup, reason: str) -> dict[str, Any]:
    """_simulated_record, with the simulator's own failure turned into one line."""
    try:
        return _simulated_record(model, setup)
    except PlannerError:
        raise
    except Exception as exc:  # noqa: BLE001  (any library error becomes the user's one line)
        from torch._subclasses.fake_tensor import DataDependentOutputException  # lazy: torch, transformers and peft load only when a setup is simulated

        why = (f"its code reads tensor values ({exc}), which FakeTensorMode cannot give"
               if isinstance(exc, DataDependentOutputException) else
               f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
        raise PlannerError(f"{reason or 'this setup'}, and the simulator cannot run it: {why}") from None


def _estimate_from(model: ModelSpec, setup: TrainingSetup, phases: dict[Phase, dict[Component, int]],
                   trainable: int, notes: list[str], source: Source) -> MemoryEstimate:
    fig = peak_figures(phases)
    d = setup.to_dict()
    d["model"] = model.name
    return MemoryEstimate(
        peak_allocated_bytes=fig.allocated, peak_reserved_bytes=fig.reserved, device_total_bytes=fig.device_total,
        peak_phase=fig.peak_phase, components=fig.components, phases=fig.totals, phase_components=phases,
        params=param_counts(model), trainable_params=trainable, setup=d, assumptions=fig.assumptions,
        notes=tuple(notes), source=source)


def simulated_estimate(model: ModelSpec, setup: TrainingSetup, reason: str = "") -> MemoryEstimate:
    """The simulator's answer as a MemoryEstimate (allocator slack and CUDA context added as the
    planner adds them), from the disk cache when this (config, setup, versions) ran before."""
    if not setup.parallel.single_gpu:
        raise PlannerError(f"{reason or 'this setup'}: the simulated path plans one GPU; drop --gpus/--zero/--fsdp/--tp/--pp")
    _require_profiler(reason or "this setup has no closed form")
    key = cache_key(model, setup, "simulate")
    record = _read(key)
    if record is None:
        record = _run_simulation(model, setup, reason)
        _write(key, record)
    notes = [f"simulated (no closed form: {reason})" if reason else "simulated"] + record["notes"]
    return _estimate_from(model, setup, _phases_from_json(record["phase_components"]), record["trainable"], notes,
                          Source.SIMULATED)


def estimate_or_simulate(model: ModelSpec, setup: TrainingSetup) -> tuple[MemoryEstimate, Source]:
    """(answer, which path gave it): the planner's closed form, or the simulator where the planner
    raises NoClosedForm. Bad input still raises PlannerError; without torch/transformers/peft a
    setup without a closed form raises one line naming the extra to install."""
    try:
        return estimate(model, setup), Source.CLOSED_FORM
    except NoClosedForm as exc:
        reason = str(exc)
    setup.validate()
    return simulated_estimate(model, setup, reason), Source.SIMULATED


# --- sweeps: bytes = c0 + c1 b + c2 b s + c3 b s^2 per phase and component ------------------------

FIT_POINTS = ((1, 128), (2, 128), (1, 256), (2, 256), (4, 256))
CHECK_POINTS = ((4, 128), (1, 512))


def _features(b: int, s: int) -> tuple[float, ...]:
    """(1, b, b s, b s^2): constant (weights, states), per sequence (prompt tuning's virtual tokens,
    per-sample buffers), per token, and eager attention's per-sequence s x s scores."""
    return (1.0, float(b), float(b * s), float(b * s * s))


def _solve(rows: list[tuple[float, ...]], ys: list[float]) -> tuple[float, ...]:
    """Least squares for y = sum_i c_i x_i (normal equations, Gaussian elimination with pivoting)."""
    n = len(rows[0])
    a = [[sum(r[i] * r[j] for r in rows) for j in range(n)] + [sum(r[i] * y for r, y in zip(rows, ys))]
         for i in range(n)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda i: abs(a[i][col]))
        a[col], a[pivot] = a[pivot], a[col]
        if abs(a[col][col]) < 1e-30:
            continue                      # a feature the points cannot tell apart: its coefficient stays 0
        for i in range(n):
            if i != col:
                f = a[i][col] / a[col][col]
                a[i] = [x - f * y for x, y in zip(a[i], a[col])]
    return tuple(a[i][n] / a[i][i] if abs(a[i][i]) >= 1e-30 else 0.0 for i in range(n))


@dataclass(frozen=True)
class SweepFit:
    """Per phase and component, bytes = c0 + c1 b + c2 b s + c3 b s^2, fitted to simulations (least
    squares); the fit's worst relative error of the peak at held-out (b, s) points is `residual_pct`."""

    model: ModelSpec
    setup: TrainingSetup
    coefficients: dict[Phase, dict[Component, tuple[float, ...]]]
    trainable: int
    residual_pct: float
    fit_points: tuple[tuple[int, int], ...]
    check_points: tuple[tuple[int, int], ...]

    def phases(self, b: int, s: int) -> dict[Phase, dict[Component, int]]:
        x = _features(b, s)
        return {p: {c: max(0, round(sum(ci * xi for ci, xi in zip(k, x)))) for c, k in comps.items()}
                for p, comps in self.coefficients.items()}

    def estimate(self, batch_size: int, seq_len: int) -> MemoryEstimate:
        """The fitted answer at (batch_size, seq_len), no simulation."""
        setup = replace(self.setup, batch_size=batch_size, seq_len=seq_len)
        note = (f"fitted: c0 + c1 b + c2 b s + c3 b s^2 per component from {len(self.fit_points)} simulations, "
                f"worst held-out error {self.residual_pct:.2f}%")
        return _estimate_from(self.model, setup, self.phases(batch_size, seq_len), self.trainable, [note],
                              Source.FITTED)

    def to_json(self) -> dict[str, Any]:
        return {"coefficients": {p.value: {c.value: list(k) for c, k in comps.items()}
                                 for p, comps in self.coefficients.items()},
                "trainable": self.trainable, "residual_pct": self.residual_pct,
                "fit_points": [list(x) for x in self.fit_points], "check_points": [list(x) for x in self.check_points]}


def _sweep_setup(setup: TrainingSetup) -> TrainingSetup:
    return replace(setup, batch_size=1, seq_len=1)   # the key holds everything but the swept sizes


def fitted(model: ModelSpec, setup: TrainingSetup, fit_points: tuple[tuple[int, int], ...] = FIT_POINTS,
           check_points: tuple[tuple[int, int], ...] = CHECK_POINTS) -> SweepFit:
    """SweepFit for `setup` (its batch size and sequence length are swept), from the disk cache
    when fitted before: len(fit_points) + len(check_points) simulations otherwise."""
    if len(set(fit_points)) < 4 or len({b * s for b, s in fit_points}) < 3:
        raise PlannerError("a sweep fit needs at least four (batch, seq) points with three token counts")
    base = _sweep_setup(setup)
    key = cache_key(model, base, f"fit:{fit_points}:{check_points}")
    record = _read(key)
    if record is not None:
        return SweepFit(model, base, {Phase(p): {Component(c): tuple(k) for c, k in comps.items()}
                                      for p, comps in record["coefficients"].items()},
                        record["trainable"], record["residual_pct"], fit_points, check_points)
    _require_profiler("a sweep over a setup without a closed form")
    from .simulate import simulate  # lazy: torch, transformers and peft load only when a setup is simulated

    runs = {(b, s): simulate(model, replace(setup, batch_size=b, seq_len=s)).phase_components
            for b, s in fit_points + check_points}
    coefficients: dict[Phase, dict[Component, tuple[float, ...]]] = {}
    for phase in Phase:
        coefficients[phase] = {}
        for comp in Component.tensor_components():
            rows = [_features(b, s) for b, s in fit_points]
            ys = [float(runs[pt].get(phase, {}).get(comp, 0)) for pt in fit_points]
            coefficients[phase][comp] = _solve(rows, ys)
    fit = SweepFit(model, base, coefficients, trainable_params(model, setup), 0.0, fit_points, check_points)
    worst = 0.0
    for b, s in check_points:
        predicted = max(sum(c.values()) for c in fit.phases(b, s).values())
        actual = max(sum(c.values()) for c in runs[(b, s)].values())
        worst = max(worst, abs(predicted - actual) / actual * 100)
    fit = replace(fit, residual_pct=round(worst, 4))
    _write(key, fit.to_json())
    return fit


def fit_from_simulations(model: ModelSpec, setup: TrainingSetup, gpu, reason: str,
                         say: Callable[[str], None] = lambda line: None):
    """fit() of a setup without a closed form: its run's device total at any batch and sequence length
    from a sweep fitted to a few simulations (profiler/answer.py fitted, cached on disk), then one more
    simulation at the largest micro-batch found, whose error is reported (and which moves the answer
    down while the simulated step does not fit)."""
    if not setup.parallel.single_gpu:
        raise PlannerError(f"{reason}: fit answers a setup without a closed form from simulations of one GPU; "
                           "drop the multi-GPU flags")
    say(f"no closed form ({reason}): fitting a sweep to simulations (cached after the first run)...")
    sweep = fitted(model, setup)

    def device_total(s) -> int:
        return max(run_phase_totals(model, s, est=sweep.estimate(s.batch_size, s.seq_len)).values())

    r = run_fit(model, setup, gpu, memory_only=True, device_total=device_total, source=Source.FITTED.value)
    notes = [f"no closed form ({reason}): batch and sequence searched on c0 + c1 b + c2 b s + c3 b s^2 per component, "
             f"fitted to {len(sweep.fit_points)} simulations (worst held-out error {sweep.residual_pct:.2f}%); knobs "
             "are not searched (each change would need simulations of its own)"]
    b = r.max_batch
    while b > 0:   # the answer checked by the simulator itself
        say(f"checking micro-batch {b} x {setup.seq_len} with one simulation...")
        at = setup.with_(batch_size=b)
        simulated = max(run_phase_totals(model, at, est=simulated_estimate(model, at, reason)).values())
        predicted = device_total(at)
        notes.append(f"checked at micro-batch {b} x {setup.seq_len} by one simulation: {simulated / 2**30:.2f} GiB "
                     f"device total against the fit's {predicted / 2**30:.2f} GiB "
                     f"({(predicted - simulated) / simulated * 100:+.2f}%)")
        if simulated <= gpu.memory_bytes:
            break
        b -= 1
    if b != r.max_batch:
        notes.append(f"the simulated step does not fit above micro-batch {b}: that is the answer")
        r = replace(r, max_batch=b, max_batch_total_bytes=simulated if b else None,
                    safe_max_batch=min(r.safe_max_batch, b))
    return replace(r, notes=tuple(notes))
