"""The estimate's reserved/allocated for FSDP2 with parameter CPU offload, against a simulated step
with what offload moves to the host taken out. Prints a table.

    python benchmarks/reserved_offload.py [--logs DIR]

The simulator refuses CPU offload (profiler/distributed.py: host memory is not tracked), so each
setup is simulated without it (rank 0 of an FSDP2 job, profiler/allocator_replay.py) and its log
is cut to the device side of FSDP2's CPUOffloadPolicy: the sharded parameters never appear in the
log (they are made before it starts), the optimizer state (allocated in step 1, never freed),
the sharded gradients (the reduce-scatter stream's outputs) and the optimizer step's temporaries are removed, as offload keeps them in
host memory [torch/distributed/fsdp/_fully_shard/_fsdp_param.py: offload_to_cpu; _fsdp_collectives.py
foreach_reduce: `new_sharded_grad.to(torch.device("cpu"), non_blocking=True)`]. What stays is what
the GPU holds under offload: the all-gathered units, activations, the loss's tensors, unsharded
gradients and reduce-scatter inputs. That log replayed through the allocator model gives the
simulated ratio; the estimate's is that of its synthetic step (planner/memory/reserved.py) for the
setup with `offload: params`. Simulations take 20-90 s each.
"""
from __future__ import annotations

import argparse
import hashlib
import pickle
import sys
import warnings
from pathlib import Path

from gpuplan.planner import TrainingSetup, estimate, resolve_model
from gpuplan.planner.memory.replay import Event, Op, replay

_REDUCE_SCATTER = 2   # the log's stream number of FSDP2's reduce-scatter stream (profiler/allocator_replay.py)

CASES = (
    ("qwen-2.5-0.5b", {"method": "full", "precision": "fp16-mixed"}, 2, 2, 512),
    ("qwen-2.5-0.5b", {"method": "full"}, 8, 2, 512),
    ("qwen-2.5-0.5b", {"method": "full", "checkpointing": "none"}, 2, 1, 256),
    ("llama-3.2-1b", {"method": "full"}, 8, 2, 512),
    ("llama-3.2-1b", {"method": "full", "precision": "fp16-mixed"}, 8, 1, 256),
)


def device_side(events: list[Event]) -> list[Event]:
    """The log without the allocations CPU offload keeps on the host: those never freed (the
    optimizer state), the reduce-scatter stream's (the sharded gradients) and the optimizer step's
    (it runs on the host's parameters). Keys may come back after their free: each allocation is
    one malloc and the free that follows it."""
    live: dict[int, int] = {}       # key -> index of its malloc
    freed: set[int] = set()         # indices of mallocs that are freed
    for i, e in enumerate(events):
        if e.op is Op.MALLOC:
            live[e.key] = i
        elif e.op is Op.FREE and e.key in live:
            freed.add(live.pop(e.key))
    out, label, dropped = [], "", set()
    for i, e in enumerate(events):
        if e.op is Op.MARK:
            label = e.label
        if e.op is Op.MALLOC and (i not in freed or e.stream == _REDUCE_SCATTER or label == "optimizer"):
            dropped.add(e.key)
            continue
        if e.op is Op.FREE and e.key in dropped:
            dropped.discard(e.key)
            continue
        out.append(e)
    return out


def main() -> None:
    from gpuplan.profiler.allocator_replay import simulated_events

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logs", type=Path, default=None, help="keep the simulated logs here and reuse them")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    print(f"{'setup':58} {'sim alloc MiB':>13} {'est alloc MiB':>13} {'sim r/a':>7} {'est r/a':>7} {'6%':>5}")
    for name, extra, world, b, s in CASES:
        par = {"gpus": world, "fsdp": "full"}
        d = {**extra, "batch_size": b, "seq_len": s}
        label = f"{name} {world} GPUs {b}x{s} {extra}"
        m = resolve_model(name)
        path = args.logs / (hashlib.sha1(label.encode()).hexdigest()[:16] + ".pkl") if args.logs else None
        if path is not None and path.exists():
            sim = pickle.loads(path.read_bytes())
        else:
            sim = simulated_events(m, TrainingSetup.from_dict({**d, "parallel": par}))
            if path is not None:
                path.write_bytes(pickle.dumps(sim))
        r = replay(device_side(sim.events))
        est = estimate(m, TrainingSetup.from_dict({**d, "parallel": {**par, "offload": "params"}}))
        print(f"{label[:58]:58} {r.peak_requested / 2**20:13,.0f} {est.peak_allocated_bytes / 2**20:13,.0f} "
              f"{r.peak_reserved / r.peak_requested:7.3f} {est.peak_reserved_bytes / est.peak_allocated_bytes:7.3f} "
              f"{1.06:5.2f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
