"""One epoch of training and one pass of evaluation, on any model, loader and loss (no config).

Both sum over ranks under DDP (:func:`training.distributed.all_reduce_sum`), so every rank returns
the same numbers; the evaluation confusion matrix counts each validation pixel exactly once
when each rank holds its own shard.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from seg_perception.classes import IGNORE_INDEX

from .checkpoint import unwrap
from .distributed import DistInfo, all_reduce_sum


def torch_confusion(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Same matrix as :func:`training.metrics.confusion_matrix`, on the tensors' device."""
    valid = target != ignore_index
    idx = target[valid].long() * num_classes + pred[valid].long()
    return torch.bincount(idx, minlength=num_classes * num_classes)[: num_classes * num_classes].reshape(
        num_classes, num_classes
    )


def _progress(iterable, enabled: bool, total: int, desc: str):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None,
    info: DistInfo,
    epoch: int = 0,
    max_iters: int = 0,
    grad_clip: float = 0.0,
    scaler: torch.amp.GradScaler | None = None,
    progress: bool = False,
    teacher: nn.Module | None = None,
    frozen: Sequence[nn.Module] = (),
) -> dict[str, float]:
    """One pass over ``loader`` (or ``max_iters`` batches); loss averaged over all ranks' images.

    With a ``teacher``, ``loss_fn`` is called as ``loss_fn(logits, targets, teacher_logits)``;
    ``frozen`` modules stay in eval mode (their batch norms keep their running statistics)."""
    model.train()
    for m in frozen:
        m.eval()
    device = info.device
    total = len(loader) if max_iters <= 0 else min(max_iters, len(loader))
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    n_images = torch.zeros((), dtype=torch.float64, device=device)
    start = time.perf_counter()
    bar = _progress(loader, progress and info.is_main, total, f"epoch {epoch + 1}")
    for i, (images, targets) in enumerate(bar):
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=scaler is not None):
            logits = model(images)
            if teacher is None:
                loss = loss_fn(logits, targets)
            else:
                with torch.no_grad():
                    teacher_logits = teacher(images)
                loss = loss_fn(logits, targets, teacher_logits)
        _step(loss, model, optimizer, scheduler, scaler, grad_clip)
        loss_sum += loss.detach().double() * images.shape[0]
        n_images += images.shape[0]
        if bar is not loader and hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
        if i + 1 >= total:
            break
    elapsed = time.perf_counter() - start
    stats = all_reduce_sum(torch.stack([loss_sum, n_images]), info).cpu()
    images_seen = float(stats[1])
    return {
        "loss": float(stats[0] / max(stats[1], 1.0)),
        "images": images_seen,
        "seconds": elapsed,
        "images_per_s": images_seen / elapsed if elapsed > 0 else float("nan"),
    }


def _step(
    loss: torch.Tensor,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None,
    scaler: torch.amp.GradScaler | None,
    grad_clip: float,
) -> None:
    """Backward, optional gradient clipping (on unscaled gradients), optimiser and per-iteration LR step."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    if scheduler is not None:
        scheduler.step()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: nn.Module | None,
    num_classes: int,
    info: DistInfo,
    ignore_index: int = IGNORE_INDEX,
) -> tuple[float, np.ndarray]:
    """Validation loss (mean over images) and the dataset-wide confusion matrix, summed over ranks.

    Runs the bare model (not the DDP wrapper): val shards may differ in size between ranks,
    and a DDP forward could wait on collectives another rank never joins.
    """
    model = unwrap(model)
    model.eval()
    device = info.device
    cm = torch.zeros((num_classes, num_classes), dtype=torch.int64, device=device)
    loss_sum = torch.zeros(2, dtype=torch.float64, device=device)
    for images, targets in loader:
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        logits = model(images)
        if loss_fn is not None:
            loss_sum[0] += loss_fn(logits, targets).double() * images.shape[0]
        loss_sum[1] += images.shape[0]
        cm += torch_confusion(logits.argmax(1), targets, num_classes, ignore_index)
    all_reduce_sum(cm, info)
    all_reduce_sum(loss_sum, info)
    val_loss = float(loss_sum[0] / loss_sum[1]) if loss_fn is not None and loss_sum[1] > 0 else float("nan")
    return val_loss, cm.cpu().numpy()
