"""Fill a generic (manifest-less) entry from the shapes a model file declares."""

from __future__ import annotations

from collections.abc import Sequence

from ..manifest import ModelEntry
from .base import BackendError, static_dim


def fill_generic_entry(entry: ModelEntry, in_shape: Sequence, out_shape: Sequence, in_dtype: str) -> None:
    """Only for entries with ``num_classes == 0`` (a model_path without manifest or sidecar)."""
    if entry.num_classes:
        return
    dims, odims = [static_dim(d) for d in in_shape], [static_dim(d) for d in out_shape]
    if len(dims) != 4 or len(odims) != 4 or any(d is None or d < 1 for d in dims[1:] + odims[1:]):
        raise BackendError(
            f"{entry.file}: needs static 4-D input/output shapes, got {in_shape} -> {out_shape}; "
            f"add a {entry.file}.json sidecar with the tensor specs"
        )
    if dims[3] == 3:
        entry.input.layout, entry.input.height, entry.input.width = "NHWC", dims[1], dims[2]
    elif dims[1] == 3:
        entry.input.layout, entry.input.height, entry.input.width = "NCHW", dims[2], dims[3]
    else:
        raise BackendError(f"{entry.file}: input shape {in_shape} has no 3-channel axis")
    entry.input.dtype = in_dtype
    # NHWC output when its axes 1,2 have the input's aspect ratio (outputs may be downsampled)
    if odims[1] * entry.input.width == odims[2] * entry.input.height:
        entry.output.layout, entry.num_classes = "NHWC", odims[3]
    else:
        entry.output.layout, entry.num_classes = "NCHW", odims[1]
    entry.validate()
