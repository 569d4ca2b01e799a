"""Evaluate a checkpoint on the atWork photos: metrics, per-class analysis, samples, cost.

    python -m training.evaluate --checkpoint runs/deeplab_mnv2/best.pt [--root ../shared/datasets/atwork]
                                [--split val|train|all] [--out DIR] [--latency-runs 50] [--threads 2]

The split, class variant and input size come from the checkpoint's training config,
so the val split is exactly the one the run validated on. Writes into ``--out``
(default ``<checkpoint dir>/eval_<split>_<checkpoint name>``):

* ``metrics.json``: mIoU, pixel accuracy, mean Dice, per-class IoU / Dice / pixel share,
  the confusion matrix (one matrix over the whole split), model size, parameters, MACs and
  latency (median of N batch-1 forward passes at the input size, after warm-up);
* ``iou_vs_share.png``: per-class IoU against the class's pixel share (the reference study's analysis);
* ``samples.png``: image / ground truth / prediction rows;
* ``config.yaml``: the resolved training config of the checkpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from . import metrics as seg_metrics
from .checkpoint import load_checkpoint, load_model, state_dict_bytes
from .config import TrainingConfig, build_config, save_config
from .distributed import DistInfo, pick_device
from .loops import evaluate as evaluate_loader

log = logging.getLogger("training.evaluate")

SPLITS = ("val", "train", "all")


def build_eval_dataset(cfg: TrainingConfig, split: str) -> Dataset:
    """Real photos of ``split`` as the run split them, resized deterministically to the input size."""
    from training.data.atwork import AtWorkSegmentation, list_samples, split_samples

    d = cfg.data
    samples = list_samples(d.root)
    if split != "all":
        train, val = split_samples(samples, d.split_spec())
        samples = val if split == "val" else train
    size = (d.height, d.width)
    try:
        from training.data.augment import build_val_transform

        return AtWorkSegmentation(samples, d.variant, build_val_transform(*size), None)
    except ImportError:
        return AtWorkSegmentation(samples, d.variant, None, size)


@torch.inference_mode()
def measure_latency(
    model: nn.Module, size: tuple[int, int], device: torch.device, runs: int = 50, warmup: int = 5
) -> dict[str, float]:
    """Batch-1 forward latency in ms at ``size`` (median and 90th percentile over ``runs``)."""
    model.eval()
    x = torch.zeros(1, 3, *size, device=device)
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(max(1, runs)):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        model(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - t0) * 1000.0)
    times.sort()
    return {
        "median": statistics.median(times),
        "p90": times[min(len(times) - 1, int(0.9 * len(times)))],
        "min": times[0],
        "runs": len(times),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "batch": 1,
        "height": size[0],
        "width": size[1],
    }


def model_cost(model: nn.Module, size: tuple[int, int], checkpoint_path: Path) -> dict[str, Any]:
    from training.models import count_macs, count_parameters

    return {
        "config": dict(getattr(model, "config", {})),
        "parameters": int(count_parameters(model)),
        "macs": int(count_macs(model, size)),
        "weights_bytes_fp32": int(state_dict_bytes(model)),
        "checkpoint_bytes": int(os.path.getsize(checkpoint_path)),
    }


@torch.inference_mode()
def sample_predictions(
    model: nn.Module, ds: Dataset, indices: Sequence[int], device: torch.device
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """uint8 RGB images, labels and predictions of a few dataset items."""
    images, labels, preds = [], [], []
    for i in indices:
        x, y = ds[i]
        img, _ = ds.load_numpy(i) if hasattr(ds, "load_numpy") else (None, None)
        if img is None:  # undo (px - 127.5) / 127.5
            img = (x.permute(1, 2, 0).numpy() * 127.5 + 127.5).clip(0, 255).astype(np.uint8)
        pred = model(x.unsqueeze(0).to(device)).argmax(1)[0].cpu().numpy()
        images.append(img)
        labels.append(y.numpy())
        preds.append(pred)
    return images, labels, preds


def spread_indices(n: int, k: int) -> list[int]:
    """``k`` indices spread over ``range(n)`` (items are sorted by class, so this covers classes)."""
    if n == 0 or k <= 0:
        return []
    return sorted(set(np.linspace(0, n - 1, min(k, n)).round().astype(int).tolist()))


def run_evaluation(args: argparse.Namespace) -> dict[str, Any]:
    ckpt_path = Path(args.checkpoint)
    ckpt = load_checkpoint(ckpt_path)
    flags: dict[str, Any] = {"data": {"num_workers": args.workers}}
    if args.root:
        flags["data"]["root"] = args.root
    cfg = build_config(base=ckpt.get("train_config") or None, flags=flags)
    out_dir = Path(args.out) if args.out else ckpt_path.parent / f"eval_{args.split}_{ckpt_path.stem}"
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    model = load_model(ckpt_path, map_location="cpu").to(device)
    num_classes = int(ckpt["model_config"]["num_classes"])
    from seg_perception.classes import load_classes

    classes = load_classes(cfg.data.variant)
    names = list(ckpt.get("class_names") or classes.names)
    size = (cfg.data.height, cfg.data.width)

    ds = build_eval_dataset(cfg, args.split)
    loader = DataLoader(ds, batch_size=args.batch_size, shuffle=False, num_workers=args.workers)
    log.info("evaluating %s on %d %s photos at %dx%d", ckpt_path, len(ds), args.split, *size)
    _, cm = evaluate_loader(model, loader, None, num_classes, DistInfo(device=device), cfg.train.ignore_index)
    result: dict[str, Any] = seg_metrics.summarize(cm, names)
    result.update(
        checkpoint=str(ckpt_path),
        epoch=ckpt.get("epoch"),
        split=args.split,
        num_images=len(ds),
        variant=cfg.data.variant,
        input_size=list(size),
        model=model_cost(model, size, ckpt_path),
        latency_ms=measure_latency(model, size, device, args.latency_runs, args.warmup),
    )

    from .plots import plot_iou_vs_share, save_sample_grid

    per = result["per_class"]
    plot_iou_vs_share(
        [per[n]["iou"] for n in names], [per[n]["pixel_share"] for n in names], names, out_dir / "iou_vs_share.png"
    )
    idx = spread_indices(len(ds), args.num_samples)
    if idx:
        imgs, labs, preds = sample_predictions(model, ds, idx, device)
        save_sample_grid(
            imgs, labs, preds, classes.palette(), out_dir / "samples.png", titles=[_item_name(ds, i) for i in idx]
        )
    with open(out_dir / "metrics.json", "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    save_config(cfg, out_dir)
    log.info(
        "mIoU %.4f, pixel acc %.4f, mean Dice %.4f; %d params, %.1f MMACs, %.1f ms median -> %s",
        result["miou"] or float("nan"),
        result["pixel_accuracy"] or float("nan"),
        result["mean_dice"] or float("nan"),
        result["model"]["parameters"],
        result["model"]["macs"] / 1e6,
        result["latency_ms"]["median"],
        out_dir,
    )
    return result


def _item_name(ds: Dataset, i: int) -> str:
    samples = getattr(ds, "samples", None)
    return samples[i].stem if samples is not None and hasattr(samples[i], "stem") else str(i)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--root", help="atWork dataset root (default: the checkpoint's data.root)")
    p.add_argument("--split", choices=SPLITS, default="val")
    p.add_argument("--out", type=Path)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (0 = default)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--latency-runs", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--num-samples", type=int, default=6)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_evaluation(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
