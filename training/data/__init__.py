"""Data for offline training: the atWork photo reader, the synthetic scene generator, augmentation.

The dataset itself is never part of this repository (unknown licence): every entry point
takes the dataset root as an argument. Names are imported lazily so that
``python -m training.data.synth`` (and its worker processes) do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AtWorkSegmentation": "training.data.atwork",
    "SyntheticSegmentation": "training.data.atwork",
    "mix_datasets": "training.data.atwork",
    "Sample": "seg_perception.atwork",
    "list_samples": "seg_perception.atwork",
    "split_samples": "seg_perception.atwork",
    "list_backgrounds": "seg_perception.atwork",
    "build_train_transform": "training.data.augment",
    "build_val_transform": "training.data.augment",
    "generate": "training.data.synth",
    "SynthConfig": "training.data.synth",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'training.data' has no attribute {name!r}")
