"""Images at a model's input size for calibrating and checking exported files: real photos resized
like the node does (``cv2.INTER_AREA``), or synthetic blob scenes that need no dataset."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np


def _class_colours(num_classes: int) -> np.ndarray:
    """Saturated, evenly spaced hues for classes 1..n-1 (class 0 = low-saturation background)."""
    import cv2

    hues = np.linspace(0, 180, num_classes, endpoint=False).astype(np.uint8)[: num_classes - 1]
    hsv = np.stack([hues, np.full_like(hues, 230), np.full_like(hues, 230)], -1)[None]
    return np.concatenate([np.zeros((1, 3), np.uint8), cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]], 0)


def synthetic_scenes(n: int, height: int, width: int, num_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` scenes of coloured blobs (class = colour) on grey textured backgrounds.

    Returns uint8 images (n, H, W, 3) RGB and uint8 labels (n, H, W). Trivially learnable
    (colour -> class), so a tiny net trained for a few steps gives meaningful argmax maps.
    """
    import cv2

    rng = np.random.default_rng(seed)
    colours = _class_colours(num_classes)
    images = np.empty((n, height, width, 3), np.uint8)
    labels = np.zeros((n, height, width), np.uint8)
    for i in range(n):
        grey = rng.uniform(70, 190)
        noise = cv2.resize(
            rng.normal(0, 12, (max(2, height // 8), max(2, width // 8))).astype(np.float32),
            (width, height),
            interpolation=cv2.INTER_LINEAR,
        )
        bg = np.clip(grey + noise[..., None] + rng.normal(0, 4, (height, width, 3)), 0, 255)
        img = bg.astype(np.uint8)
        lab = labels[i]
        for _ in range(int(rng.integers(1, 5))):
            k = int(rng.integers(1, num_classes))
            cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
            ay, ax = (
                int(rng.integers(max(2, height // 10), max(3, height // 3))),
                int(rng.integers(max(2, width // 10), max(3, width // 3))),
            )
            mask = np.zeros((height, width), np.uint8)
            cv2.ellipse(mask, (cx, cy), (ax, ay), float(rng.uniform(0, 180)), 0, 360, 1, -1)
            shade = np.clip(colours[k].astype(np.float32) * rng.uniform(0.85, 1.1), 0, 255)
            img[mask > 0] = shade.astype(np.uint8)
            lab[mask > 0] = k
        images[i] = img
    return images, labels


def real_images(
    root: os.PathLike,
    split: str,
    variant: str,
    height: int,
    width: int,
    max_images: int = 0,
    split_rule: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Real atWork photos of one split (``train``/``val``), resized like the node (INTER_AREA), with labels.

    ``max_images`` > 0 takes a class-stratified deterministic subset (every k-th photo); ``split_rule``
    is a split record (:meth:`SplitSpec.from_mapping`; default: the run split).
    """
    from training.data.atwork import AtWorkSegmentation, SplitSpec, list_samples, split_samples

    train, val = split_samples(list_samples(root), SplitSpec.from_mapping(split_rule or {}))
    samples = train if split == "train" else val
    if max_images and len(samples) > max_images:
        idx = np.linspace(0, len(samples) - 1, max_images).round().astype(int)
        samples = [samples[i] for i in idx]
    ds = AtWorkSegmentation(samples, variant, size=(height, width))
    pairs = [ds.load_numpy(i) for i in range(len(ds))]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
