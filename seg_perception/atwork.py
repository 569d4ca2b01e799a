"""The atWork dataset layout: file listing, the deterministic train/val split, image reading.

Pure numpy/cv2, shared by the runtime tools (seg-eval) and training (re-exported by
:mod:`training.data.atwork`, whose docstring describes the layout and the split rule).
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from seg_perception.classes import load_classes

log = logging.getLogger("training.data.atwork")

PathLike = Union[str, os.PathLike]
IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "bmp"})
IGNORE_INDEX = 255
SPLITS = {"train": "training", "training": "training", "val": "validation", "validation": "validation"}
BACKGROUND_KINDS = ("backgrounds", "white_backgrounds")


@dataclass(frozen=True)
class Sample:
    """One real photo with its mask."""

    image_path: Path
    label_path: Path
    class_name: str

    @property
    def stem(self) -> str:
        """Photo name without extension, e.g. ``axis_003`` (unique across the dataset)."""
        return self.image_path.stem


def _is_image(path: Path) -> bool:
    # The dataset holds names like "background_0120. png" (space before the extension).
    return path.is_file() and path.suffix.lower().strip(" .") in IMAGE_EXTENSIONS


def list_samples(root: PathLike, classes: Optional[Sequence[str]] = None) -> List[Sample]:
    """All photos under ``objects/image`` that have a mask, sorted by class then file name.

    Photos without a mask (e.g. ``axis_024``) are skipped with a warning. Class folders that
    are not full-set class names are skipped with a warning. ``classes`` restricts the result.
    """
    root = Path(root)
    image_dir = root / "objects" / "image"
    label_dir = root / "objects" / "semantic_labels"
    if not image_dir.is_dir():
        raise FileNotFoundError(f"not an atWork dataset root (no {image_dir})")
    known = set(load_classes("full").names[1:])
    wanted = set(classes) if classes is not None else None
    if wanted is not None and not wanted <= known:
        raise ValueError(f"unknown classes: {sorted(wanted - known)}")
    samples: List[Sample] = []
    for class_dir in sorted(p for p in image_dir.iterdir() if p.is_dir()):
        name = class_dir.name
        if name not in known:
            log.warning("skipping folder %s: not a class of config/classes.yaml", class_dir)
            continue
        if wanted is not None and name not in wanted:
            continue
        for image_path in sorted(p for p in class_dir.iterdir() if _is_image(p)):
            label_path = label_dir / name / (image_path.stem + ".png")
            if not label_path.is_file():
                log.warning("skipping %s: no mask at %s", image_path, label_path)
                continue
            samples.append(Sample(image_path, label_path, name))
    if not samples:
        raise FileNotFoundError(f"no photo with a mask under {image_dir}")
    return samples


def _split_key(seed: int, sample: Sample) -> str:
    return hashlib.sha256(f"{seed}/{sample.class_name}/{sample.stem}".encode("utf-8")).hexdigest()


def split_samples(
    samples: Sequence[Sample], val_fraction: float = 0.2, seed: int = 0
) -> Tuple[List[Sample], List[Sample]]:
    """Stratified, deterministic train/val split (rule in the module docstring).

    Each class with at least two photos gets ``max(1, round(n * val_fraction))`` val photos
    (and at least one train photo); ``val_fraction=0`` puts everything in train. Both lists
    come back sorted by class, then file name.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    by_class: Dict[str, List[Sample]] = {}
    for s in samples:
        by_class.setdefault(s.class_name, []).append(s)
    train: List[Sample] = []
    val: List[Sample] = []
    for name in sorted(by_class):
        group = sorted(by_class[name], key=lambda s: _split_key(seed, s))
        n = len(group)
        n_val = int(math.floor(n * val_fraction + 0.5))
        if val_fraction > 0 and n >= 2:
            n_val = min(max(n_val, 1), n - 1)
        else:
            n_val = min(n_val, max(n - 1, 0))
        val.extend(group[:n_val])
        train.extend(group[n_val:])

    def order(s: Sample) -> Tuple[str, str]:
        return (s.class_name, s.image_path.name)

    return sorted(train, key=order), sorted(val, key=order)


def list_backgrounds(
    root: PathLike, split: str, kinds: Sequence[str] = BACKGROUND_KINDS
) -> Dict[str, List[Path]]:
    """Background photos of one split (``train``/``training`` or ``val``/``validation``).

    Returns ``{kind: sorted paths}`` for each kind in ``kinds`` (``backgrounds``,
    ``white_backgrounds``); a missing folder gives an empty list and a warning.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    out: Dict[str, List[Path]] = {}
    for kind in kinds:
        folder = Path(root) / kind / SPLITS[split]
        if not folder.is_dir():
            log.warning("no background folder %s", folder)
            out[kind] = []
            continue
        out[kind] = sorted((p for p in folder.iterdir() if _is_image(p)), key=lambda p: p.name)
    return out


def read_rgb(path: PathLike) -> np.ndarray:
    """HxWx3 uint8 RGB (grey and RGBA files are converted; cv2 reads BGR)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise IOError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_label(path: PathLike) -> np.ndarray:
    """HxW uint8 label image, values as stored."""
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise IOError(f"cannot read label {path}")
    if label.ndim == 3:  # a mask saved as colour: all channels hold the id
        label = label[..., 0]
    if label.dtype != np.uint8:
        raise ValueError(f"{path}: expected an 8-bit mask, got {label.dtype}")
    return label
