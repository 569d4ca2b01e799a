"""Train a segmentation model on the atWork photos (optionally mixed with synthetic scenes).

    python -m training.train --config training/configs/deeplab_mnv2.yaml [--set key.sub=value ...]
                             [--out runs/x] [--resume runs/x/last.pt] [--benchmark 20]
    torchrun --nproc_per_node=N -m training.train --config ...      # DistributedDataParallel

Writes into the output folder (rank 0 only): ``config.yaml`` (resolved config),
``log.csv``, ``loss.png``, ``miou.png``, ``last.pt`` (every epoch) and ``best.pt``
(best validation mIoU). ``--benchmark N`` times N optimisation steps on a fixed
random batch (no data loading) and prints images/s.

Optimiser default: AdamW + poly decay. We fine-tune small nets on ~370 real photos
from a pretrained (peer) encoder in few CPU epochs; AdamW's per-parameter step
sizes converge in far fewer epochs there than SGD, and are less sensitive to the
learning rate across the three model families. SGD (momentum 0.9) + poly(0.9) is
the DeepLab / seed recipe and is available via ``train.optimizer: sgd``
(use ``lr`` ~1e-2 then).

Resume (``--resume last.pt``) restores weights, optimiser, LR schedule, RNG, best mIoU and
the log, and continues with the next epoch. Resuming with a larger ``--epochs`` stretches
the poly/cosine schedule over the new total, so the LR steps up to where the longer
schedule would be at that iteration.

CPU DDP: ``torchrun`` starts one process per rank, each with ``train.threads`` threads;
on a 2-core machine use ``--nproc_per_node=2 ... --threads 1`` to avoid oversubscription.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import random
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from . import metrics as seg_metrics
from .checkpoint import build_checkpoint, load_checkpoint, save_checkpoint, strip_prefix, unwrap
from .config import ConfigError, add_config_arguments, build_config, flag_overrides, load_yaml, save_config
from .losses import DistillationLoss, SegmentationLoss, class_pixel_counts, class_weights_from_counts

log = logging.getLogger("training.train")

LOG_FIELDS = ("epoch", "train_loss", "val_loss", "miou", "pixel_acc", "mean_dice", "lr", "epoch_time_s",
              "train_images_per_s")


# --------------------------------------------------------------------------- processes and devices


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


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


# --------------------------------------------------------------------------- data


def _transforms(cfg: Mapping[str, Any]) -> Tuple[Optional[Callable], Optional[Callable]]:
    h, w = cfg["data"]["height"], cfg["data"]["width"]
    try:
        from training.data.augment import build_train_transform, build_val_transform
    except ImportError:
        log.warning("training.data.augment not available: training without augmentation")
        return None, None
    return build_train_transform(h, w, dict(cfg["data"]["augment"])), build_val_transform(h, w)


def build_datasets(cfg: Mapping[str, Any]) -> Tuple[Dataset, Dataset]:
    """Train = real train split (x ``real_repeats``) + synthetic folders; val = real val split."""
    from training.data.atwork import (
        AtWorkSegmentation,
        SplitSpec,
        SyntheticSegmentation,
        list_samples,
        mix_datasets,
        split_samples,
    )

    d = cfg["data"]
    size = (d["height"], d["width"])
    train_tf, val_tf = _transforms(cfg)
    # the transforms end at H x W themselves; cropping from the full-resolution photo keeps
    # zoomed-in crops sharp, pre-resizing (data.preresize) is cheaper on a slow CPU
    train_size = size if (d["preresize"] or train_tf is None) else None
    val_size = size if (d["preresize"] or val_tf is None) else None
    samples = list_samples(d["root"])
    train_samples, val_samples = split_samples(samples, SplitSpec.from_mapping(d))
    train_ds: Dataset = AtWorkSegmentation(train_samples, d["variant"], train_tf, train_size)
    if d["synthetic"]:
        synth = SyntheticSegmentation(d["synthetic"], d["variant"], train_tf, train_size)
        train_ds = mix_datasets([train_ds, synth], [d["real_repeats"], 1])
        log.info("train: %d real photos x%d + %d synthetic scenes", len(train_samples), d["real_repeats"], len(synth))
    elif d["real_repeats"] > 1:
        train_ds = mix_datasets([train_ds], [d["real_repeats"]])
    val_ds = AtWorkSegmentation(val_samples, d["variant"], val_tf, val_size)
    log.info("data: %d train items, %d val photos (%s, %dx%d)", len(train_ds), len(val_ds), d["variant"], *size)
    return train_ds, val_ds


def build_loaders(
    cfg: Mapping[str, Any], train_ds: Dataset, val_ds: Dataset, info: DistInfo
) -> Tuple[DataLoader, DataLoader, Optional[DistributedSampler]]:
    """Train: shuffled (DistributedSampler under DDP). Val: each rank an exact shard (no padding,
    so the all-reduced confusion matrix counts every val pixel exactly once)."""
    t = cfg["train"]
    workers = cfg["data"]["num_workers"]
    common = dict(num_workers=workers, pin_memory=info.device.type == "cuda", persistent_workers=workers > 0)
    sampler = None
    if info.distributed:
        sampler = DistributedSampler(train_ds, info.world_size, info.rank, shuffle=True, seed=t["seed"])
        per_rank = len(sampler)
    else:
        per_rank = len(train_ds)
    # BatchNorm cannot train on a batch of 1: drop the ragged last batch when a full one exists
    drop_last = per_rank >= t["batch_size"]
    train_loader = DataLoader(train_ds, batch_size=t["batch_size"], shuffle=sampler is None, sampler=sampler,
                              drop_last=drop_last, **common)
    val_part = Subset(val_ds, list(range(info.rank, len(val_ds), info.world_size))) if info.distributed else val_ds
    val_loader = DataLoader(val_part, batch_size=t["val_batch_size"], shuffle=False, **common)
    return train_loader, val_loader, sampler


def num_classes_of(cfg: Mapping[str, Any]) -> Tuple[int, List[str]]:
    from seg_perception.classes import load_classes

    cs = load_classes(cfg["data"]["variant"])
    return cs.num_classes, list(cs.names)


# --------------------------------------------------------------------------- model, optimiser, loss


def build_model(cfg: Mapping[str, Any], model_config: Optional[Mapping[str, Any]] = None) -> nn.Module:
    """Registry model from ``model.name``/``model.kwargs`` (or a checkpoint's ``model_config``),
    optionally initialised from the TFLite peer or another checkpoint's weights."""
    from training.models import create_model

    if model_config is not None:
        return create_model(**model_config)
    num_classes, _ = num_classes_of(cfg)
    model = create_model(cfg["model"]["name"], num_classes, **dict(cfg["model"]["kwargs"]))
    init = cfg["init"]
    if init["peer_tflite"]:
        from training.models import aspp_matches_reference, load_reference_weights

        with_aspp = aspp_matches_reference(model)  # the reference ASPP (1x1 + pooling, 256 ch) loads too
        loaded = load_reference_weights(model, init["peer_tflite"], include_aspp=with_aspp)
        log.info("initialised encoder%s from reference %s (%d convolutions)", " and ASPP" if with_aspp else "",
                 init["peer_tflite"], len(loaded))
    if init["espnet_weights"]:
        from training.models.espnet_import import load_released_espnet

        loaded = load_released_espnet(model, init["espnet_weights"])
        log.info("initialised from the released ESPNet %s (%d tensors)", init["espnet_weights"], len(loaded))
    if init["checkpoint"]:
        load_matching_weights(model, load_checkpoint(init["checkpoint"])["state_dict"], init["checkpoint"])
    return model


def build_teacher(cfg: Mapping[str, Any], device: torch.device) -> Optional[nn.Module]:
    """The frozen distillation teacher of ``distill.teacher`` (a checkpoint), in eval mode; or None."""
    path = cfg["distill"]["teacher"]
    if not path:
        return None
    from training.models import create_model

    ckpt = load_checkpoint(path)
    teacher = create_model(**ckpt["model_config"])
    teacher.load_state_dict(strip_prefix(ckpt["state_dict"]))
    num_classes, _ = num_classes_of(cfg)
    if int(ckpt["model_config"]["num_classes"]) != num_classes:
        raise ValueError(f"distill.teacher {path} has {ckpt['model_config']['num_classes']} classes, "
                         f"the student {num_classes}")
    for p in teacher.parameters():
        p.requires_grad_(False)
    log.info("distilling from teacher %s (%s)", path, ckpt["model_config"].get("name"))
    return teacher.eval().to(device)


def calibrate_peer_bn(model: nn.Module, loader: DataLoader, num_batches: int = 4) -> None:
    """Peer weights come with folded (identity) BatchNorms that only hold in eval mode; measure
    real activation statistics on a few training batches so training mode starts from the peer too."""
    from itertools import islice

    from training.models import calibrate_peer_batchnorm

    n = calibrate_peer_batchnorm(model, (images for images, _ in islice(iter(loader), num_batches)))
    log.info("calibrated %d peer BatchNorms on %d training batches", n, num_batches)


def load_matching_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "") -> List[str]:
    """Copy every tensor whose name and shape match (fine-tuning across class variants)."""
    own = model.state_dict()
    take = {k: v for k, v in strip_prefix(state_dict).items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(own) - set(take))
    model.load_state_dict(take, strict=False)
    log.info("initialised %d/%d tensors from %s; not loaded: %s", len(take), len(own), source, skipped[:8])
    return skipped


def _param_groups(model: nn.Module, weight_decay: float) -> List[Dict[str, Any]]:
    """No weight decay on biases, BatchNorm and PReLU parameters (1-D tensors)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(cfg: Mapping[str, Any], model: nn.Module) -> torch.optim.Optimizer:
    t = cfg["train"]
    groups = _param_groups(unwrap(model), t["weight_decay"])
    if t["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=t["lr"], momentum=t["momentum"])
    if t["optimizer"] == "adam":
        return torch.optim.Adam(groups, lr=t["lr"])
    return torch.optim.AdamW(groups, lr=t["lr"])


def lr_factor(it: int, total: int, kind: str, power: float = 0.9, warmup: int = 0, min_ratio: float = 0.0) -> float:
    """LR multiplier at iteration ``it`` of ``total``: linear warm-up, then poly / cosine / constant."""
    if warmup > 0 and it < warmup:
        return (it + 1) / warmup
    if kind == "none":
        return 1.0
    span = max(1, total - warmup)
    progress = min(1.0, max(0.0, (it - warmup) / span))
    f = (1.0 - progress) ** power if kind == "poly" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return min_ratio + (1.0 - min_ratio) * f


def build_scheduler(cfg: Mapping[str, Any], optimizer: torch.optim.Optimizer, iters_per_epoch: int):
    """Per-iteration LambdaLR (its state dict is plain numbers, so checkpoints stay weights_only)."""
    t = cfg["train"]
    total = t["epochs"] * max(1, iters_per_epoch)
    min_ratio = t["min_lr"] / t["lr"]
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: lr_factor(it, total, t["scheduler"], t["poly_power"], t["warmup_iters"], min_ratio)
    )


def compute_dataset_class_weights(cfg: Mapping[str, Any], train_ds: Dataset, num_classes: int) -> np.ndarray:
    """Class weights from the training labels (one pass over the train set)."""
    loader = DataLoader(train_ds, batch_size=8, num_workers=cfg["data"]["num_workers"])
    counts, image_pixels = class_pixel_counts((y for _, y in loader), num_classes, cfg["train"]["ignore_index"])
    w = class_weights_from_counts(counts, image_pixels, cfg["train"]["class_weights"])
    log.info("class weights (%s): %s", cfg["train"]["class_weights"], [round(float(v), 3) for v in w])
    return w


def build_loss(
    cfg: Mapping[str, Any], num_classes: int, class_weights: Optional[Sequence[float]] = None
) -> SegmentationLoss:
    t = cfg["train"]
    return SegmentationLoss(t["loss"], num_classes, class_weights, t["ignore_index"], t["dice_weight"])


# --------------------------------------------------------------------------- loops


def torch_confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
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
    scheduler: Optional[Any],
    info: DistInfo,
    epoch: int = 0,
    max_iters: int = 0,
    grad_clip: float = 0.0,
    scaler: Optional["torch.amp.GradScaler"] = None,
    progress: bool = False,
    teacher: Optional[nn.Module] = None,
) -> Dict[str, float]:
    """One pass over ``loader`` (or ``max_iters`` batches); loss averaged over all ranks' images.

    With a ``teacher``, ``loss_fn`` is called as ``loss_fn(logits, targets, teacher_logits)``."""
    model.train()
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


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: Optional[nn.Module],
    num_classes: int,
    info: DistInfo,
    ignore_index: int = 255,
) -> Tuple[float, np.ndarray]:
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


# --------------------------------------------------------------------------- logging


def write_log(rows: Sequence[Mapping[str, Any]], out_dir: Path) -> Path:
    path = out_dir / "log.csv"
    tmp = out_dir / "log.csv.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in LOG_FIELDS})
    os.replace(tmp, path)
    return path


def command_line(argv: Optional[Sequence[str]] = None) -> str:
    """The command line of this training run (recorded in checkpoints, then in the manifest)."""
    prog = "torchrun ... -m training.train" if "LOCAL_RANK" in os.environ else "python -m training.train"
    return prog + " " + shlex.join(str(a) for a in (sys.argv[1:] if argv is None else argv))


def _fmt(v: float, digits: int = 5) -> Any:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), digits)


def _write_plots(rows: Sequence[Mapping[str, Any]], out_dir: Path) -> None:
    try:
        from .plots import plot_training_curves

        plot_training_curves(rows, out_dir)
    except Exception:  # noqa: BLE001 - a plot must never stop a training run
        log.exception("could not write plots")


# --------------------------------------------------------------------------- benchmark


def benchmark_training(
    model: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    size: Tuple[int, int],
    num_classes: int,
    device: torch.device,
    iters: int = 20,
    warmup: int = 3,
) -> Dict[str, float]:
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
    return {"iters": iters, "batch_size": batch_size, "seconds": round(elapsed, 3),
            "images_per_s": round(iters * batch_size / elapsed, 3), "s_per_iter": round(elapsed / iters, 4),
            "cpu_util": round(cpu_util, 3)}


# --------------------------------------------------------------------------- main


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    add_config_arguments(p)
    p.add_argument("--resume", type=Path, help="continue from a checkpoint (last.pt): weights, optimiser, epoch")
    p.add_argument("--benchmark", type=int, metavar="N", default=0,
                   help="time N training steps on a random batch and exit (no data needed)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def resolve_config(args: argparse.Namespace, resume_ckpt: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Defaults < checkpoint's config (resume) < --config < --set < flags; a resumed run writes
    into its checkpoint's folder unless --out says otherwise."""
    base = resume_ckpt.get("train_config") if resume_ckpt else None
    file_cfg = load_yaml(args.config) if args.config else None
    flags = flag_overrides(args)
    if resume_ckpt is not None and args.out is None:
        flags.setdefault("log", {})["out"] = str(Path(args.resume).parent)
    return build_config(file_cfg, args.overrides, base=base, flags=flags)


def _setup_logging(info: DistInfo, verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(
        level=level if info.is_main else logging.WARNING,
        format=f"%(asctime)s [rank {info.rank}] %(levelname)s %(name)s: %(message)s" if info.distributed
        else "%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def run_benchmark(cfg: Mapping[str, Any], info: DistInfo, iters: int) -> Dict[str, float]:
    num_classes, _ = num_classes_of(cfg)
    model = build_model(cfg).to(info.device)
    loss_fn = build_loss(cfg, num_classes).to(info.device)
    opt = build_optimizer(cfg, model)
    size = (cfg["data"]["height"], cfg["data"]["width"])
    res = benchmark_training(model, loss_fn, opt, cfg["train"]["batch_size"], size, num_classes, info.device, iters)
    res.update(model=cfg["model"]["name"], threads=torch.get_num_threads(), device=str(info.device),
               height=size[0], width=size[1])
    return res


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    resume_ckpt = load_checkpoint(args.resume) if args.resume else None
    try:
        cfg = resolve_config(args, resume_ckpt)
    except ConfigError as e:
        logging.basicConfig()
        log.error("%s", e)
        return 2
    t = cfg["train"]
    info = setup_distributed(t["device"])
    _setup_logging(info, args.verbose)
    if t["threads"] > 0:
        torch.set_num_threads(t["threads"])
    seed_everything(t["seed"])
    try:
        if args.benchmark > 0:
            res = run_benchmark(cfg, info, args.benchmark)
            if info.is_main:
                log.info("benchmark: %s", res)
                print(json.dumps(res))
            return 0
        fit(cfg, info, resume_ckpt, command_line(argv))
    finally:
        cleanup_distributed()
    return 0


def fit(cfg: Dict[str, Any], info: DistInfo, resume_ckpt: Optional[Mapping[str, Any]] = None,
        command: str = "") -> Dict[str, Any]:
    """The training run: data, model, epochs, validation, logs and checkpoints."""
    t = cfg["train"]
    out_dir = Path(cfg["log"]["out"])
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir)
    num_classes, class_names = num_classes_of(cfg)

    train_ds, val_ds = build_datasets(cfg)
    train_loader, val_loader, sampler = build_loaders(cfg, train_ds, val_ds, info)
    iters_per_epoch = len(train_loader) if t["max_iters_per_epoch"] <= 0 else min(len(train_loader), t["max_iters_per_epoch"])
    if iters_per_epoch == 0:
        raise RuntimeError("the training split yields no batch")

    model = build_model(cfg, resume_ckpt["model_config"] if resume_ckpt else None)
    if resume_ckpt:
        model.load_state_dict(strip_prefix(resume_ckpt["state_dict"]))
    elif cfg["init"]["peer_tflite"] and not cfg["init"]["checkpoint"]:
        # peer weights come without BN statistics of our data; a checkpoint brings its own
        calibrate_peer_bn(model, train_loader)
    model.to(info.device)

    class_weights = _class_weights(cfg, train_ds, num_classes, info, resume_ckpt)
    loss_fn = build_loss(cfg, num_classes, class_weights).to(info.device)
    teacher = build_teacher(cfg, info.device)
    train_loss_fn: nn.Module = loss_fn
    if teacher is not None:  # validation keeps the label loss alone
        train_loss_fn = DistillationLoss(loss_fn, cfg["distill"]["weight"], cfg["distill"]["temperature"],
                                         t["ignore_index"]).to(info.device)

    if info.distributed:
        if t["sync_bn"] and info.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device.index] if info.device.type == "cuda" else None
        )
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer, iters_per_epoch)
    scaler = torch.amp.GradScaler("cuda") if t["amp"] and info.device.type == "cuda" else None

    start_epoch, best, best_epoch, rows = 0, -1.0, -1, []
    if resume_ckpt:
        start_epoch, best, best_epoch, rows = restore_state(resume_ckpt, optimizer, scheduler)
        log.info("resuming after epoch %d (best mIoU %.4f at epoch %d)", start_epoch, best, best_epoch)

    log.info("model %s: %d parameters; %d iters/epoch x %d epochs on %s (world size %d)",
             cfg["model"]["name"], sum(p.numel() for p in model.parameters()), iters_per_epoch, t["epochs"],
             info.device, info.world_size)
    for epoch in range(start_epoch, t["epochs"]):
        if sampler is not None:
            sampler.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        tr = train_one_epoch(model, train_loader, train_loss_fn, optimizer, scheduler, info, epoch,
                             t["max_iters_per_epoch"], t["grad_clip"], scaler, cfg["log"]["progress"], teacher)
        val_loss, miou, summary = float("nan"), float("nan"), {}
        if (epoch + 1) % t["val_every"] == 0 or epoch + 1 == t["epochs"]:
            val_loss, cm = evaluate(model, val_loader, loss_fn, num_classes, info, t["ignore_index"])
            summary = seg_metrics.summarize(cm, class_names)
            miou = summary["miou"] if summary["miou"] is not None else float("nan")
        row = {"epoch": epoch + 1, "train_loss": _fmt(tr["loss"]), "val_loss": _fmt(val_loss), "miou": _fmt(miou),
               "pixel_acc": _fmt(summary.get("pixel_accuracy")), "mean_dice": _fmt(summary.get("mean_dice")),
               "lr": f"{lr:.6g}", "epoch_time_s": _fmt(tr["seconds"], 2),
               "train_images_per_s": _fmt(tr["images_per_s"], 2)}
        rows.append(row)
        improved = not math.isnan(miou) and miou > best
        if improved:
            best, best_epoch = miou, epoch + 1
        log.info("epoch %d/%d: train loss %.4f, val loss %.4f, mIoU %.4f (best %.4f @%d), %.1f img/s",
                 epoch + 1, t["epochs"], tr["loss"], val_loss, miou, best, best_epoch, tr["images_per_s"])
        if info.is_main:
            extra = {"class_weights": class_weights, "log": rows, "command": command,
                     "val_metrics": {k: v for k, v in summary.items() if k != "confusion_matrix"}}
            ckpt = build_checkpoint(model, optimizer, scheduler, epoch + 1, best if best >= 0 else None, best_epoch,
                                    cfg, class_names, extra)
            save_checkpoint(out_dir / "last.pt", ckpt)
            if improved:
                save_checkpoint(out_dir / "best.pt", ckpt)
            write_log(rows, out_dir)
            if cfg["log"]["plots"]:
                _write_plots(rows, out_dir)
    if info.distributed:
        dist.barrier()
    return {"best_miou": best, "best_epoch": best_epoch, "rows": rows}


def _class_weights(
    cfg: Mapping[str, Any], train_ds: Dataset, num_classes: int, info: DistInfo,
    resume_ckpt: Optional[Mapping[str, Any]],
) -> Optional[np.ndarray]:
    """Computed once on rank 0 and broadcast (augmentation makes passes differ); reused on resume."""
    if cfg["train"]["class_weights"] == "none":
        return None
    stored = (resume_ckpt or {}).get("extra", {}).get("class_weights")
    if stored is not None:
        return np.asarray(stored, dtype=np.float32)
    w = torch.zeros(num_classes, dtype=torch.float32)
    if info.is_main:
        w = torch.from_numpy(compute_dataset_class_weights(cfg, train_ds, num_classes))
    if info.distributed:
        w = w.to(info.device)
        dist.broadcast(w, src=0)
    return w.cpu().numpy()


def _sync_lr(optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
    """Set the groups' LR from the (possibly re-configured) schedule at the restored iteration.

    The saved optimiser LR belongs to the old schedule; when a resume changes ``train.epochs``
    the schedule is stretched over the new total and the LR must follow it from the first step.
    """
    lambdas = getattr(scheduler, "lr_lambdas", None)
    if not lambdas:
        return
    lrs = [base * fn(scheduler.last_epoch) for base, fn in zip(scheduler.base_lrs, lambdas)]
    for group, lr in zip(optimizer.param_groups, lrs):
        group["lr"] = lr
    scheduler._last_lr = lrs


def restore_state(
    ckpt: Mapping[str, Any], optimizer: torch.optim.Optimizer, scheduler: Any
) -> Tuple[int, float, int, List[Dict[str, Any]]]:
    """Optimiser / scheduler / RNG state; returns (finished epochs, best mIoU, best epoch, log rows).

    Call after building the scheduler: LambdaLR's constructor resets the groups' LR, and
    the optimiser state (loaded here afterwards) puts the saved LR back.
    """
    if ckpt.get("optimizer"):
        optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt.get("scheduler"):
        scheduler.load_state_dict(ckpt["scheduler"])
        _sync_lr(optimizer, scheduler)
    if isinstance(ckpt.get("rng"), torch.Tensor):
        torch.set_rng_state(ckpt["rng"])
    epoch = int(ckpt["epoch"])
    rows = [dict(r) for r in ckpt.get("extra", {}).get("log", []) if int(r["epoch"]) <= epoch]
    best = ckpt.get("best_metric")
    return epoch, (-1.0 if best is None else float(best)), int(ckpt.get("best_epoch", -1)), rows


if __name__ == "__main__":
    sys.exit(main())
