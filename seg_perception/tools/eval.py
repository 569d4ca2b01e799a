"""seg-eval: accuracy and speed of a backend on a folder in the atWork layout, without ROS.

    seg-eval --backend tflite_int8 --root ../shared/datasets/atwork [--split val|train|all]

Runs the node's own pipeline (:func:`seg_perception.pipeline.make_segmenter`) on every photo at
its full resolution, accumulates one dataset-wide confusion matrix and prints one JSON object.
``--split val`` uses the training split rule (default: whole capture runs held out;
``--split-kind random`` gives the old random split for comparison). A final model, trained on
those photos too (manifest split record ``train_on_val``), is flagged ``"trained_on_val": true``
with a warning: its val number is memory, its held-out twin's is the estimate.

``--compare-model-path FILE`` (and/or ``--compare-backend NAME``) runs a second model on the same
photos and adds a ``comparison``: its mIoU, the difference to the first and how sure that
difference is (a paired bootstrap over the photos, :func:`seg_perception.metrics.paired_miou_bootstrap`):
with ~100 photos a difference inside about +-2 points is often noise. ``--flip-average on|off|auto``
(the node parameter) and ``--compare-flip-average`` compare a model with and without flip averaging.
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
from ..backends import FLIP_MODES
from ..config import NodeConfig
from ..metrics import ConfusionMatrix, accuracy_summary, confusion_matrix, paired_miou_bootstrap
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
    compare: tuple[str, str] | None = None,
    resamples: int = 1000,
    flip_average: str = "auto",
    compare_flip_average: str = "auto",
) -> dict[str, Any]:
    """``compare``: (backend, model_path) of a second model scored on the same photos (with
    ``compare_flip_average``: the same model with and without flip averaging can be compared)."""
    seg = make_segmenter(
        NodeConfig(backend=backend, model_path=model_path, num_threads=threads, flip_average=flip_average)
    )
    other = None
    if compare is not None:
        other = make_segmenter(
            NodeConfig(
                backend=compare[0], model_path=compare[1], num_threads=threads, flip_average=compare_flip_average
            )
        )
        if other.classes.names != seg.classes.names:
            raise ValueError(
                f"cannot compare: the models' classes differ ({other.classes.variant} vs {seg.classes.variant})"
            )
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
    per_photo: list[np.ndarray] = []  # with a comparison: each photo's matrix, first model then second
    for s in samples:
        rgb = read_rgb(s.image_path)
        gt = seg.classes.remap_dataset_mask(read_label(s.label_path))
        t = time.perf_counter()
        res = seg.run(rgb)
        times.append((time.perf_counter() - t) * 1e3)
        one = confusion_matrix(res.labels, gt, n)
        cm.add(one)
        if other is not None:
            per_photo.append(np.stack([one, confusion_matrix(other.run(rgb).labels, gt, n)]))
    acc = accuracy_summary(cm.matrix, seg.classes.names)
    trained_on_val = seg.backend.entry.trained_on_val  # a final model: its val numbers are memory
    if trained_on_val and split != "train":
        log.warning(
            "%s was trained on the validation photos too (manifest split record): this mIoU is memory, "
            "not accuracy on new capture runs",
            seg.backend.path.name,
        )
    out: dict[str, Any] = {
        "backend": backend,
        "model_file": seg.backend.path.name,
        "split": split,
        "split_kind": split_kind,
        "trained_on_val": trained_on_val,
        "flip_average": seg.flip_average,
        "miou": _percent(acc["miou"]),
        "pixel_accuracy": _percent(acc["pixel_accuracy"]),
        "per_class_iou": {name: _percent(v) for name, v in acc["per_class_iou"].items()},
        "pixels_evaluated": int(cm.matrix.sum()),
        "num_images": len(samples),
        "median_ms": round(float(np.median(times)), 2),
    }
    if other is not None:
        both = np.stack(per_photo)
        boot = paired_miou_bootstrap(both[:, 0], both[:, 1], resamples)
        out["comparison"] = {
            "backend": compare[0] if compare else "",
            "model_file": other.backend.path.name,
            "trained_on_val": other.backend.entry.trained_on_val,
            "flip_average": other.flip_average,
            "miou": _percent(accuracy_summary(both[:, 1].sum(axis=0))["miou"]),
            "miou_diff": _percent(boot["diff"]),
            "miou_diff_ci95": [_percent(boot["ci95_low"]), _percent(boot["ci95_high"])],
            "p_not_better": round(boot["p_b_not_better"], 3),
            "resamples": resamples,
        }
    return to_plain(out)


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
    ap.add_argument("--compare-backend", default="", help="a second model on the same photos (default: --backend)")
    ap.add_argument("--compare-model-path", default="", help="its model file (with --backend onnx/tflite: two files)")
    ap.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of the comparison")
    ap.add_argument(
        "--flip-average",
        default="auto",
        choices=FLIP_MODES,
        help="also run on the mirror image and average (the node parameter flip_average; auto = the backend's)",
    )
    ap.add_argument(
        "--compare-flip-average",
        choices=FLIP_MODES,
        help="the second model's flip_average (given alone: the same model, compared with itself so run)",
    )
    args = ap.parse_args(argv)
    compare = None
    if args.compare_backend or args.compare_model_path:
        compare = (args.compare_backend or args.backend, args.compare_model_path)
    elif args.compare_flip_average:  # the same model, run the other way
        compare = (args.backend, args.model_path)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        out = evaluate(
            args.backend,
            args.root,
            args.split,
            args.model_path,
            args.threads,
            args.limit,
            args.split_kind,
            compare,
            args.resamples,
            args.flip_average,
            args.compare_flip_average or "auto",
        )
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
