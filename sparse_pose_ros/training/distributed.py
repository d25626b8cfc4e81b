"""Multi-process data parallelism through torch.distributed (launched by ``torchrun``).

``torchrun --nproc_per_node N -m sparse_pose_ros.training.train --config ...`` sets WORLD_SIZE,
RANK and LOCAL_RANK; without them training runs as one plain process. NCCL is used on CUDA,
gloo on CPU (which also lets the test suite exercise the DDP path without a GPU).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    """Where this process sits in the job."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_environment() -> DistInfo:
    """Read torchrun's environment variables (absent = single process)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as exc:
        raise ValueError(f"WORLD_SIZE/RANK/LOCAL_RANK must be integers: {exc}") from exc
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"inconsistent torchrun environment: WORLD_SIZE={world}, RANK={rank}")
    return DistInfo(world, rank, local)


def init(info: DistInfo, device: torch.device) -> None:
    """Join the process group (no-op for a single process)."""
    if not info.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


def mean_scalar(value: float, info: DistInfo, device: torch.device) -> float:
    """Average a Python float over all processes (for logging the global loss)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / info.world_size
