"""Inference backends and their registry (pure Python: no rclpy, no torch)."""

from .base import (
    BACKENDS,
    Backend,
    BackendError,
    BackendSpec,
    backend_names,
    create_backend,
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
    "generic_entry",
    "open_backend",
]
