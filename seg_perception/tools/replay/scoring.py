"""Scoring a replay: one dataset-wide confusion matrix (seg_perception.metrics), predictions joined
to ground truth by header stamp, latency percentiles, label fingerprints and report samples."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ... import metrics
from ...metrics import confusion_matrix
from ...stamps import Stamp

LOG = logging.getLogger("seg_replay")


def confusion(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``cm[i, j]``: pixels of ground truth ``i`` predicted ``j``; ground truth 255 ignored."""
    return confusion_matrix(pred, gt, num_classes)


def miou(cm: np.ndarray) -> float | None:
    """Mean IoU of the classes present; None when none is."""
    return metrics.accuracy_summary(cm)["miou"]


def accuracy_summary(cm: np.ndarray, names: Sequence[str], frames: int) -> dict[str, Any]:
    """:func:`seg_perception.metrics.accuracy_summary` (what seg-eval reports too) of ``frames`` frames."""
    return {"frames_evaluated": frames, **metrics.accuracy_summary(cm, names)}


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None, "mean": None}
    a = np.asarray(values, np.float64)
    return {
        "n": int(a.size),
        "p50": round(float(np.percentile(a, 50)), 3),
        "p95": round(float(np.percentile(a, 95)), 3),
        "max": round(float(a.max()), 3),
        "mean": round(float(a.mean()), 3),
    }


def label_digest(labels: np.ndarray) -> str:
    """A short fingerprint of a label map: live and offline maps are compared without keeping them."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.asarray(labels.shape, np.int64).tobytes())
    h.update(np.ascontiguousarray(labels).tobytes())
    return h.hexdigest()


class StampJoin:
    """Pairs predictions with ground truth by header stamp, whichever arrives first.

    Only one small confusion matrix per evaluated frame is kept; unmatched maps are
    dropped after ``max_age_s`` so a long bag with many dropped frames stays bounded.
    """

    def __init__(self, num_classes: int, max_age_s: float = 30.0):
        self.n = num_classes
        self.max_age_s = max_age_s
        self.cms: dict[Stamp, np.ndarray] = {}
        self._gt: dict[Stamp, tuple[float, np.ndarray]] = {}
        self._pred: dict[Stamp, tuple[float, np.ndarray]] = {}

    def add_gt(self, stamp: Stamp, gt: np.ndarray) -> None:
        if stamp in self._pred:
            self._score(stamp, gt, self._pred.pop(stamp)[1])
        else:
            self._gt[stamp] = (time.monotonic(), gt)

    def add_pred(self, stamp: Stamp, pred: np.ndarray) -> None:
        if stamp in self._gt:
            self._score(stamp, self._gt.pop(stamp)[1], pred)
        else:
            self._pred[stamp] = (time.monotonic(), pred)

    def _score(self, stamp: Stamp, gt: np.ndarray, pred: np.ndarray) -> None:
        if gt.shape != pred.shape:
            LOG.warning(
                "frame %s: ground truth %s and labels %s differ in size; not scored", stamp, gt.shape, pred.shape
            )
            return
        self.cms[stamp] = confusion(gt, pred, self.n)

    def prune(self) -> None:
        old = time.monotonic() - self.max_age_s
        for store in (self._gt, self._pred):
            for s in [s for s, (t, _) in list(store.items()) if t < old]:
                store.pop(s, None)

    def total(self, stamps: Sequence[Stamp] | None = None) -> np.ndarray:
        keys = self.cms.keys() if stamps is None else [s for s in stamps if s in self.cms]
        cm = np.zeros((self.n, self.n), np.int64)
        for s in keys:
            cm += self.cms[s]
        return cm


class Samples:
    """A few frames spread over the bag (image, prediction, ground truth) for the report strip."""

    def __init__(self, total_frames: int, want: int = 4):
        step = max(1, total_frames // max(1, 2 * want))
        self.candidates = set(range(0, total_frames, step))
        self.want = want
        self.rgb: dict[Stamp, np.ndarray] = {}
        self.gt: dict[Stamp, np.ndarray] = {}
        self.pred: dict[Stamp, np.ndarray] = {}
        self._pending_gt: tuple[Stamp, np.ndarray] | None = None

    def wants(self, index: int) -> bool:
        return index in self.candidates and len(self.pred) < self.want

    def add_rgb(self, stamp: Stamp, rgb: np.ndarray) -> None:
        self.rgb[stamp] = rgb
        if self._pending_gt is not None and self._pending_gt[0] == stamp:
            self.gt[stamp] = self._pending_gt[1]

    def offer_gt(self, stamp: Stamp, gt: np.ndarray) -> None:
        """Ground truth may come just before or after its frame in the bag: keep the latest one aside."""
        if stamp in self.rgb:
            self.gt.setdefault(stamp, gt)
        else:
            self._pending_gt = (stamp, gt)

    def offer_pred(self, stamp: Stamp, pred: np.ndarray) -> None:
        if stamp in self.rgb and len(self.pred) < self.want:
            self.pred[stamp] = pred

    def frames(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        return [(self.rgb[s], self.pred[s], self.gt.get(s)) for s in sorted(self.pred)]
