"""Inference backends and their registry (pure Python: no rclpy, no torch)."""

from .base import (
    BACKENDS,
    FLIP_MODES,
    Backend,
    BackendError,
    BackendSpec,
    FoundModel,
    backend_names,
    create_backend,
    find_model,
    flip_average_for,
    generic_entry,
    open_backend,
)

__all__ = [
    "Backend",
    "BackendError",
    "BackendSpec",
    "BACKENDS",
    "FLIP_MODES",
    "backend_names",
    "create_backend",
    "FoundModel",
    "find_model",
    "flip_average_for",
    "generic_entry",
    "open_backend",
]
