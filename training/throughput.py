"""Training throughput: images/s of full optimisation steps on a fixed random batch (``train --benchmark N``).

No data loading is timed, so the number compares models, thread counts and devices, not disks.
"""

from __future__ import annotations

import time

import torch
import torch.nn as nn


def benchmark_training(
    model: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    size: tuple[int, int],
    num_classes: int,
    device: torch.device,
    iters: int = 20,
    warmup: int = 3,
) -> dict[str, float]:
    """Images/s of full optimisation steps on a fixed random batch (model + loss + optimiser only)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, 3, *size, generator=gen).to(device)
    y = torch.randint(0, num_classes, (batch_size, *size), generator=gen).to(device)
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(iters):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    # CPU time / (wall time x threads) well below 1 means other processes shared the cores
    cpu_util = (time.process_time() - cpu_start) / (elapsed * max(1, torch.get_num_threads()))
    return {
        "iters": iters,
        "batch_size": batch_size,
        "seconds": round(elapsed, 3),
        "images_per_s": round(iters * batch_size / elapsed, 3),
        "s_per_iter": round(elapsed / iters, 4),
        "cpu_util": round(cpu_util, 3),
    }
