"""FSDP1's `model.state_dict()` run for real on CPU processes with gloo (small models): the bytes rank 0
allocates during the call, to check planner/memory/state_dicts.py. The model is wrapped as accelerate's
TRANSFORMER_BASED_WRAP wraps it (one FSDP unit per decoder layer, the root holding the rest), fp32, no
mixed precision; the call is measured the second time (the first lazily initializes FSDP's buffers).
offload_to_cpu cannot be told apart on a CPU device (every byte is host memory), so it is left out."""
from __future__ import annotations

import os
import queue as queues
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from .distributed import ShardAwareTracker, follow_resizes

MODES = ("full-rank0", "full-all", "sharded")   # and "optim-full": FSDP.optim_state_dict, rank 0 only, on the device


def _worker(rank: int, world: int, port: int, config: dict[str, Any], q) -> None:
    import transformers   # lazy: imported in the spawned worker process, not by the parent
    from torch.distributed.fsdp import FullStateDictConfig, FullyShardedDataParallel as FSDP   # lazy: worker only
    from torch.distributed.fsdp import FullOptimStateDictConfig, ShardedStateDictConfig, StateDictType   # lazy: worker only
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy   # lazy: worker only

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        lm = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**config),
                                                           dtype=torch.float32)
        wrapped = FSDP(lm, auto_wrap_policy=ModuleWrapPolicy({type(lm.model.layers[0])}),
                       device_id=torch.device("cpu"), use_orig_params=True)
        configs = {"full-rank0": (StateDictType.FULL_STATE_DICT, FullStateDictConfig(rank0_only=True)),
                   "full-all": (StateDictType.FULL_STATE_DICT, FullStateDictConfig(rank0_only=False)),
                   "sharded": (StateDictType.SHARDED_STATE_DICT, ShardedStateDictConfig())}
        out = {}
        tracker = ShardAwareTracker()
        with tracker, follow_resizes(tracker):
            for mode in MODES:
                kind, cfg = configs[mode]
                for _ in range(2):
                    tracker.reset_peaks()
                    before = tracker.current
                    with FSDP.state_dict_type(wrapped, kind, cfg):
                        sd = wrapped.state_dict()
                    out[mode] = (max(p.total for p in tracker.peaks.values()) - before, tracker.current - before)
                    del sd
            # one AdamW step creates the state (fp32 exp_avg and exp_avg_sq per parameter); zero_grad frees the grads
            opt = torch.optim.AdamW(wrapped.parameters(), lr=1e-3)
            ids = torch.randint(0, config["vocab_size"], (1, 8))
            wrapped(input_ids=ids, labels=ids).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            for _ in range(2):
                tracker.reset_peaks()
                before = tracker.current
                with FSDP.state_dict_type(wrapped, StateDictType.FULL_STATE_DICT, FullStateDictConfig(rank0_only=True),
                                          FullOptimStateDictConfig(offload_to_cpu=False, rank0_only=True)):
                    osd = FSDP.optim_state_dict(wrapped, opt)
                out["optim-full"] = (max(p.total for p in tracker.peaks.values()) - before, tracker.current - before)
                del osd
        if rank == 0:
            q.put(out)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def measure_fsdp1_state_dicts(config: dict[str, Any], world: int = 2, port: int = 29541,
                              timeout: float = 120) -> dict[str, tuple[int, int]]:
    """{mode: (rank 0's peak bytes above its start during state_dict() / optim_state_dict(), bytes the
    returned dict keeps)}."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    mp.spawn(_worker, args=(world, port, config, q), nprocs=world, join=True)
    try:
        return q.get(timeout=timeout)
    except queues.Empty:
        raise RuntimeError("rank 0 returned no measurement") from None
