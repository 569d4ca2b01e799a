"""Reader for the atWork object photos (one object per photo, hand-drawn masks).

Layout under the dataset root (see the dataset's README.md)::

    objects/image/<class>/<class>_NNN.jpg            RGB photo
    objects/semantic_labels/<class>/<class>_NNN.png  mask: object id, 19 = background
    backgrounds/{training,validation}/*              background photos
    white_backgrounds/{training,validation}/*        plain light surfaces

The dataset is not part of the repository (unknown licence): the root is always an argument.

Train/val split (:func:`split_samples`, rule in :class:`SplitSpec`): by default whole capture runs
(``config/atwork_runs.yaml``) are held out -- the latest runs of every class -- because the photos
of a run are near-twins and a random split would measure memory. The rule depends only on file
names and the runs table, not on filesystem order or Python's hash seed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from seg_perception.atwork import (  # noqa: F401 - re-exported: the reader's public API
    BACKGROUND_KINDS,
    IMAGE_EXTENSIONS,
    SPLIT_KINDS,
    SPLITS,
    PathLike,
    Sample,
    SplitSpec,
    list_backgrounds,
    list_samples,
    load_runs,
    photo_number,
    read_label,
    read_rgb,
    split_samples,
)
from seg_perception.classes import IGNORE_INDEX, ClassSet, load_classes

log = logging.getLogger(__name__)

#: ``transform(image=HxWx3 uint8 RGB, mask=HxW uint8) -> {"image": ..., "mask": ...}``
#: (the albumentations call convention; see :mod:`training.data.augment`).
Transform = Callable[..., dict[str, np.ndarray]]


def to_tensors(image: np.ndarray, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 RGB HWC + uint8 HW -> float32 CHW in [-1, 1] ((px - 127.5) / 127.5), int64 HW."""
    img = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()
    img.sub_(127.5).div_(127.5)
    return img, torch.from_numpy(np.ascontiguousarray(label)).long()


class _SegmentationDataset(Dataset):
    """Shared read -> optional resize -> optional transform -> tensors pipeline."""

    def __init__(
        self,
        variant: str = "full",
        transform: Transform | None = None,
        size: tuple[int, int] | None = None,
        class_file: PathLike | None = None,
    ) -> None:
        self.classes: ClassSet = load_classes(variant, class_file)
        self.variant = variant
        self.transform = transform
        self.size = tuple(size) if size is not None else None
        self.ignore_index = IGNORE_INDEX

    @property
    def num_classes(self) -> int:
        return self.classes.num_classes

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """RGB image and the label in this variant's ids (255 = ignore)."""
        raise NotImplementedError

    def _reseed_transform_in_worker(self) -> None:
        """Give each DataLoader worker its own augmentation stream.

        An albumentations ``Compose`` draws its random generator once, at construction; the
        workers get copies of it, so without this every worker would apply the same sequence
        of crops/flips/jitter. Each worker reseeds once from torch's per-worker seed (distinct
        per worker and per epoch, reproducible under ``torch.manual_seed``). The mark is kept on
        the transform, which real and synthetic datasets may share, so it is reseeded only once.
        """
        info = torch.utils.data.get_worker_info()
        reseed = getattr(self.transform, "set_random_seed", None)
        if info is None or reseed is None:
            return
        key = (os.getpid(), info.seed)
        holder = self.transform if hasattr(self.transform, "__dict__") else self
        if getattr(holder, "_seg_worker_seed", None) != key:
            reseed(info.seed)
            holder._seg_worker_seed = key  # type: ignore[union-attr]

    def load_numpy(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Like ``__getitem__`` but returns uint8 RGB image and uint8 label (after resize/transform)."""
        self._reseed_transform_in_worker()
        image, label = self._load(index)
        if image.shape[:2] != label.shape:
            raise ValueError(f"item {index}: image {image.shape[:2]} and label {label.shape} differ")
        if self.size is not None and image.shape[:2] != self.size:
            h, w = self.size
            shrink = h * w < image.shape[0] * image.shape[1]
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            label = cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)  # centre-aligned
        if self.transform is not None:
            out = self.transform(image=image, mask=label)
            image, label = out["image"], out["mask"]
        return image, label

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = self.load_numpy(index)
        return to_tensors(image, label)


class AtWorkSegmentation(_SegmentationDataset):
    """Real atWork photos as ``(image float32 3xHxW in [-1, 1], label int64 HxW)``.

    Labels are in the ids of ``variant`` (``full``, ``size_invariant``, ``similar_shapes``,
    ``binary``), background 0, 255 = ignore. ``size=(H, W)`` resizes (label: nearest) before
    ``transform`` (an albumentations-style callable, see :mod:`training.data.augment`).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        variant: str = "full",
        transform: Transform | None = None,
        size: tuple[int, int] | None = None,
        class_file: PathLike | None = None,
    ) -> None:
        super().__init__(variant, transform, size, class_file)
        self.samples = list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        s = self.samples[index]
        return read_rgb(s.image_path), self.classes.remap_dataset_mask(read_label(s.label_path), IGNORE_INDEX)


class SyntheticSegmentation(_SegmentationDataset):
    """Scenes written by :mod:`training.data.synth` (``OUT/images``, ``OUT/labels``), same output as
    :class:`AtWorkSegmentation`. The generator's labels are full-set ids (background 0)."""

    def __init__(
        self,
        out_dirs: PathLike | Sequence[PathLike],
        variant: str = "full",
        transform: Transform | None = None,
        size: tuple[int, int] | None = None,
        class_file: PathLike | None = None,
    ) -> None:
        super().__init__(variant, transform, size, class_file)
        dirs = [out_dirs] if isinstance(out_dirs, (str, os.PathLike)) else list(out_dirs)
        self.items: list[tuple[Path, Path]] = []
        for d in map(Path, dirs):
            if not (d / "meta.json").is_file():
                log.warning("%s has no meta.json: assuming generator labels (full-set ids, background 0)", d)
            labels = sorted((d / "labels").glob("*.png"))
            if not labels:
                raise FileNotFoundError(f"no labels under {d / 'labels'}")
            for lp in labels:
                ip = d / "images" / (lp.stem + ".jpg")
                if not ip.is_file():
                    raise FileNotFoundError(f"label {lp} has no image {ip}")
                self.items.append((ip, lp))

    def __len__(self) -> int:
        return len(self.items)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        ip, lp = self.items[index]
        return read_rgb(ip), self.classes.remap_full(read_label(lp))


def mix_datasets(datasets: Sequence[Dataset], repeats: Sequence[int] | None = None) -> ConcatDataset:
    """Concatenate real and synthetic datasets; ``repeats[i]`` repeats dataset i (oversampling
    the few real photos against many generated scenes). All must use the same class variant."""
    if not datasets:
        raise ValueError("no datasets to mix")
    repeats = list(repeats) if repeats is not None else [1] * len(datasets)
    if len(repeats) != len(datasets) or any(r < 0 for r in repeats):
        raise ValueError("repeats must be one non-negative int per dataset")
    variants = {getattr(d, "variant", None) for d in datasets} - {None}
    if len(variants) > 1:
        raise ValueError(f"datasets use different class variants: {sorted(variants)}")
    parts: list[Dataset] = [d for d, r in zip(datasets, repeats, strict=False) for _ in range(r)]
    if not parts:
        raise ValueError("all repeats are 0")
    return ConcatDataset(parts)
