"""One colour frame's segmentation + its depth -> 3D objects: what the node calls (no rclpy).

Decodes the depth message, fits depth and camera info to the frame, measures every object's
box (:mod:`seg_perception.geometry`) and, when enabled, settles size twins
(:mod:`seg_perception.size_pairs`). Bad depth or camera info raises
:class:`~seg_perception.depth_sync.DepthError` with a reason the node counts; the 2D outputs
never depend on it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import cv2
import numpy as np

from .depth_sync import camera_from_info, decode_depth, depth_for_frame
from .geometry import GeometryConfig, Object3D, measure_objects
from .size_pairs import ObjectFacts, SizePairs, load_object_facts


class InstanceBox(NamedTuple):
    """What the geometry needs of an instance (``SegObject``-like, without a full-frame mask)."""

    instance_id: int
    class_id: int
    class_name: str
    bbox: tuple[int, int, int, int]
    score: float


def instance_boxes(
    labels: np.ndarray,
    instances: np.ndarray,
    class_names: Sequence[str],
    step: int = 2,
    scores: np.ndarray | None = None,
    quant: tuple[float, int] | None = None,
    samples: int = 8,
    coarse: np.ndarray | None = None,
) -> list[InstanceBox]:
    """Instances, their classes and pixel boxes. ``scores`` (the model's (h, w, C) output, optional):
    each object's score is the mean softmax maximum at up to ``samples`` x ``samples`` of its pixels,
    else 1.0.

    ``coarse``: the instance map on the scores' grid that ``instances`` was upsampled from (every
    frame pixel of an instance lies within two grid cells of that instance's cells): the boxes are then
    exact, found from the few grid cells and closed on the frame's pixels, and the scores are read at
    the instance's own cells. Without it: from every ``step``-th row and column of ``instances``, the
    box padded by ``step`` (it only places the crop the geometry looks at); cost bounded by the object
    pixels of the sampled grid."""
    if coarse is not None:
        return _boxes_from_coarse(labels, instances, coarse, class_names, scores, quant, samples)
    sub = instances[::step, ::step]
    nz = np.flatnonzero(sub != 0)  # on a bool array: a tenth of flatnonzero's time on the uint16 map
    if nz.size == 0:
        return []
    ys, xs = np.divmod(nz, sub.shape[1])
    ids = sub[ys, xs]
    h, w = instances.shape
    found = []
    picks_y: list[np.ndarray] = []
    picks_x: list[np.ndarray] = []
    for k in np.unique(ids):
        sel = ids == k
        yk, xk = ys[sel], xs[sel]
        x0, y0 = max(0, int(xk.min()) * step - step), max(0, int(yk.min()) * step - step)
        x1, y1 = min(w, int(xk.max()) * step + 2 * step), min(h, int(yk.max()) * step + 2 * step)
        cls = int(labels[int(yk[0]) * step, int(xk[0]) * step])
        found.append((int(k), cls, (x0, y0, x1 - x0, y1 - y0)))
        if scores is not None:
            pick = np.linspace(0, yk.size - 1, min(yk.size, samples * samples)).astype(np.int64)
            picks_y.append(yk[pick] * step)
            picks_x.append(xk[pick] * step)
    obj_scores = [1.0] * len(found)
    if scores is not None:  # all objects' samples in one softmax
        starts = np.cumsum([0] + [p.size for p in picks_y[:-1]])
        probs = _max_softmax(scores, quant, np.concatenate(picks_y), np.concatenate(picks_x), (h, w))
        obj_scores = (np.add.reduceat(probs, starts) / [p.size for p in picks_y]).tolist()
    return _named(found, obj_scores, class_names)


def _named(
    found: list[tuple[int, int, tuple[int, int, int, int]]], obj_scores: Sequence[float], class_names: Sequence[str]
) -> list[InstanceBox]:
    return [
        InstanceBox(k, cls, class_names[cls] if cls < len(class_names) else str(cls), box, float(score))
        for (k, cls, box), score in zip(found, obj_scores, strict=True)
    ]


def _boxes_from_coarse(
    labels: np.ndarray,
    instances: np.ndarray,
    coarse: np.ndarray,
    class_names: Sequence[str],
    scores: np.ndarray | None,
    quant: tuple[float, int] | None,
    samples: int,
) -> list[InstanceBox]:
    """:func:`instance_boxes` from the grid's instance map: each instance's cells, grown by two cells,
    bound where its frame pixels can be; its box is closed on those pixels (one small compare per
    object instead of a scan of the frame). An instance with no frame pixel left is not an object."""
    h, w = coarse.shape
    big_h, big_w = instances.shape
    flat = coarse.ravel()
    nz = np.flatnonzero(flat)
    if nz.size == 0:
        return []
    ids = flat[nz]
    order = np.argsort(ids, kind="stable")  # cells of one instance together, in raster order
    ids, nz = ids[order], nz[order]
    ks, starts = np.unique(ids, return_index=True)
    ys, xs = np.divmod(nz, w)
    y_lo, y_hi = np.minimum.reduceat(ys, starts), np.maximum.reduceat(ys, starts)
    x_lo, x_hi = np.minimum.reduceat(xs, starts), np.maximum.reduceat(xs, starts)
    # frame rows of grid rows y_lo - 2 .. y_hi + 2, rounded outwards: a frame pixel takes the instance of
    # a cell next to its own at the size where the upsampling decides, and the nearest-neighbour
    # doublings from there to the frame move it by less than one pixel of that size (< a cell)
    r0 = np.maximum(0, (y_lo - 2) * big_h // h)
    r1 = np.minimum(big_h, -((-(y_hi + 3) * big_h) // h))
    c0 = np.maximum(0, (x_lo - 2) * big_w // w)
    c1 = np.minimum(big_w, -((-(x_hi + 3) * big_w) // w))
    found = []
    kept = []
    for i, k in enumerate(ks.tolist()):
        y0, x0 = int(r0[i]), int(c0[i])
        m = (instances[y0 : int(r1[i]), x0 : int(c1[i])] == k).view(np.uint8)
        bx, by, bw, bh = cv2.boundingRect(m)
        if bw == 0:
            continue
        col = int(np.argmax(m[by]))  # a pixel of the instance in its top row: its class (an instance has one)
        found.append((k, int(labels[y0 + by, x0 + col]), (x0 + bx, y0 + by, bw, bh)))
        kept.append(i)
    obj_scores: Sequence[float] = [1.0] * len(found)
    if scores is not None and found:
        if scores.shape[:2] != coarse.shape:
            raise ValueError(f"scores grid {scores.shape[:2]} and coarse instance map {coarse.shape} differ")
        # up to samples^2 cells of each instance, evenly over its cells in raster order, all in one go
        counts = np.diff(np.append(starts, nz.size))
        take = np.minimum(counts, samples * samples)
        first = np.cumsum(take) - take
        j = np.arange(int(take.sum())) - np.repeat(first, take)
        sel = np.repeat(starts, take) + j * np.repeat(counts - 1, take) // np.repeat(np.maximum(take - 1, 1), take)
        probs = _max_softmax(scores, quant, ys[sel], xs[sel], (h, w))
        obj_scores = (np.add.reduceat(probs, first) / take)[kept].tolist()
    return _named(found, obj_scores, class_names)


def _max_softmax(
    scores: np.ndarray, quant: tuple[float, int] | None, ys: np.ndarray, xs: np.ndarray, hw: tuple[int, int]
) -> np.ndarray:
    """The max class probability at full-resolution pixels (ys, xs) of a (h, w, C) score map."""
    sh, sw = scores.shape[:2]
    s = scores[np.minimum(ys * sh // hw[0], sh - 1), np.minimum(xs * sw // hw[1], sw - 1)].astype(np.float32)
    if quant is not None:
        s = (s - quant[1]) * quant[0]
    s -= s.max(axis=1, keepdims=True)
    return 1.0 / np.exp(s).sum(axis=1)


@dataclass
class Objects3D:
    objects: list[Object3D]  # measured, in instance-id order
    no_pose: list[tuple[int, str]] = field(default_factory=list)  # (instance id, reason)
    resolved: int = 0  # objects whose class a size pair changed
    ms: float = 0.0


class ObjectGeometry:
    """Measures the objects of a frame; holds the class facts and the size-pair table."""

    def __init__(self, class_names: Sequence[str], facts: ObjectFacts | None = None, cfg: GeometryConfig | None = None):
        self.facts = facts or load_object_facts()
        self.cfg = cfg or GeometryConfig(
            symmetric_classes=self.facts.symmetric, round_section_classes=self.facts.round_section
        )
        self.class_names = list(class_names)
        self.pairs = SizePairs(self.facts, class_names)

    def run(
        self,
        depth_msg: Any,
        info_msg: Any,
        labels: np.ndarray,
        instances: np.ndarray,
        objects: Sequence[Any] | None = None,
        resolve_pairs: bool = True,
        scores: np.ndarray | None = None,
        quant: tuple[float, int] | None = None,
        class_names: Sequence[str] = (),
        coarse: np.ndarray | None = None,
    ) -> Objects3D:
        """``objects``: the frame's ``SegObject`` list, or None to find them here (:func:`instance_boxes`,
        scored from the model's ``scores`` when given; ``coarse``: the instance map on the scores' grid, for
        exact boxes at a fraction of the cost). Raises DepthError (reason) on unusable input."""
        t0 = time.perf_counter()
        depth = decode_depth(depth_msg)
        depth, cam = depth_for_frame(depth, camera_from_info(info_msg), labels.shape)
        if objects is None:
            names = class_names or self.class_names
            objects = instance_boxes(labels, instances, names, scores=scores, quant=quant, coarse=coarse)
        found, failed = measure_objects(depth, labels, instances, objects, cam, self.cfg)
        resolved = self.pairs.apply(found) if resolve_pairs else 0
        return Objects3D(found, failed, resolved, (time.perf_counter() - t0) * 1e3)
