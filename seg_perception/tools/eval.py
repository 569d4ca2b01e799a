"""seg-eval: accuracy and speed of a backend on a folder in the atWork layout, without ROS.

    seg-eval --backend tflite_int8 --root ../shared/datasets/atwork [--split val|train|all]

Runs the node's own pipeline (:func:`seg_perception.pipeline.make_segmenter`) on every photo at
its full resolution, accumulates one dataset-wide confusion matrix and prints one JSON object.
``--split val`` uses the training split rule (default: whole capture runs held out;
``--split-kind random`` gives the old random split for comparison). A final model, trained on
those photos too (manifest split record ``train_on_val``), is flagged ``"trained_on_val": true``
with a warning: its val number is memory, its held-out twin's is the estimate.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

import numpy as np

from ..atwork import SPLIT_KINDS, SplitSpec, list_samples, read_label, read_rgb, split_samples
from ..config import NodeConfig
from ..metrics import ConfusionMatrix, accuracy_summary
from ..pipeline import make_segmenter
from ..plain import to_plain

log = logging.getLogger("seg-eval")


def evaluate(
    backend: str,
    root: str,
    split: str = "all",
    model_path: str = "",
    threads: int = 2,
    limit: int = 0,
    split_kind: str = "run",
) -> dict[str, Any]:
    seg = make_segmenter(NodeConfig(backend=backend, model_path=model_path, num_threads=threads))
    samples = list_samples(root)
    if split != "all":
        train, val = split_samples(samples, SplitSpec(kind=split_kind))
        samples = val if split == "val" else train
    if limit:
        samples = samples[:limit]
    if not samples:
        raise ValueError(f"no photo with a mask under {root}/objects (split {split})")
    n = seg.classes.num_classes
    cm = ConfusionMatrix(n)
    times: list[float] = []
    for s in samples:
        rgb = read_rgb(s.image_path)
        gt = seg.classes.remap_dataset_mask(read_label(s.label_path))
        t = time.perf_counter()
        res = seg.run(rgb)
        times.append((time.perf_counter() - t) * 1e3)
        cm.update(res.labels, gt)
    acc = accuracy_summary(cm.matrix, seg.classes.names)
    trained_on_val = seg.backend.entry.trained_on_val  # a final model: its val numbers are memory
    if trained_on_val and split != "train":
        log.warning(
            "%s was trained on the validation photos too (manifest split record): this mIoU is memory, "
            "not accuracy on new capture runs",
            seg.backend.path.name,
        )
    return to_plain(
        {
            "backend": backend,
            "model_file": seg.backend.path.name,
            "split": split,
            "split_kind": split_kind,
            "trained_on_val": trained_on_val,
            "miou": _percent(acc["miou"]),
            "pixel_accuracy": _percent(acc["pixel_accuracy"]),
            "per_class_iou": {name: _percent(v) for name, v in acc["per_class_iou"].items()},
            "pixels_evaluated": int(cm.matrix.sum()),
            "num_images": len(samples),
            "median_ms": round(float(np.median(times)), 2),
        }
    )


def _percent(v: float | None) -> float | None:
    return None if v is None else round(100 * v, 2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="seg-eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--backend", default="tflite_int8")
    ap.add_argument(
        "--root", required=True, help="folder in the atWork layout (objects/image, objects/semantic_labels)"
    )
    ap.add_argument("--split", default="all", choices=("all", "val", "train"))
    ap.add_argument(
        "--split-kind",
        default="run",
        choices=SPLIT_KINDS,
        help="run: whole capture runs held out (default); random: the old random split",
    )
    ap.add_argument("--model-path", default="")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="evaluate only the first N photos")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        out = evaluate(args.backend, args.root, args.split, args.model_path, args.threads, args.limit, args.split_kind)
    except Exception as e:  # noqa: BLE001 - CLI: one clear line, non-zero exit
        print(f"seg-eval: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    print(json.dumps(out, allow_nan=False))
    if out["pixels_evaluated"] == 0:
        print(
            f"seg-eval: no pixel was evaluated: every mask pixel of the {out['num_images']} photos is 'ignore' "
            f"(255); miou and pixel_accuracy are null",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
