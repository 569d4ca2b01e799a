"""A miniature dataset in the atWork layout, made by the tests (no dataset pixels).

Per class, photos of one solid rectangle in the class's colour on a plain grey surface, with
masks holding the object's full-set id and 19 for background::

    objects/image/<class>/<class>_NNN.jpg
    objects/semantic_labels/<class>/<class>_NNN.png

JPEGs are written at quality 100 without chroma subsampling, so object pixels keep their colour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from seg_perception.classes import load_classes

DATASET_BACKGROUND_ID = 19
JPEG_444 = [cv2.IMWRITE_JPEG_QUALITY, 100, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]


def make_fake_atwork(
    root: Path,
    classes: Sequence[str] = ("axis", "bearing", "motor"),
    per_class: int = 5,
    size: tuple[int, int] = (64, 80),
    seed: int = 0,
    colours: Mapping[str, tuple[int, int, int]] | None = None,
) -> Path:
    """Write ``per_class`` photos of ``size`` (H, W) for each class under ``root``; returns ``root``.

    ``colours`` maps a class to its object colour (default: the class palette of
    ``config/classes.yaml``). Rectangles are at least a quarter of the photo in each direction.
    """
    full = load_classes("full")
    rng = np.random.default_rng(seed)
    h, w = size
    for cls in classes:
        cid = full.names.index(cls)
        colour = colours[cls] if colours else tuple(int(v) for v in full.palette()[cid])
        (root / "objects" / "image" / cls).mkdir(parents=True, exist_ok=True)
        (root / "objects" / "semantic_labels" / cls).mkdir(parents=True, exist_ok=True)
        for i in range(1, per_class + 1):
            rgb = np.full((h, w, 3), int(rng.integers(100, 160)), np.uint8)
            mask = np.full((h, w), DATASET_BACKGROUND_ID, np.uint8)
            y0, x0 = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
            y1, x1 = y0 + int(rng.integers(h // 4, h // 2)), x0 + int(rng.integers(w // 4, w // 2))
            rgb[y0:y1, x0:x1] = colour
            mask[y0:y1, x0:x1] = cid
            stem = f"{cls}_{i:03d}"
            assert cv2.imwrite(str(root / "objects" / "image" / cls / f"{stem}.jpg"), rgb[..., ::-1].copy(), JPEG_444)
            assert cv2.imwrite(str(root / "objects" / "semantic_labels" / cls / f"{stem}.png"), mask)
    return root
