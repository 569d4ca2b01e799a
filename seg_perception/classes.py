"""The class file shared by the node and by training (``config/classes.yaml``).

A :class:`ClassSet` is one variant of the atWork classes: names, colours and a
lookup table that maps full-set ids (0 = background, 1..18 = objects) to the
variant's ids. Dataset masks use 19 for background; :func:`remap_dataset_mask`
turns them into full-set ids.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

from .paths import data_candidates

VARIANTS = ("full", "size_invariant", "similar_shapes", "binary")
#: Label of pixels that belong to no class (outside the image after augmentation, unlabelled):
#: losses and metrics skip them.
IGNORE_INDEX = 255


def default_class_file() -> Path:
    """``config/classes.yaml``: from the source tree, or from the installed share dir."""
    candidates = data_candidates("config/classes.yaml")
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f"classes.yaml not found; looked in {[str(c) for c in candidates]}")


@dataclass(frozen=True)
class ClassSet:
    variant: str
    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    full_to_variant: np.ndarray  # uint8 lookup table over full-set ids (len 19)
    dataset_background_id: int

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def palette(self) -> np.ndarray:
        """(num_classes, 3) uint8 RGB colours, indexable by label id."""
        return np.asarray(self.colors, dtype=np.uint8)

    def remap_full(self, full_labels: np.ndarray) -> np.ndarray:
        """Map full-set ids (0..18) to this variant's ids; values >= 19 are kept (ignore index)."""
        lut = np.arange(256, dtype=np.uint8)
        lut[: len(self.full_to_variant)] = self.full_to_variant
        return lut[full_labels]

    def remap_dataset_mask(self, mask: np.ndarray, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
        """Dataset mask (object id or 19 = background) -> this variant's ids.

        Values that are neither an object id nor the background id become ``ignore_index``.
        """
        lut = np.full(256, ignore_index, dtype=np.uint8)
        n_full = len(self.full_to_variant)
        lut[1:n_full] = self.full_to_variant[1:]
        lut[self.dataset_background_id] = self.full_to_variant[0]
        return lut[mask]


def _parse(doc: dict, variant: str) -> ClassSet:
    if variant not in doc.get("variants", {}):
        raise ValueError(f"unknown class variant {variant!r}; valid: {sorted(doc.get('variants', {}))}")
    full = sorted(doc["classes"], key=lambda c: c["id"])
    if [c["id"] for c in full] != list(range(len(full))):
        raise ValueError("classes.yaml: class ids must be 0..N-1 without gaps")
    full_names = [c["name"] for c in full]
    merges: dict[str, list[str]] = doc["variants"][variant].get("merges") or {}
    member_of: dict[str, str] = {}
    for merged, members in merges.items():
        for m in members:
            if m not in full_names:
                raise ValueError(f"classes.yaml: variant {variant}: unknown member {m!r}")
            member_of[m] = merged
    names: list[str] = []
    colors: list[tuple[int, int, int]] = []
    lut = np.zeros(len(full), dtype=np.uint8)
    for c in full:
        target = member_of.get(c["name"], c["name"])
        if target not in names:
            names.append(target)
            colors.append(tuple(int(v) for v in c["color"]))  # type: ignore[arg-type]
        lut[c["id"]] = names.index(target)
    return ClassSet(variant, tuple(names), tuple(colors), lut, int(doc.get("dataset_background_id", 19)))


@lru_cache(maxsize=16)
def _load_cached(path: str, variant: str) -> ClassSet:
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    return _parse(doc, variant)


def load_classes(variant: str = "full", path: os.PathLike | None = None) -> ClassSet:
    """Load one variant of the class file (default file: ``config/classes.yaml``)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown class variant {variant!r}; valid: {list(VARIANTS)}")
    return _load_cached(str(path or default_class_file()), variant)
