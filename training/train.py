"""Train a segmentation model on the atWork photos (optionally mixed with synthetic scenes).

    python -m training.train --config training/configs/deeplab_mnv2.yaml [--set key.sub=value ...]
                             [--out runs/x] [--resume runs/x/last.pt] [--benchmark 20]
    torchrun --nproc_per_node=N -m training.train --config ...      # DistributedDataParallel

Writes into the output folder (rank 0 only): ``config.yaml`` (resolved config),
``log.csv``, ``loss.png``, ``miou.png``, ``last.pt`` (every epoch) and ``best.pt``
(best validation mIoU). ``--benchmark N`` times N optimisation steps on a fixed
random batch (no data loading) and prints images/s.

Optimiser default: AdamW + poly decay. We fine-tune small nets on ~370 real photos
from a pretrained (reference model) encoder in few CPU epochs; AdamW's per-parameter step
sizes converge in far fewer epochs there than SGD, and are less sensitive to the
learning rate across the three model families. SGD (momentum 0.9) + poly(0.9) is
the DeepLab / reference study recipe and is available via ``train.optimizer: sgd``
(use ``lr`` ~1e-2 then).

Resume (``--resume last.pt``) restores weights, optimiser, LR schedule, RNG, best mIoU and
the log, and continues with the next epoch. Resuming with a larger ``--epochs`` stretches
the poly/cosine schedule over the new total, so the LR steps up to where the longer
schedule would be at that iteration.

CPU DDP: ``torchrun`` starts one process per rank, each with ``train.threads`` threads;
on a 2-core machine use ``--nproc_per_node=2 ... --threads 1`` to avoid oversubscription.
Process and device helpers live in :mod:`training.distributed`, ``log.csv``/plots in
:mod:`training.run_log`, the ``--benchmark`` timing in :mod:`training.throughput`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from . import metrics as seg_metrics
from .checkpoint import build_checkpoint, load_checkpoint, save_checkpoint, strip_prefix, unwrap
from .config import (
    ConfigError,
    TrainingConfig,
    add_config_arguments,
    build_config,
    flag_overrides,
    load_yaml,
    save_config,
)
from .distributed import (
    DistInfo,
    barrier,
    broadcast_from_main,
    cleanup_distributed,
    seed_everything,
    setup_distributed,
    wrap_model,
)
from .loops import evaluate, train_one_epoch
from .losses import DistillationLoss, SegmentationLoss, class_pixel_counts, class_weights_from_counts
from .models import count_parameters
from .run_log import command_line, epoch_row, write_log, write_plots
from .throughput import benchmark_training

log = logging.getLogger("training.train")


# --------------------------------------------------------------------------- data


def _transforms(cfg: TrainingConfig) -> tuple[Callable | None, Callable | None]:
    h, w = cfg.data.height, cfg.data.width
    try:
        from training.data.augment import build_train_transform, build_val_transform
    except ImportError:
        log.warning("training.data.augment not available: training without augmentation")
        return None, None
    augment = dict(cfg.data.augment)
    if augment.get("seed") is None:  # reproducible runs: the augmentation stream follows train.seed
        augment["seed"] = cfg.train.seed
    return build_train_transform(h, w, augment), build_val_transform(h, w)


def build_datasets(cfg: TrainingConfig) -> tuple[Dataset, Dataset]:
    """Train = real train split (x ``real_repeats``) + synthetic folders; val = real val split."""
    from training.data.atwork import (
        AtWorkSegmentation,
        SyntheticSegmentation,
        list_samples,
        mix_datasets,
        split_samples,
    )

    d = cfg.data
    size = (d.height, d.width)
    train_tf, val_tf = _transforms(cfg)
    # the transforms end at H x W themselves; cropping from the full-resolution photo keeps
    # zoomed-in crops sharp, pre-resizing (data.preresize) is cheaper on a slow CPU
    train_size = size if (d.preresize or train_tf is None) else None
    val_size = size if (d.preresize or val_tf is None) else None
    samples = list_samples(d.root)
    train_samples, val_samples = split_samples(samples, d.split_spec())
    if d.train_on_val:
        log.warning(
            "data.train_on_val: the %d validation photos are trained on; val mIoU measures memory, use last.pt",
            len(val_samples),
        )
        train_samples = train_samples + val_samples
    train_ds: Dataset = AtWorkSegmentation(train_samples, d.variant, train_tf, train_size)
    if d.synthetic:
        synth = SyntheticSegmentation(d.synthetic, d.variant, train_tf, train_size)
        train_ds = mix_datasets([train_ds, synth], [d.real_repeats, 1])
        log.info("train: %d real photos x%d + %d synthetic scenes", len(train_samples), d.real_repeats, len(synth))
    elif d.real_repeats > 1:
        train_ds = mix_datasets([train_ds], [d.real_repeats])
    val_ds = AtWorkSegmentation(val_samples, d.variant, val_tf, val_size)
    log.info("data: %d train items, %d val photos (%s, %dx%d)", len(train_ds), len(val_ds), d.variant, *size)
    return train_ds, val_ds


def build_loaders(
    cfg: TrainingConfig, train_ds: Dataset, val_ds: Dataset, info: DistInfo
) -> tuple[DataLoader, DataLoader, DistributedSampler | None]:
    """Train: shuffled (DistributedSampler under DDP). Val: each rank an exact shard (no padding,
    so the all-reduced confusion matrix counts every val pixel exactly once)."""
    t = cfg.train
    workers = cfg.data.num_workers
    common = dict(num_workers=workers, pin_memory=info.device.type == "cuda", persistent_workers=workers > 0)
    sampler = None
    if info.distributed:
        sampler = DistributedSampler(train_ds, info.world_size, info.rank, shuffle=True, seed=t.seed)
        per_rank = len(sampler)
    else:
        per_rank = len(train_ds)
    # BatchNorm cannot train on a batch of 1: drop the ragged last batch when a full one exists
    drop_last = per_rank >= t.batch_size
    train_loader = DataLoader(
        train_ds, batch_size=t.batch_size, shuffle=sampler is None, sampler=sampler, drop_last=drop_last, **common
    )
    val_part = Subset(val_ds, list(range(info.rank, len(val_ds), info.world_size))) if info.distributed else val_ds
    val_loader = DataLoader(val_part, batch_size=t.val_batch_size, shuffle=False, **common)
    return train_loader, val_loader, sampler


def num_classes_of(cfg: TrainingConfig) -> tuple[int, list[str]]:
    from seg_perception.classes import load_classes

    cs = load_classes(cfg.data.variant)
    return cs.num_classes, list(cs.names)


# --------------------------------------------------------------------------- model, optimiser, loss


def build_model(cfg: TrainingConfig, model_config: Mapping[str, Any] | None = None) -> nn.Module:
    """Registry model from ``model.name``/``model.kwargs`` (or a checkpoint's ``model_config``),
    optionally initialised from the reference TFLite model or another checkpoint's weights."""
    from training.models import create_model

    if model_config is not None:
        return create_model(**model_config)
    num_classes, _ = num_classes_of(cfg)
    model = create_model(cfg.model.name, num_classes, **dict(cfg.model.kwargs))
    init = cfg.init
    if init.reference_tflite:
        from training.models import aspp_matches_reference, load_reference_weights

        with_aspp = aspp_matches_reference(model)  # the reference ASPP (1x1 + pooling, 256 ch) loads too
        loaded = load_reference_weights(model, init.reference_tflite, include_aspp=with_aspp)
        log.info(
            "initialised encoder%s from reference %s (%d convolutions)",
            " and ASPP" if with_aspp else "",
            init.reference_tflite,
            len(loaded),
        )
    if init.espnet_weights:
        from training.models.espnet_import import load_released_espnet

        loaded = load_released_espnet(model, init.espnet_weights)
        log.info("initialised from the released ESPNet %s (%d tensors)", init.espnet_weights, len(loaded))
    if init.checkpoint:
        load_matching_weights(model, load_checkpoint(init.checkpoint)["state_dict"], init.checkpoint)
    return model


def freeze_modules(model: nn.Module, names: Sequence[str]) -> list[nn.Module]:
    """Turn off the gradients of the named submodules (``train.freeze``); returns them so the training
    loop keeps them in eval mode. An unknown name is an error listing the model's top-level modules."""
    frozen = []
    for name in names:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            tops = ", ".join(n for n, _ in model.named_children())
            raise ValueError(f"train.freeze: the model has no module {name!r} (top level: {tops})") from None
        for p in module.parameters():
            p.requires_grad_(False)
        frozen.append(module)
    if frozen:
        log.info(
            "frozen %d modules (%d parameters): %s",
            len(frozen),
            sum(p.numel() for m in frozen for p in m.parameters()),
            ", ".join(names),
        )
    return frozen


def build_teacher(cfg: TrainingConfig, device: torch.device) -> nn.Module | None:
    """The frozen distillation teacher of ``distill.teacher`` (a checkpoint), in eval mode; or None."""
    path = cfg.distill.teacher
    if not path:
        return None
    from training.models import create_model

    ckpt = load_checkpoint(path)
    teacher = create_model(**ckpt["model_config"])
    teacher.load_state_dict(strip_prefix(ckpt["state_dict"]))
    num_classes, _ = num_classes_of(cfg)
    if int(ckpt["model_config"]["num_classes"]) != num_classes:
        raise ValueError(
            f"distill.teacher {path} has {ckpt['model_config']['num_classes']} classes, the student {num_classes}"
        )
    for p in teacher.parameters():
        p.requires_grad_(False)
    log.info("distilling from teacher %s (%s)", path, ckpt["model_config"].get("name"))
    return teacher.eval().to(device)


def calibrate_reference_bn(model: nn.Module, loader: DataLoader, num_batches: int = 4) -> None:
    """Reference-model weights come with folded (identity) BatchNorms that only hold in eval mode; measure
    real activation statistics on a few training batches so training mode starts from the reference too."""
    from itertools import islice

    from training.models import calibrate_folded_batchnorm

    n = calibrate_folded_batchnorm(model, (images for images, _ in islice(iter(loader), num_batches)))
    log.info("calibrated %d folded BatchNorms of the reference model on %d training batches", n, num_batches)


def load_matching_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "") -> list[str]:
    """Copy every tensor whose name and shape match (fine-tuning across class variants)."""
    own = model.state_dict()
    take = {k: v for k, v in strip_prefix(state_dict).items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(own) - set(take))
    model.load_state_dict(take, strict=False)
    log.info("initialised %d/%d tensors from %s; not loaded: %s", len(take), len(own), source, skipped[:8])
    return skipped


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases, BatchNorm and PReLU parameters (1-D tensors)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(cfg: TrainingConfig, model: nn.Module) -> torch.optim.Optimizer:
    t = cfg.train
    groups = _param_groups(unwrap(model), t.weight_decay)
    if t.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum)
    if t.optimizer == "adam":
        return torch.optim.Adam(groups, lr=t.lr)
    return torch.optim.AdamW(groups, lr=t.lr)


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


def build_scheduler(cfg: TrainingConfig, optimizer: torch.optim.Optimizer, iters_per_epoch: int):
    """Per-iteration LambdaLR (its state dict is plain numbers, so checkpoints stay weights_only)."""
    t = cfg.train
    total = t.epochs * max(1, iters_per_epoch)
    min_ratio = t.min_lr / t.lr
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: lr_factor(it, total, t.scheduler, t.poly_power, t.warmup_iters, min_ratio)
    )


def compute_dataset_class_weights(cfg: TrainingConfig, train_ds: Dataset, num_classes: int) -> np.ndarray:
    """Class weights from the training labels (one pass over the train set)."""
    loader = DataLoader(train_ds, batch_size=8, num_workers=cfg.data.num_workers)
    counts, image_pixels = class_pixel_counts((y for _, y in loader), num_classes, cfg.train.ignore_index)
    w = class_weights_from_counts(counts, image_pixels, cfg.train.class_weights)
    log.info("class weights (%s): %s", cfg.train.class_weights, [round(float(v), 3) for v in w])
    return w


def build_loss(cfg: TrainingConfig, num_classes: int, class_weights: Sequence[float] | None = None) -> SegmentationLoss:
    t = cfg.train
    return SegmentationLoss(t.loss, num_classes, class_weights, t.ignore_index, t.dice_weight)


# --------------------------------------------------------------------------- the run


def fit(
    cfg: TrainingConfig, info: DistInfo, resume_ckpt: Mapping[str, Any] | None = None, command: str = ""
) -> dict[str, Any]:
    """The training run: data, model, epochs, validation, logs and checkpoints."""
    t = cfg.train
    out_dir = Path(cfg.log.out)
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir)
    num_classes, class_names = num_classes_of(cfg)

    train_ds, val_ds = build_datasets(cfg)
    train_loader, val_loader, sampler = build_loaders(cfg, train_ds, val_ds, info)
    iters_per_epoch = len(train_loader) if t.max_iters_per_epoch <= 0 else min(len(train_loader), t.max_iters_per_epoch)
    if iters_per_epoch == 0:
        raise RuntimeError("the training split yields no batch")

    model = _starting_model(cfg, info, train_loader, resume_ckpt)
    class_weights = _class_weights(cfg, train_ds, num_classes, info, resume_ckpt)
    loss_fn = build_loss(cfg, num_classes, class_weights).to(info.device)
    teacher = build_teacher(cfg, info.device)
    train_loss_fn: nn.Module = loss_fn
    if teacher is not None:  # validation keeps the label loss alone
        train_loss_fn = DistillationLoss(loss_fn, cfg.distill.weight, cfg.distill.temperature, t.ignore_index).to(
            info.device
        )

    frozen = freeze_modules(model, t.freeze)
    model = wrap_model(model, info, t.sync_bn)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer, iters_per_epoch)
    scaler = torch.amp.GradScaler("cuda") if t.amp and info.device.type == "cuda" else None

    start_epoch, best, best_epoch, rows = 0, -1.0, -1, []
    if resume_ckpt:
        start_epoch, best, best_epoch, rows = restore_state(resume_ckpt, optimizer, scheduler)
        log.info("resuming after epoch %d (best mIoU %.4f at epoch %d)", start_epoch, best, best_epoch)

    log.info(
        "model %s: %d parameters; %d iters/epoch x %d epochs on %s (world size %d)",
        cfg.model.name,
        count_parameters(model),
        iters_per_epoch,
        t.epochs,
        info.device,
        info.world_size,
    )
    for epoch in range(start_epoch, t.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        tr = train_one_epoch(
            model,
            train_loader,
            train_loss_fn,
            optimizer,
            scheduler,
            info,
            epoch,
            t.max_iters_per_epoch,
            t.grad_clip,
            scaler,
            cfg.log.progress,
            teacher,
            frozen,
        )
        val_loss, miou, summary = float("nan"), float("nan"), {}
        if (epoch + 1) % t.val_every == 0 or epoch + 1 == t.epochs:
            val_loss, cm = evaluate(model, val_loader, loss_fn, num_classes, info, t.ignore_index)
            summary = seg_metrics.summarize(cm, class_names)
            miou = summary["miou"] if summary["miou"] is not None else float("nan")
        rows.append(epoch_row(epoch + 1, lr, tr, val_loss, miou, summary))
        improved = not math.isnan(miou) and miou > best
        if improved:
            best, best_epoch = miou, epoch + 1
        log.info(
            "epoch %d/%d: train loss %.4f, val loss %.4f, mIoU %.4f (best %.4f @%d), %.1f img/s",
            epoch + 1,
            t.epochs,
            tr["loss"],
            val_loss,
            miou,
            best,
            best_epoch,
            tr["images_per_s"],
        )
        if info.is_main:
            extra = {
                "class_weights": class_weights,
                "log": rows,
                "command": command,
                "val_metrics": {k: v for k, v in summary.items() if k != "confusion_matrix"},
            }
            ckpt = build_checkpoint(
                model, optimizer, scheduler, epoch + 1, best if best >= 0 else None, best_epoch, cfg, class_names, extra
            )
            _record_epoch(cfg, out_dir, ckpt, improved, rows)
    barrier(info)
    return {"best_miou": best, "best_epoch": best_epoch, "rows": rows}


def _starting_model(
    cfg: TrainingConfig, info: DistInfo, train_loader: DataLoader, resume_ckpt: Mapping[str, Any] | None
) -> nn.Module:
    """The model the first epoch starts from, on the process's device: the resumed checkpoint's
    weights, or a fresh one initialised as ``init`` says."""
    model = build_model(cfg, resume_ckpt["model_config"] if resume_ckpt else None)
    if resume_ckpt:
        model.load_state_dict(strip_prefix(resume_ckpt["state_dict"]))
    elif cfg.init.reference_tflite and not cfg.init.checkpoint:
        # reference weights come without BN statistics of our data; a checkpoint brings its own
        calibrate_reference_bn(model, train_loader)
    return model.to(info.device)


def _record_epoch(
    cfg: TrainingConfig, out_dir: Path, ckpt: Mapping[str, Any], improved: bool, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Rank 0 after each epoch: ``last.pt`` (and ``best.pt`` when validation improved), ``log.csv``, plots."""
    save_checkpoint(out_dir / "last.pt", ckpt)
    if improved:
        save_checkpoint(out_dir / "best.pt", ckpt)
    write_log(rows, out_dir)
    if cfg.log.plots:
        write_plots(rows, out_dir)


def _class_weights(
    cfg: TrainingConfig,
    train_ds: Dataset,
    num_classes: int,
    info: DistInfo,
    resume_ckpt: Mapping[str, Any] | None,
) -> np.ndarray | None:
    """Computed once on rank 0 and broadcast (augmentation makes passes differ); reused on resume."""
    if cfg.train.class_weights == "none":
        return None
    stored = (resume_ckpt or {}).get("extra", {}).get("class_weights")
    if stored is not None:
        return np.asarray(stored, dtype=np.float32)
    w = torch.zeros(num_classes, dtype=torch.float32)
    if info.is_main:
        w = torch.from_numpy(compute_dataset_class_weights(cfg, train_ds, num_classes))
    return broadcast_from_main(w, info).numpy()


def _sync_lr(optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
    """Set the groups' LR from the (possibly re-configured) schedule at the restored iteration.

    The saved optimiser LR belongs to the old schedule; when a resume changes ``train.epochs``
    the schedule is stretched over the new total and the LR must follow it from the first step.
    """
    lambdas = getattr(scheduler, "lr_lambdas", None)
    if not lambdas:
        return
    lrs = [base * fn(scheduler.last_epoch) for base, fn in zip(scheduler.base_lrs, lambdas, strict=True)]
    for group, lr in zip(optimizer.param_groups, lrs, strict=True):
        group["lr"] = lr
    scheduler._last_lr = lrs


def restore_state(
    ckpt: Mapping[str, Any], optimizer: torch.optim.Optimizer, scheduler: Any
) -> tuple[int, float, int, list[dict[str, Any]]]:
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


# --------------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    add_config_arguments(p)
    p.add_argument("--resume", type=Path, help="continue from a checkpoint (last.pt): weights, optimiser, epoch")
    p.add_argument(
        "--benchmark",
        type=int,
        metavar="N",
        default=0,
        help="time N training steps on a random batch and exit (no data needed)",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def resolve_config(args: argparse.Namespace, resume_ckpt: Mapping[str, Any] | None = None) -> TrainingConfig:
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
        format=f"%(asctime)s [rank {info.rank}] %(levelname)s %(name)s: %(message)s"
        if info.distributed
        else "%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def run_benchmark(cfg: TrainingConfig, info: DistInfo, iters: int) -> dict[str, float]:
    num_classes, _ = num_classes_of(cfg)
    model = build_model(cfg).to(info.device)
    loss_fn = build_loss(cfg, num_classes).to(info.device)
    opt = build_optimizer(cfg, model)
    size = (cfg.data.height, cfg.data.width)
    res = benchmark_training(model, loss_fn, opt, cfg.train.batch_size, size, num_classes, info.device, iters)
    res.update(
        model=cfg.model.name, threads=torch.get_num_threads(), device=str(info.device), height=size[0], width=size[1]
    )
    return res


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    resume_ckpt = load_checkpoint(args.resume) if args.resume else None
    try:
        cfg = resolve_config(args, resume_ckpt)
    except ConfigError as e:
        logging.basicConfig()
        log.error("%s", e)
        return 2
    t = cfg.train
    info = setup_distributed(t.device)
    _setup_logging(info, args.verbose)
    if t.threads > 0:
        torch.set_num_threads(t.threads)
    seed_everything(t.seed)
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


if __name__ == "__main__":
    sys.exit(main())
