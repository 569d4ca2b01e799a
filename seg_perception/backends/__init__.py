"""Inference backends and their registry (pure Python: no rclpy, no torch)."""
from .base import Backend, BackendError, BackendSpec, BACKENDS, backend_names, create_backend

__all__ = ["Backend", "BackendError", "BackendSpec", "BACKENDS", "backend_names", "create_backend"]
