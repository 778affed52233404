"""Host RAM (and NVMe) per node that CPU/NVMe offload needs, in bytes.

DeepSpeed ZeRO-Offload keeps, per GPU, the fp32 master partition, the fp32 Adam moments and the
fp32 gradient partition in (pinned) host memory: 16 bytes per trainable parameter / n; ZeRO-3's
offload_param adds the 16-bit parameter partition, 2 bytes / n [ZeRO-Offload, Ren et al. 2021,
Sec. 4.1; deepspeed/runtime/zero/stage_1_and_2.py, stage3.py]. This is DeepSpeed's own
`estimate_zero3_model_states_mem_needs` with zero.Init (16 and 18 bytes per parameter per node)
without its 1.5x `additional_buffer_factor` safety margin, which gpuplan leaves to the user; for
ZeRO-2 DeepSpeed's max(4 x GPUs, 16) bytes per parameter also counts each rank's fp32 copy of the
model while it loads, a transient gpuplan leaves out (steady state).
ZeRO-Infinity moves the same states to NVMe and keeps pinned swap buffers in host RAM:
offload_param buffer_count=5 x buffer_size=1e8 elements, offload_optimizer buffer_count=4
[deepspeed/runtime/zero/offload_config.py defaults].
FSDP2's CPUOffloadPolicy keeps the sharded parameters, gradients and optimizer state on the host
(pinned) [torch/distributed/fsdp/_fully_shard/_fsdp_api.py].
"""
from __future__ import annotations

from dataclasses import replace

from ..specs.engines import engine_of, shard_degree
from ..specs.enums import Precision
from ..specs.model import ModelSpec
from ..specs.parallel import Offload, OffloadDevice, ParallelSpec
from ..specs.setup import TrainingSetup
from .slices import local_model
from ..specs.params import param_counts
from .pieces import resolved_states, terms

# offload_param: buffer_count 5, buffer_size 1e8 elements (16-bit); offload_optimizer: 4 buffers of
# the largest fp32 sub-group, sub_group_size 1e9 elements by default -> bounded by the partition
# [deepspeed/runtime/zero/offload_config.py, stage3.py: sub_group_size]
NVME_PARAM_BUFFERS = 5 * 10**8 * 2
NVME_OPT_BUFFERS = 4
SUB_GROUP_SIZE = 10**9


def _per_gpu_host_states(model: ModelSpec, setup: TrainingSetup) -> int:
    """Bytes of state one GPU offloads."""
    p = setup.parallel
    if p.offload is Offload.NONE:
        return 0
    eng = engine_of(p)
    n = shard_degree(p)
    m = local_model(model, p)
    single = replace(setup, parallel=ParallelSpec())
    rs, st, _ = terms(m, single)
    if eng.fsdp:   # sharded params, grads and optimizer state, as stored
        return (st.weights + st.gradients + st.optimizer_state) // n
    e16 = setup.precision.compute_dtype.bytes
    trainable = st.trainable_params
    if rs.quantized is not None:
        opt = st.optimizer_state
    else:
        opt = resolved_states(m, replace(single, precision=Precision.FP32)).optimizer_state
    fp32 = (4 * trainable if e16 < 4 else 0) + opt + 4 * trainable    # master, Adam, fp32 grads
    out = fp32 // n
    if p.offload is Offload.PARAMS:
        weights16 = st.weights if rs.quantized is not None else e16 * param_counts(m).total
        out += weights16 // n
    return out


def host_bytes_per_node(model: ModelSpec, setup: TrainingSetup) -> int:
    """Host RAM one node needs for what its GPUs offload (pinned buffers for NVMe)."""
    p = setup.parallel
    per_gpu = _per_gpu_host_states(model, setup)
    if p.offload_device is OffloadDevice.NVME and per_gpu:
        buffers = NVME_OPT_BUFFERS * 4 * min(SUB_GROUP_SIZE, per_gpu // 16)
        if p.offload is Offload.PARAMS:
            buffers += NVME_PARAM_BUFFERS
        return p.gpus * buffers
    return p.gpus * per_gpu


def nvme_bytes_per_node(model: ModelSpec, setup: TrainingSetup) -> int:
    """NVMe space one node needs (ZeRO-Infinity); 0 without NVMe offload."""
    if setup.parallel.offload_device is not OffloadDevice.NVME:
        return 0
    return setup.parallel.gpus * _per_gpu_host_states(model, setup)
