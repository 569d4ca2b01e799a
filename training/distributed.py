"""Where a training process runs: rank and world size under ``torchrun``, its device, seeding, sums over ranks.

One process per rank (``torchrun --nproc_per_node=N``); the process group uses nccl on GPU and gloo
on CPU. Without ``torchrun`` every helper here degrades to the single-process case.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

log = logging.getLogger("training.distributed")


@dataclass
class DistInfo:
    """Where this process runs: rank / world size (1 when not launched by torchrun) and device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(requested: str, local_rank: int = 0) -> torch.device:
    """``auto``: CUDA when present, else CPU."""
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("train.device=cuda but CUDA is not available")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def setup_distributed(device_request: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (nccl on GPU, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_request, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
        log.info("rank %d/%d joined (%s on %s)", rank, world_size, backend, device)
    return DistInfo(rank, world_size, local_rank, device)


def wrap_model(model: nn.Module, info: DistInfo, sync_bn: bool = False) -> nn.Module:
    """DistributedDataParallel under torchrun (SyncBatchNorm first when asked, on CUDA); else ``model``."""
    if not info.distributed:
        return model
    if sync_bn and info.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[info.device.index] if info.device.type == "cuda" else None
    )


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``t`` over all ranks in place (a no-op in a single process)."""
    if info.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_from_main(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Rank 0's ``t`` on every rank (on the process's device, as the backend needs; returned on the CPU)."""
    if not info.distributed:
        return t
    t = t.to(info.device)
    dist.broadcast(t, src=0)
    return t.cpu()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()
