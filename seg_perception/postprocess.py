"""Scores -> labels, instances, per-object list and overlay (pure numpy/cv2)."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass
class SegObject:
    """One connected object: what a grasp planner needs without re-deriving it."""

    instance_id: int
    class_id: int
    class_name: str
    bbox: tuple[int, int, int, int]  # x, y, width, height (pixels, input resolution)
    centroid: tuple[float, float]  # x, y
    area: int
    score: float  # mean class probability over the object's pixels
    mask: np.ndarray = field(repr=False)  # bool HxW


def scores_to_labels(
    scores: np.ndarray, quant: tuple[float, int] | None = None, want_confidence: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """(h, w, C) scores -> (h, w) uint8 argmax, and optionally the softmax max probability.

    Quantised outputs are argmax-ed as they are (scale > 0 keeps the order) and only
    dequantised when a confidence is asked for.
    """
    labels = np.argmax(scores, axis=-1).astype(np.uint8)
    if not want_confidence:
        return labels, None
    s = dequantize(scores, quant)
    m = s.max(axis=-1, keepdims=True)
    e = np.exp(s - m)
    conf = (1.0 / e.sum(axis=-1)).astype(np.float32)  # max softmax prob = exp(0) / sum
    return labels, conf


def dequantize(scores: np.ndarray, quant: tuple[float, int] | None) -> np.ndarray:
    """Backend scores as float32 logits: ``(q - zero point) * scale`` for quantised outputs."""
    s = scores.astype(np.float32)
    if quant is not None:
        scale, zero = quant
        s = (s - zero) * scale
    return s


def resize_nearest(arr: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if arr.shape[:2] == tuple(hw):
        return arr
    return cv2.resize(arr, (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST)


def upsample_bilinear(
    scores: np.ndarray, low_labels: np.ndarray, low_instances: np.ndarray | None, hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels and instances at ``hw``: argmax of the bilinearly upsampled scores.

    Nearest-neighbour upsampling of a coarse label map makes every class boundary a staircase of
    coarse cells; interpolating the scores first (align_corners=False, as the models' own resize)
    gives the boundaries the model means. Only the channels of classes present in the coarse map are
    interpolated (a class that wins no coarse cell is not put at an edge: it would be a sliver), so a
    frame with one object costs a two-channel resize. Scores may be quantised (int8/uint8):
    interpolation commutes with the affine dequantisation. A pixel whose class changed against the
    nearest map takes the instance of one of its four source cells with that class (0 if none), so
    an instance never spans two classes. ``low_instances=None``: labels only.

    The argmax is taken at half the frame's size when that is still finer than the scores (a model
    grid of 64x80 for a 640x480 frame: decided at 320x240, then doubled), which keeps boundaries to
    within two frame pixels at a quarter of the cost.
    """
    h, w = low_labels.shape
    H, W = hw
    if (H + 1) // 2 > h and (W + 1) // 2 > w:
        half = upsample_bilinear(scores, low_labels, low_instances, ((H + 1) // 2, (W + 1) // 2))
        return resize_nearest(half[0], hw), None if half[1] is None else resize_nearest(half[1], hw)
    nearest = resize_nearest(low_labels, hw)
    instances = None if low_instances is None else resize_nearest(low_instances, hw)
    present = np.flatnonzero(np.bincount(low_labels.ravel()))
    if (h, w) == (H, W) or present.size < 2:
        return nearest, instances
    # one 2-D resize per present class (contiguous planes: cv2's fast path), then a running argmax
    best: np.ndarray | None = None
    labels = np.empty((H, W), low_labels.dtype)
    for c in present:
        plane = np.ascontiguousarray(scores[..., c])
        if plane.dtype == np.int8:  # cv2 has no int8 resize; +128 (an xor) keeps order and interpolation
            plane = plane.view(np.uint8) ^ np.uint8(128)
        elif plane.dtype not in (np.uint8, np.float32):
            plane = plane.astype(np.float32)
        up = cv2.resize(plane, (W, H), interpolation=cv2.INTER_LINEAR)
        if best is None:
            best = up
            labels.fill(c)
        else:
            wins = up > best
            labels[wins] = c
            np.maximum(best, up, out=best)
    if instances is None:
        return labels, None
    changed = cv2.findNonZero((labels != nearest).view(np.uint8))  # few points: faster than np.nonzero
    if changed is not None:
        xy = changed.reshape(-1, 2)
        xs, ys = xy[:, 0], xy[:, 1]
        new = labels[ys, xs]
        # the four source cells around each changed pixel (align_corners=False)
        fy = np.clip((ys + 0.5) * (h / H) - 0.5, 0.0, h - 1.0).astype(np.intp)
        fx = np.clip((xs + 0.5) * (w / W) - 0.5, 0.0, w - 1.0).astype(np.intp)
        inst = np.zeros(ys.size, low_instances.dtype)
        for cy, cx in (
            (fy, fx),
            (fy, np.minimum(fx + 1, w - 1)),
            (np.minimum(fy + 1, h - 1), fx),
            (np.minimum(fy + 1, h - 1), np.minimum(fx + 1, w - 1)),
        ):
            take = (inst == 0) & (low_labels[cy, cx] == new)
            inst[take] = low_instances[cy, cx][take]
        instances[ys, xs] = inst
    return labels, instances


def label_instances(
    labels: np.ndarray, min_area: int = 0, connectivity: int = 8, area_scale: float = 1.0
) -> np.ndarray:
    """Connected components per class -> uint16 instance map (0 = none, 1..K).

    Components smaller than ``min_area`` (in pixels of this map times ``area_scale``)
    get instance 0. Ids are assigned in order of class id, then component order
    (top-to-bottom, left-to-right), so they are deterministic.
    """
    inst = np.zeros(labels.shape, dtype=np.uint16)
    next_id = 1
    for c in np.unique(labels):
        if c == 0:
            continue
        n, comp, stats, _ = cv2.connectedComponentsWithStats((labels == c).astype(np.uint8), connectivity=connectivity)
        keep = [k for k in range(1, n) if stats[k, cv2.CC_STAT_AREA] * area_scale >= min_area]
        if not keep:
            continue
        lut = np.zeros(n, dtype=np.uint16)
        lut[keep] = np.arange(next_id, next_id + len(keep), dtype=np.uint16)
        ids = lut[comp]
        inst = np.where(ids > 0, ids, inst)
        next_id += len(keep)
        if next_id > 65535:
            break
    return inst


def extract_objects(
    labels: np.ndarray, instances: np.ndarray, class_names: tuple[str, ...], confidence: np.ndarray | None = None
) -> list[SegObject]:
    """Per-object list from a label map and its instance map (same resolution).

    ``confidence`` (HxW, optional) gives each object's score as its mean; 1.0 without it.
    """
    objs: list[SegObject] = []
    k_max = int(instances.max()) if instances.size else 0
    if k_max == 0:
        return objs
    flat = instances.ravel().astype(np.int64)
    h, w = instances.shape
    ys, xs = np.divmod(np.arange(flat.size, dtype=np.int64), w)
    area = np.bincount(flat, minlength=k_max + 1)
    sx = np.bincount(flat, weights=xs, minlength=k_max + 1)
    sy = np.bincount(flat, weights=ys, minlength=k_max + 1)
    conf_sum = (
        np.bincount(flat, weights=confidence.ravel(), minlength=k_max + 1)
        if confidence is not None
        else area.astype(np.float64)
    )
    for k in range(1, k_max + 1):
        if area[k] == 0:
            continue
        mask = instances == k
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        cls = int(labels.flat[int(np.argmax(mask))])  # an instance never spans two classes
        objs.append(
            SegObject(
                instance_id=k,
                class_id=cls,
                class_name=class_names[cls] if cls < len(class_names) else str(cls),
                bbox=(int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)),
                centroid=(float(sx[k] / area[k]), float(sy[k] / area[k])),
                area=int(area[k]),
                score=float(conf_sum[k] / area[k]),
                mask=mask,
            )
        )
    return objs


def overlay(rgb: np.ndarray, labels: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend class colours over the image where a label is not background."""
    colour = palette[labels]
    fg = (labels > 0)[:, :, None]
    blended = cv2.addWeighted(rgb, 1.0 - alpha, colour, alpha, 0.0)
    return np.where(fg, blended, rgb)
