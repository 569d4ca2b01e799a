"""The PNG report of ``seg-replay --report``: per-class IoU, latency histogram, overlays.

matplotlib (Agg, no display) is imported here only, so the replay itself runs without it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

LOG = logging.getLogger(__name__)

Sample = tuple[np.ndarray, np.ndarray, np.ndarray | None]  # rgb, predicted labels, ground truth


def overlay_safe(rgb: np.ndarray, labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Class colours over the image; ignore (255) and out-of-range ids are shown as background."""
    from ...postprocess import overlay

    safe = np.where(labels < len(palette), labels, 0).astype(np.intp)
    return overlay(rgb, safe, palette, 0.55)


def _iou_panel(ax: Any, summary: dict[str, Any], names: Sequence[str], palette: np.ndarray) -> None:
    acc = summary.get("accuracy")
    if not acc:
        ax.text(0.5, 0.5, "no ground-truth topic: no IoU", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    per = acc["per_class_iou"]
    shown = [n for n in names if per.get(n) is not None]
    vals = [per[n] for n in shown]
    colours = [palette[list(names).index(n)] / 255.0 for n in shown]
    ax.barh(range(len(shown)), vals, color=colours, edgecolor="black", linewidth=0.4)
    ax.set_yticks(range(len(shown)), shown, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("IoU")
    m = acc.get("miou")
    ax.set_title(
        f"per-class IoU (mIoU {m:.3f}, {acc['frames_evaluated']} frames)" if m is not None else "per-class IoU"
    )


def _latency_panel(ax: Any, latencies_ms: Sequence[float], summary: dict[str, Any]) -> None:
    if not latencies_ms:
        ax.text(0.5, 0.5, "no latency samples", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    live = summary.get("mode") == "live"
    ax.hist(latencies_ms, bins=min(40, max(5, len(latencies_ms) // 3)), color="#4a7ab5")
    stats = summary.get("latency_ms" if live else "pipeline_ms", {})
    for key, style in (("p50", "-"), ("p95", "--")):
        if stats.get(key) is not None:
            ax.axvline(stats[key], color="black", linestyle=style, linewidth=1, label=f"{key} {stats[key]:.1f} ms")
    ax.legend(fontsize=8)
    ax.set_xlabel("publish -> labels received (ms)" if live else "offline pipeline time per frame (ms)")
    ax.set_ylabel("frames")
    sent, done = summary.get("frames_sent"), summary.get("frames_processed")
    ax.set_title(f"latency ({done}/{sent} frames processed)")


def write_report(
    path: Path, summary: dict[str, Any], classes: Any, latencies_ms: Sequence[float], samples: list[Sample]
) -> Path:
    """Write the report PNG; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    palette = classes.palette()
    cols = max(1, len(samples))
    has_gt = any(gt is not None for _, _, gt in samples)
    rows = 1 + (1 if samples else 0) + (1 if has_gt else 0)
    fig = plt.figure(figsize=(max(10, 3.2 * cols), 4.2 + 2.6 * (rows - 1)), constrained_layout=True)
    grid = fig.add_gridspec(rows, 2 * cols, height_ratios=[1.6] + [1.0] * (rows - 1))
    _iou_panel(fig.add_subplot(grid[0, :cols]), summary, classes.names, palette)
    _latency_panel(fig.add_subplot(grid[0, cols:]), latencies_ms, summary)
    for i, (rgb, pred, gt) in enumerate(samples):
        ax = fig.add_subplot(grid[1, 2 * i : 2 * i + 2])
        ax.imshow(overlay_safe(rgb, pred, palette))
        ax.set_title("prediction" if summary.get("mode") == "offline" else "node output", fontsize=8)
        ax.set_axis_off()
        if has_gt:
            ax = fig.add_subplot(grid[2, 2 * i : 2 * i + 2])
            if gt is not None:
                ax.imshow(overlay_safe(rgb, gt, palette))
            ax.set_title("ground truth", fontsize=8)
            ax.set_axis_off()
    fig.suptitle(
        f"seg-replay {summary.get('mode')}: {Path(str(summary.get('bag'))).name} [{summary.get('backend')}]",
        fontsize=10,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    LOG.info("report written to %s", path)
    return path
