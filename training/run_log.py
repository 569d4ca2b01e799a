"""What a training run writes about itself besides checkpoints: ``log.csv``, the curves, its command line."""

from __future__ import annotations

import csv
import logging
import math
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("training.run_log")

#: the columns of ``log.csv``, one row per epoch; ``lr`` is the first parameter group's learning rate
#: at the epoch's first iteration (in epoch 1 of a warm-up schedule: the warm-up's starting value)
LOG_FIELDS = (
    "epoch",
    "train_loss",
    "val_loss",
    "miou",
    "pixel_acc",
    "mean_dice",
    "lr",
    "epoch_time_s",
    "train_images_per_s",
)


def log_value(v: float | None, digits: int = 5) -> Any:
    """A number rounded for ``log.csv``; NaN and None (not measured this epoch) as an empty cell."""
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), digits)


def epoch_row(
    epoch: int, lr: float, train_stats: Mapping[str, float], val_loss: float, miou: float, summary: Mapping[str, Any]
) -> dict[str, Any]:
    """One ``log.csv`` row: ``train_stats`` from the epoch's training pass, ``summary`` from validation
    (empty, and ``val_loss``/``miou`` NaN, in an epoch without validation)."""
    return {
        "epoch": epoch,
        "train_loss": log_value(train_stats["loss"]),
        "val_loss": log_value(val_loss),
        "miou": log_value(miou),
        "pixel_acc": log_value(summary.get("pixel_accuracy")),
        "mean_dice": log_value(summary.get("mean_dice")),
        "lr": f"{lr:.6g}",
        "epoch_time_s": log_value(train_stats["seconds"], 2),
        "train_images_per_s": log_value(train_stats["images_per_s"], 2),
    }


def write_log(rows: Sequence[Mapping[str, Any]], out_dir: Path) -> Path:
    """Rewrite ``out_dir/log.csv`` from all rows so far (atomically: a reader never sees half a file)."""
    path = out_dir / "log.csv"
    tmp = out_dir / "log.csv.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in LOG_FIELDS})
    os.replace(tmp, path)
    return path


def write_plots(rows: Sequence[Mapping[str, Any]], out_dir: Path) -> None:
    """``loss.png`` and ``miou.png``; a failure is logged, never raised."""
    try:
        from .plots import plot_training_curves

        plot_training_curves(rows, out_dir)
    except Exception:  # noqa: BLE001 - a plot must never stop a training run
        log.exception("could not write plots")


def command_line(argv: Sequence[str] | None = None, module: str = "training.train") -> str:
    """The command line of this run of ``module`` (recorded in checkpoints, then in the manifest)."""
    prog = f"torchrun ... -m {module}" if "LOCAL_RANK" in os.environ else f"python -m {module}"
    return prog + " " + shlex.join(str(a) for a in (sys.argv[1:] if argv is None else argv))
