"""Containers of plain values (dict, list, str, int, float, bool, None), safe for JSON, YAML and
``torch.load(weights_only=True)``: the one converter the tools, training configs and checkpoints use."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from typing import Any


def to_plain(obj: Any) -> Any:
    """Mappings -> dicts with str keys, sequences -> lists, paths -> str, numpy/torch scalars -> Python
    numbers, dataclass instances -> dicts of their fields; NaN and infinities -> None (JSON has no NaN).
    Anything else raises TypeError."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, (int, float)):
        return None if isinstance(obj, float) and not math.isfinite(obj) else obj
    if _is_scalar(obj):
        return to_plain(obj.item())
    raise TypeError(f"cannot convert {type(obj).__name__} to plain data")


def _is_scalar(obj: Any) -> bool:
    """numpy scalars / 0-d arrays and one-element torch tensors."""
    if not (hasattr(obj, "item") and callable(obj.item)):
        return False
    numel = getattr(obj, "numel", None)
    if callable(numel):
        return numel() == 1
    return getattr(obj, "size", 1) == 1
