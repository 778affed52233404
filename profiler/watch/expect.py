"""The estimate a watched run is compared against: gpuplan's memory figures for the run's setup, the
growth to the longest sequence the data can produce, and the time model's tokens/s on the run's GPU."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from gpuplan.planner import (GpuSpec, ModelSpec, PlannerError, TrainingSetup, estimate, model_from_config,
                             resolve_gpu, resolve_model, step_time)


@dataclass
class Expected:
    model: str                   # as given: preset, hub id, config path, or the run's config name
    spec: ModelSpec
    setup: TrainingSetup
    peak_allocated_bytes: int
    peak_reserved_bytes: int
    device_total_bytes: int
    max_seq_len: int
    growth_bytes: int            # peak reserved at max_seq_len less at the setup's seq_len
    gpu: str | None              # the catalog GPU the time model ran for
    tokens_per_s: float | None
    step_time_s: float | None
    source: str                  # "--estimate-from my.yaml", "the Trainer callback", ...
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "setup": {**self.setup.to_dict(self.spec), "model": self.model},
                "peak_allocated_bytes": self.peak_allocated_bytes, "peak_reserved_bytes": self.peak_reserved_bytes,
                "device_total_bytes": self.device_total_bytes, "max_seq_len": self.max_seq_len,
                "growth_bytes": self.growth_bytes, "gpu": self.gpu, "tokens_per_s": self.tokens_per_s,
                "step_time_s": self.step_time_s, "source": self.source, "notes": list(self.notes)}


def catalog_gpu(nvml_name: str | None) -> GpuSpec | None:
    """The catalog entry of an NVML device name, or None where the catalog does not know it."""
    if not nvml_name:
        return None
    try:
        return resolve_gpu(nvml_name)
    except PlannerError:
        return None


def expected_for(spec: ModelSpec, setup: TrainingSetup, model: str, source: str, gpu: GpuSpec | None,
                 max_seq_len: int | None = None) -> Expected:
    """The Expected of a run; raises PlannerError where the planner cannot estimate the setup."""
    est = estimate(spec, setup)
    longest = max(max_seq_len or setup.seq_len, setup.seq_len)
    growth = 0
    if longest > setup.seq_len:
        growth = estimate(spec, setup.with_(seq_len=longest)).peak_reserved_bytes - est.peak_reserved_bytes
    notes = []
    tokens_per_s = step_s = None
    if gpu is not None:
        st = step_time(spec, setup, gpu)
        tokens_per_s, step_s = st.tokens_per_s, st.total
    else:
        notes.append("no tokens/s prediction: the GPU is not in gpuplan's catalog (give --gpu NAME)")
    return Expected(model=model, spec=spec, setup=setup, peak_allocated_bytes=est.peak_allocated_bytes,
                    peak_reserved_bytes=est.peak_reserved_bytes, device_total_bytes=est.device_total_bytes,
                    max_seq_len=longest, growth_bytes=growth, gpu=None if gpu is None else gpu.name,
                    tokens_per_s=tokens_per_s, step_time_s=step_s, source=source, notes=notes)


def from_setup_line(obj: Mapping[str, Any]) -> tuple[ModelSpec, TrainingSetup, str]:
    """(spec, setup, model name) from the `setup` line the hook or the Trainer callback wrote."""
    name = obj.get("model") or "the run's model"
    if obj.get("model_config"):
        spec = model_from_config(obj["model_config"], name=name)
    else:
        spec = resolve_model(name)
    return spec, TrainingSetup.from_dict(obj["setup"]).validate(), name
