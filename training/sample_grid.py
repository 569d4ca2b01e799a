"""A grid of predictions of every shipped backend on the project's own rendered demo frames.

    python -m training.sample_grid --out docs/results/demo_predictions.png

Rows: rendered frames (``seg_perception.demo_frames``: no dataset pixels, so the picture may
go into the README). Columns: the frame, its ground truth, then each backend's labels blended
over the frame, through the node's own pipeline (``make_segmenter``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)


def _caption(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(out, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def make_grid(configs: dict[str, Any], seeds: Sequence[int], scale: float = 0.5) -> np.ndarray:
    """RGB uint8 grid, one row per seed, columns frame | ground truth | one per column title
    of ``configs`` (title -> :class:`~seg_perception.config.NodeConfig`)."""
    from seg_perception.demo_frames import render_frame
    from seg_perception.pipeline import make_segmenter
    from seg_perception.postprocess import overlay

    segs = {title: make_segmenter(cfg) for title, cfg in configs.items()}
    palette = next(iter(segs.values())).classes.palette() if segs else None
    rows: list[np.ndarray] = []
    for seed in seeds:
        rgb, gt = render_frame(seed)
        cells = [_caption(rgb, f"frame {seed}"), _caption(overlay(rgb, gt, palette, 0.6), "ground truth")]
        for name, seg in segs.items():
            res = seg.run(rgb)
            cells.append(_caption(overlay(rgb, res.labels, palette, 0.6), name))
        size = (int(rgb.shape[1] * scale), int(rgb.shape[0] * scale))
        rows.append(np.concatenate([cv2.resize(c, size, interpolation=cv2.INTER_AREA) for c in cells], axis=1))
    return np.concatenate(rows, axis=0)


def main(argv: Sequence[str] | None = None) -> int:
    from seg_perception.backends import BACKENDS
    from seg_perception.config import NodeConfig
    from seg_perception.manifest import Manifest

    ap = argparse.ArgumentParser(
        prog="python -m training.sample_grid", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=Path("docs/results/demo_predictions.png"))
    ap.add_argument("--backends", default="", help="comma list (default: every shipped backend)")
    ap.add_argument("--seeds", default="0,3,5,7", help="demo frame seeds, comma list")
    ap.add_argument("--scale", type=float, default=0.4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    man = Manifest.load()
    names = [b for b in args.backends.split(",") if b] or [b for b, s in BACKENDS.items() if s.entry in man.entries]
    configs = {b: NodeConfig(backend=b, num_threads=args.threads) for b in names}
    grid = make_grid(configs, [int(s) for s in args.seeds.split(",")], args.scale)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), grid[:, :, ::-1])
    log.info("wrote %s (%dx%d, backends %s)", args.out, grid.shape[1], grid.shape[0], names)
    return 0


if __name__ == "__main__":
    sys.exit(main())
