"""Segmentation metrics from one dataset-wide confusion matrix (pure numpy).

Why one matrix: per-image mIoU averages are biased towards small images and
images where a class is absent; the standard (PASCAL VOC, Cityscapes, the seed
study) accumulates true/false positives over the whole split first and derives
every score from that single matrix.

Conventions
-----------
* ``cm[i, j]`` counts pixels with ground truth ``i`` predicted as ``j``
  (rows = ground truth, columns = prediction, as scikit-learn).
* Pixels whose ground truth equals ``ignore_index`` (255, :data:`~seg_perception.classes.IGNORE_INDEX`)
  are skipped entirely.
* Per-class IoU = TP / (TP + FP + FN). A class with an empty union (absent from
  both ground truth and prediction) has an undefined IoU (NaN) and is left out
  of the mean: mIoU averages over the classes present in the ground truth *or*
  the prediction. A class predicted but absent from the ground truth counts with
  IoU 0, so false alarms are penalised.
* Dice per class = 2 TP / (2 TP + FP + FN), averaged the same way.

No torch import here: the runtime (``seg_perception``) may use this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .classes import IGNORE_INDEX


def confusion_matrix(
    pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int | None = IGNORE_INDEX
) -> np.ndarray:
    """(num_classes, num_classes) int64 confusion matrix of one or many label maps.

    ``pred`` and ``target`` are integer arrays of the same shape (any number of
    dims). Ground-truth pixels equal to ``ignore_index`` are skipped; any other
    value outside ``[0, num_classes)`` in either array is an error rather than
    being silently dropped.
    """
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {pred.shape} != target shape {target.shape}")
    t = target.reshape(-1).astype(np.int64, copy=False)
    p = pred.reshape(-1).astype(np.int64, copy=False)
    if ignore_index is not None:
        keep = t != ignore_index
        t = t[keep]
        p = p[keep]
    if t.size:
        if t.min() < 0 or t.max() >= num_classes:
            raise ValueError(f"target values outside [0, {num_classes}) and != ignore_index {ignore_index}")
        if p.min() < 0 or p.max() >= num_classes:
            raise ValueError(f"prediction values outside [0, {num_classes})")
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64, copy=False)


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan, dtype=np.float64)
    nz = den > 0
    out[nz] = num[nz] / den[nz]
    return out


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """Per-class IoU; NaN where the class is absent from both ground truth and prediction."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    return _safe_ratio(tp, union)


def dice_per_class(cm: np.ndarray) -> np.ndarray:
    """Per-class Dice (F1); NaN where the class is absent from both ground truth and prediction."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    return _safe_ratio(2.0 * tp, cm.sum(axis=0) + cm.sum(axis=1))


def _nanmean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else float("nan")


def mean_iou(cm: np.ndarray) -> float:
    """Mean IoU over classes with a nonzero union (present in ground truth or prediction)."""
    return _nanmean(iou_per_class(cm))


def paired_miou_bootstrap(
    per_image_a: np.ndarray, per_image_b: np.ndarray, resamples: int = 1000, seed: int = 0
) -> dict[str, float]:
    """How sure is a mIoU difference B - A measured on the same images? ``per_image_*``: (N, C, C)
    confusion matrices, one per image. Each of ``resamples`` draws takes N images with replacement
    (the same draw for both models) and sums their matrices into one dataset-wide mIoU each, as the
    score itself is made. Returns the difference on all images, the 2.5 / 97.5 percentiles of the
    drawn differences (``ci95_low`` / ``ci95_high``) and the share of draws where B is not better
    (``p_b_not_better``), all mIoU as fractions."""
    a, b = np.asarray(per_image_a, np.float64), np.asarray(per_image_b, np.float64)
    if a.shape != b.shape or a.ndim != 3 or len(a) == 0:
        raise ValueError(f"need two equal (N, C, C) stacks of confusion matrices, got {a.shape} and {b.shape}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    n = len(a)
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples)
    for i in range(resamples):
        counts = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        diffs[i] = mean_iou(np.tensordot(counts, b, axes=1)) - mean_iou(np.tensordot(counts, a, axes=1))
    return {
        "diff": mean_iou(b.sum(axis=0)) - mean_iou(a.sum(axis=0)),
        "ci95_low": float(np.percentile(diffs, 2.5)),
        "ci95_high": float(np.percentile(diffs, 97.5)),
        "p_b_not_better": float(np.mean(diffs <= 0)),
        "resamples": resamples,
    }


def mean_dice(cm: np.ndarray) -> float:
    """Mean Dice over classes with a nonzero union."""
    return _nanmean(dice_per_class(cm))


def pixel_accuracy(cm: np.ndarray) -> float:
    """Correct pixels / all non-ignored pixels."""
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum()
    return float(np.trace(cm) / total) if total > 0 else float("nan")


def mean_class_accuracy(cm: np.ndarray) -> float:
    """Per-class recall averaged over the classes present in the ground truth."""
    cm = np.asarray(cm, dtype=np.float64)
    return _nanmean(_safe_ratio(np.diag(cm), cm.sum(axis=1)))


def class_pixel_share(cm: np.ndarray) -> np.ndarray:
    """Fraction of (non-ignored) ground-truth pixels per class."""
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum()
    gt = cm.sum(axis=1)
    return gt / total if total > 0 else np.zeros_like(gt)


def frequency_weighted_iou(cm: np.ndarray) -> float:
    """IoU weighted by ground-truth pixel share (dominated by the background)."""
    iou = np.nan_to_num(iou_per_class(cm), nan=0.0)
    return float((class_pixel_share(cm) * iou).sum())


def _none_if_nan(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def _class_names(cm: np.ndarray, class_names: Sequence[str] | None) -> list[str]:
    n = cm.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(n)]
    if len(names) != n:
        raise ValueError(f"{len(names)} class names for a {n}-class confusion matrix")
    return names


def accuracy_summary(cm: np.ndarray, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """What every tool reports of one confusion matrix: ``miou``, ``pixel_accuracy`` and
    ``per_class_iou`` (name -> IoU), as fractions; ``None`` where undefined (JSON-ready)."""
    cm = np.asarray(cm, dtype=np.int64)
    names = _class_names(cm, class_names)
    return {
        "miou": _none_if_nan(mean_iou(cm)),
        "pixel_accuracy": _none_if_nan(pixel_accuracy(cm)),
        "per_class_iou": {name: _none_if_nan(v) for name, v in zip(names, iou_per_class(cm), strict=False)},
    }


def summarize(cm: np.ndarray, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """:func:`accuracy_summary` plus every other score of the matrix (Dice, class accuracy, per-class
    pixel counts, the matrix itself): a training run's or an evaluation's full record."""
    cm = np.asarray(cm, dtype=np.int64)
    names = _class_names(cm, class_names)
    iou = iou_per_class(cm)
    dice = dice_per_class(cm)
    share = class_pixel_share(cm)
    return {
        **accuracy_summary(cm, names),
        "mean_dice": _none_if_nan(mean_dice(cm)),
        "mean_class_accuracy": _none_if_nan(mean_class_accuracy(cm)),
        "frequency_weighted_iou": _none_if_nan(frequency_weighted_iou(cm)),
        "num_pixels": int(cm.sum()),
        "classes_in_mean": int((~np.isnan(iou)).sum()),
        "per_class": {
            name: {
                "iou": _none_if_nan(iou[i]),
                "dice": _none_if_nan(dice[i]),
                "pixel_share": float(share[i]),
                "gt_pixels": int(cm[i].sum()),
                "pred_pixels": int(cm[:, i].sum()),
            }
            for i, name in enumerate(names)
        },
        "confusion_matrix": cm.tolist(),
    }


class ConfusionMatrix:
    """Accumulates one confusion matrix over a whole split (batch by batch)."""

    def __init__(self, num_classes: int, ignore_index: int | None = IGNORE_INDEX) -> None:
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def reset(self) -> None:
        self.matrix[...] = 0

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        self.matrix += confusion_matrix(pred, target, self.num_classes, self.ignore_index)

    def add(self, other: np.ndarray | ConfusionMatrix) -> None:
        """Merge another matrix (e.g. gathered from another process)."""
        m = other.matrix if isinstance(other, ConfusionMatrix) else np.asarray(other, dtype=np.int64)
        if m.shape != self.matrix.shape:
            raise ValueError(f"shape {m.shape} != {self.matrix.shape}")
        self.matrix += m

    def update_all(self, pairs: Iterable[tuple]) -> ConfusionMatrix:
        for pred, target in pairs:
            self.update(pred, target)
        return self

    def summary(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        return summarize(self.matrix, class_names)
