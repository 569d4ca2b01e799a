"""The atWork dataset layout: file listing, the train/val split by capture run, image reading.

Pure numpy/cv2, shared by the runtime tools (seg-eval) and training (re-exported by
:mod:`training.data.atwork`, whose docstring describes the layout and the split rule).
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from seg_perception.classes import load_classes
from seg_perception.paths import data_candidates

log = logging.getLogger("training.data.atwork")

PathLike = str | os.PathLike
IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "bmp"})
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


def list_samples(root: PathLike, classes: Sequence[str] | None = None) -> list[Sample]:
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
    samples: list[Sample] = []
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


SPLIT_KINDS = ("run", "random")
RUNS_FILE = "config/atwork_runs.yaml"


@dataclass(frozen=True)
class SplitSpec:
    """How photos are divided into train and validation (one rule for every tool).

    ``run`` (default): whole capture runs are held out. The photos of a class were taken in runs
    (same surface and light, the object moved a little between shots), so neighbours by number are
    near-twins and a random split measures memory, not generalisation. The runs of each class
    (``config/atwork_runs.yaml``) are assigned in photo-number order to ``folds`` contiguous folds
    by the position of each run's middle photo; fold ``val_fold`` (default the last: the latest
    runs) is validation, the others train.
    ``random``: the earlier per-class random split (``val_fraction``, ``seed``), kept only to show
    how much it flatters a model.
    """

    kind: str = "run"
    folds: int = 5
    val_fold: int = -1
    val_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in SPLIT_KINDS:
            raise ValueError(f"split kind must be one of {list(SPLIT_KINDS)}, got {self.kind!r}")
        if self.folds < 2:
            raise ValueError(f"folds must be >= 2, got {self.folds}")
        if not -self.folds <= self.val_fold < self.folds:
            raise ValueError(f"val_fold must be in [{-self.folds}, {self.folds - 1}], got {self.val_fold}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")

    def describe(self) -> dict[str, Any]:
        """The fields that matter for this kind (for manifests, reports and logs)."""
        if self.kind == "run":
            return {"kind": "run", "folds": self.folds, "val_fold": self.val_fold % self.folds}
        return {"kind": "random", "val_fraction": self.val_fraction, "seed": self.seed}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SplitSpec:
        """From a training config's ``data`` section (or a manifest's split record).

        Configs written before the run split have only ``val_fraction``/``split_seed``: they get
        the run split too, the default of every tool now.
        """
        return cls(
            kind=str(data.get("split", data.get("kind", "run"))),
            folds=int(data.get("folds", 5)),
            val_fold=int(data.get("val_fold", -1)),
            val_fraction=float(data.get("val_fraction", 0.2)),
            seed=int(data.get("split_seed", data.get("seed", 0))),
        )


def load_runs(path: PathLike | None = None) -> dict[str, list[int]]:
    """``{class: [first photo number of each capture run, ascending]}`` from the runs file."""
    if path is None:
        candidates = data_candidates(RUNS_FILE)
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise FileNotFoundError(f"{RUNS_FILE} not found; looked in {[str(c) for c in candidates]}")
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping class -> [run start numbers]")
    runs: dict[str, list[int]] = {}
    for name, starts in raw.items():
        if not isinstance(starts, list) or not starts or not all(isinstance(n, int) and n >= 1 for n in starts):
            raise ValueError(f"{path}: {name}: expected a non-empty list of photo numbers >= 1, got {starts!r}")
        if sorted(set(starts)) != starts:
            raise ValueError(f"{path}: {name}: run starts must be strictly ascending, got {starts}")
        runs[str(name)] = list(starts)
    return runs


def photo_number(sample: Sample) -> int:
    """The photo's number within its class (``axis_007`` -> 7)."""
    tail = sample.stem.rsplit("_", 1)[-1]
    if not tail.isdigit():
        raise ValueError(f"{sample.image_path}: no photo number at the end of {sample.stem!r}")
    return int(tail)


def group_runs(group: Sequence[Sample], starts: Sequence[int] | None) -> list[list[Sample]]:
    """A class's photos (sorted by number) cut into capture runs at ``starts``.

    A class without annotation, or whose photos cover fewer than half of its annotated runs (a
    partial copy of the dataset, e.g. a test fixture), is cut into single photos instead: its split
    is then by photo number.
    """
    ordered = sorted(group, key=photo_number)
    if starts:
        run_of = lambda s: bisect.bisect_right(list(starts), photo_number(s))  # noqa: E731
        runs = [list(members) for _, members in itertools.groupby(ordered, key=run_of)]
        if 2 * len(runs) >= len(starts) and len(runs) > 1:
            return runs
    if len(ordered) > 1:
        log.warning(
            "%s: its photos cover too few capture runs of %s: split by photo number", ordered[0].class_name, RUNS_FILE
        )
    return [[s] for s in ordered]


def run_folds(runs: Sequence[Sequence[Sample]], folds: int) -> list[int]:
    """Fold of each run: the position of its middle photo in the class, in ``folds`` equal parts."""
    n = sum(len(r) for r in runs)
    out, seen = [], 0
    for r in runs:
        out.append(min(folds - 1, int(folds * (seen + len(r) / 2) / n)))
        seen += len(r)
    return out


def _random_key(seed: int, sample: Sample) -> str:
    return hashlib.sha256(f"{seed}/{sample.class_name}/{sample.stem}".encode()).hexdigest()


def _random_val(group: Sequence[Sample], spec: SplitSpec) -> list[Sample]:
    ordered = sorted(group, key=lambda s: _random_key(spec.seed, s))
    n = len(ordered)
    n_val = int(math.floor(n * spec.val_fraction + 0.5))
    if spec.val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    else:
        n_val = min(n_val, max(n - 1, 0))
    return ordered[:n_val]


def _run_val(group: Sequence[Sample], spec: SplitSpec, starts: Sequence[int] | None) -> list[Sample]:
    runs = group_runs(group, starts)
    folds = run_folds(runs, spec.folds)
    want = spec.val_fold % spec.folds
    return [s for r, f in zip(runs, folds, strict=False) if f == want for s in r]


def split_samples(
    samples: Sequence[Sample], spec: SplitSpec | None = None, runs: Mapping[str, Sequence[int]] | None = None
) -> tuple[list[Sample], list[Sample]]:
    """Deterministic train/val split of the photos (rule: :class:`SplitSpec`; default: by capture run).

    ``runs`` overrides the capture-run table (default ``config/atwork_runs.yaml``). Both lists come
    back sorted by class, then file name; the result does not depend on the input order.
    """
    spec = spec or SplitSpec()
    if spec.kind == "run" and runs is None:
        runs = load_runs()
    by_class: dict[str, list[Sample]] = {}
    for s in samples:
        by_class.setdefault(s.class_name, []).append(s)
    train: list[Sample] = []
    val: list[Sample] = []
    for name in sorted(by_class):
        group = by_class[name]
        if spec.kind == "run":
            held = _run_val(group, spec, (runs or {}).get(name))
        else:
            held = _random_val(group, spec)
        held_ids = {id(s) for s in held}
        val.extend(held)
        train.extend(s for s in group if id(s) not in held_ids)

    def order(s: Sample) -> tuple[str, str]:
        return (s.class_name, s.image_path.name)

    return sorted(train, key=order), sorted(val, key=order)


def list_backgrounds(root: PathLike, split: str, kinds: Sequence[str] = BACKGROUND_KINDS) -> dict[str, list[Path]]:
    """Background photos of one split (``train``/``training`` or ``val``/``validation``).

    Returns ``{kind: sorted paths}`` for each kind in ``kinds`` (``backgrounds``,
    ``white_backgrounds``); a missing folder gives an empty list and a warning.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    out: dict[str, list[Path]] = {}
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
        raise OSError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_label(path: PathLike) -> np.ndarray:
    """HxW uint8 label image, values as stored."""
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise OSError(f"cannot read label {path}")
    if label.ndim == 3:  # a mask saved as colour: all channels hold the id
        label = label[..., 0]
    if label.dtype != np.uint8:
        raise ValueError(f"{path}: expected an 8-bit mask, got {label.dtype}")
    return label
