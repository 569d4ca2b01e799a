"""PNG plots of training curves, pruning curves, per-class IoU vs pixel share, sample grids and activation grids.

matplotlib with the Agg backend (no display), figures closed after saving so a
long run does not leak memory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from seg_perception.classes import IGNORE_INDEX  # noqa: E402

log = logging.getLogger(__name__)


def _num(v: object) -> float:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def _save(fig: plt.Figure, path: os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def plot_training_curves(rows: Sequence[Mapping[str, object]], out_dir: os.PathLike) -> list[Path]:
    """``loss.png`` (train/val loss) and ``miou.png`` (val mIoU, pixel accuracy) from log rows."""
    if not rows:
        return []
    epochs = [int(_num(r["epoch"])) for r in rows]
    out = []
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [_num(r.get("train_loss")) for r in rows], "o-", label="train")
    ax.plot(epochs, [_num(r.get("val_loss")) for r in rows], "s-", label="val")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    out.append(_save(fig, Path(out_dir) / "loss.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [_num(r.get("miou")) for r in rows], "o-", label="val mIoU")
    ax.plot(epochs, [_num(r.get("pixel_acc")) for r in rows], "s--", label="val pixel acc", alpha=0.7)
    ax.set_xlabel("epoch")
    ax.set_ylim(0, 1)
    ax.set_title("validation")
    ax.grid(alpha=0.3)
    ax.legend()
    out.append(_save(fig, Path(out_dir) / "miou.png"))
    return out


def plot_prune_curve(records: Sequence[Any], path: os.PathLike, title: str = "") -> Path:
    """Validation mIoU / pixel accuracy vs fraction of parameters removed, from the
    :class:`~training.prune.StepRecord` rows of a pruning run (cf. the reference study's figure)."""
    x = [100 * r.params_removed for r in records]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(x, [100 * r.miou for r in records], "o-", label="mIoU (fine-tuned)")
    ax.plot(x, [100 * r.pixel_accuracy for r in records], "s-", label="pixel accuracy (fine-tuned)")
    pre = [(xx, r) for xx, r in zip(x, records, strict=False) if r.miou_pruned is not None]
    if pre:
        ax.plot(
            [records[0].params_removed * 100] + [p[0] for p in pre],
            [100 * records[0].miou] + [100 * p[1].miou_pruned for p in pre],
            "o--",
            alpha=0.6,
            label="mIoU (pruned, before fine-tune)",
        )
    for xx, r in zip(x, records, strict=False):
        ax.annotate(
            f"{r.params / 1e6:.2f}M",
            (xx, 100 * r.miou),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=7,
        )
    ax.set_xlabel("parameters removed (%)")
    ax.set_ylabel("validation score (%)")
    ax.set_title(title or "Iterative L1 filter pruning")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_iou_vs_share(
    iou: Sequence[float | None], share: Sequence[float], names: Sequence[str], path: os.PathLike
) -> Path:
    """Per-class IoU against ground-truth pixel share (log x), and bars sorted by share.

    The reference study's observation: small objects (low pixel share) get low IoU;
    this plot shows whether a model shares that weakness.
    """
    iou_arr = np.array([np.nan if v is None else v for v in iou], dtype=float)
    share_arr = np.asarray(share, dtype=float)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [1, 1.4]})
    ok = ~np.isnan(iou_arr) & (share_arr > 0)
    ax1.scatter(share_arr[ok] * 100, iou_arr[ok])
    for i in np.flatnonzero(ok):
        ax1.annotate(names[i], (share_arr[i] * 100, iou_arr[i]), fontsize=7, xytext=(3, 2), textcoords="offset points")
    ax1.set_xscale("log")
    ax1.set_xlabel("ground-truth pixel share (%)")
    ax1.set_ylabel("IoU")
    ax1.set_ylim(0, 1.02)
    ax1.grid(alpha=0.3, which="both")
    ax1.set_title("IoU vs pixel share")

    order = np.argsort(share_arr)
    x = np.arange(len(order))
    ax2.bar(x, np.nan_to_num(iou_arr[order]), color="tab:blue", label="IoU")
    ax2b = ax2.twinx()
    ax2b.plot(x, share_arr[order] * 100, "o-", color="tab:orange", label="pixel share %")
    ax2b.set_yscale("log")
    ax2b.set_ylabel("pixel share (%)")
    ax2.set_xticks(x)
    ax2.set_xticklabels([names[i] for i in order], rotation=70, ha="right", fontsize=7)
    ax2.set_ylim(0, 1.02)
    ax2.set_ylabel("IoU")
    ax2.set_title("classes sorted by pixel share")
    fig.tight_layout()
    return _save(fig, path)


def colorize(labels: np.ndarray, palette: np.ndarray, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """(H, W) label ids -> (H, W, 3) uint8; ignored / out-of-palette pixels grey."""
    lut = np.full((256, 3), 128, dtype=np.uint8)
    lut[: len(palette)] = palette
    if ignore_index < 256:
        lut[ignore_index] = (128, 128, 128)
    return lut[np.clip(labels, 0, 255).astype(np.uint8)]


def save_sample_grid(
    images: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    preds: Sequence[np.ndarray],
    palette: np.ndarray,
    path: os.PathLike,
    titles: Sequence[str] | None = None,
) -> Path:
    """Rows of image / ground truth / prediction. Images are (H, W, 3) uint8 RGB."""
    n = len(images)
    fig, axes = plt.subplots(n, 3, figsize=(9, 2.6 * n), squeeze=False)
    for i in range(n):
        panels = (images[i], colorize(targets[i], palette), colorize(preds[i], palette))
        for j, (panel, title) in enumerate(zip(panels, ("image", "ground truth", "prediction"), strict=False)):
            ax = axes[i, j]
            ax.imshow(panel)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title)
        if titles:
            axes[i, 0].set_ylabel(titles[i], fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def save_activation_grid(
    image: np.ndarray,
    maps: np.ndarray,
    channels: Sequence[int],
    scores: Sequence[float],
    path: os.PathLike,
    title: str = "",
    cols: int = 6,
) -> Path:
    """The input image followed by activation maps (each min-max normalised, viridis)."""
    n = len(maps) + 1
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    axes[0, 0].imshow(image)
    axes[0, 0].set_title("input", fontsize=8)
    for k, (m, ch, s) in enumerate(zip(maps, channels, scores, strict=False), start=1):
        lo, hi = float(m.min()), float(m.max())
        norm = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
        ax = axes[k // cols, k % cols]
        ax.imshow(norm, cmap="viridis", interpolation="nearest")
        ax.set_title(f"ch {ch} ({s:.2f})", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def read_log_csv(path: os.PathLike) -> list[dict[str, str]]:
    import csv

    p = Path(path)
    if not p.is_file():
        return []
    with open(p, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
