"""Inference backends and their registry (pure Python: no rclpy, no torch)."""

from .base import (
    BACKENDS,
    Backend,
    BackendError,
    BackendSpec,
    FoundModel,
    backend_names,
    create_backend,
    find_model,
    generic_entry,
    open_backend,
)

__all__ = [
    "Backend",
    "BackendError",
    "BackendSpec",
    "BACKENDS",
    "backend_names",
    "create_backend",
    "FoundModel",
    "find_model",
    "generic_entry",
    "open_backend",
]
