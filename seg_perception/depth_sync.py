"""Depth and camera info for a colour frame: stamp pairing, decoding and checks (no rclpy).

* :class:`StampBuffer` keeps the last few messages of a topic by header stamp and pairs a colour
  frame with the one of exactly its stamp, or the nearest within a tolerance; never by arrival
  order. Bounded: the oldest entry goes when a new one comes.
* :func:`decode_depth` turns a sensor_msgs/Image-like object (16UC1 millimetres or 32FC1 metres,
  ``step`` padding and byte order honoured) into an array, or raises :class:`DepthError` with
  the reason.
* :func:`depth_for_frame` fits depth and camera info to the colour frame's size: depth of
  another size with the same aspect ratio is resized (nearest neighbour, registered depth keeps
  its meaning), camera info of another size has its K scaled; anything else is a DepthError.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Generic, TypeVar

import cv2
import numpy as np

from .geometry import CameraError, CameraModel

T = TypeVar("T")

#: rejection reasons (diagnostics counter suffixes)
REASONS = ("encoding", "size", "data", "camera_info")


class DepthError(ValueError):
    """Depth or camera info that cannot be used with this frame; ``reason`` is one of REASONS."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def stamp_ns(stamp: Any) -> int:
    """builtin_interfaces/Time-like -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class StampBuffer(Generic[T]):
    """The last ``capacity`` items of a topic by stamp; thread-safe."""

    def __init__(self, capacity: int = 8):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._items: OrderedDict[int, T] = OrderedDict()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)

    def add(self, stamp: int, item: T) -> None:
        with self._cond:
            self._items.pop(stamp, None)
            self._items[stamp] = item
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def newest(self) -> tuple[int, T] | None:
        with self._lock:
            if not self._items:
                return None
            stamp = max(self._items)
            return stamp, self._items[stamp]

    def match(self, stamp: int, tolerance_ns: int) -> tuple[int, T] | None:
        """The item with exactly ``stamp``, else the nearest within ``tolerance_ns`` (the earlier on a tie)."""
        with self._lock:
            return self._match(stamp, tolerance_ns)

    def _match(self, stamp: int, tolerance_ns: int) -> tuple[int, T] | None:
        if stamp in self._items:
            return stamp, self._items[stamp]
        near = [(abs(s - stamp), s) for s in self._items if abs(s - stamp) <= tolerance_ns]
        if not near:
            return None
        best = min(near)[1]  # nearest; on a tie the earlier stamp
        return best, self._items[best]

    def wait_match(self, stamp: int, tolerance_ns: int, timeout_s: float) -> tuple[int, T] | None:
        """:meth:`match`, waiting up to ``timeout_s`` while the partner may still come (nothing newer
        than ``stamp + tolerance`` has arrived yet: streams are in stamp order)."""
        with self._cond:
            found = self._match(stamp, tolerance_ns)
            if found is not None or timeout_s <= 0:
                return found
            self._cond.wait_for(
                lambda: (
                    self._match(stamp, tolerance_ns) is not None or any(s > stamp + tolerance_ns for s in self._items)
                ),
                timeout_s,
            )
            return self._match(stamp, tolerance_ns)


def decode_depth(msg: Any) -> np.ndarray:
    """sensor_msgs/Image-like depth -> HxW uint16 (millimetres) or float32 (metres), a view when possible."""
    enc = str(msg.encoding)
    if enc in ("16UC1", "mono16"):
        dt = np.dtype(">u2" if msg.is_bigendian else "<u2")
    elif enc == "32FC1":
        dt = np.dtype(">f4" if msg.is_bigendian else "<f4")
    else:
        raise DepthError("encoding", f"depth encoding {enc!r} not supported; expected 16UC1 (mm) or 32FC1 (m)")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise DepthError("size", f"depth image is {w}x{h}")
    if step < w * dt.itemsize:
        raise DepthError("data", f"depth step {step} is shorter than a row ({w} x {dt.itemsize} bytes)")
    buf = np.frombuffer(memoryview(msg.data), dtype=np.uint8)
    if buf.size < step * h:
        raise DepthError("data", f"depth data has {buf.size} bytes, {step * h} expected ({h} rows of {step})")
    rows = buf[: step * h].reshape(h, step)[:, : w * dt.itemsize]
    if step != w * dt.itemsize:
        rows = np.ascontiguousarray(rows)  # padded rows: one copy
    arr = rows.reshape(-1).view(dt).reshape(h, w)
    if not dt.isnative:
        arr = arr.astype(dt.newbyteorder("="))
    return arr


def camera_from_info(info: Any) -> CameraModel:
    """sensor_msgs/CameraInfo-like -> CameraModel (DepthError 'camera_info' when unusable)."""
    try:
        return CameraModel.from_k(list(info.k), int(info.width), int(info.height))
    except CameraError as e:
        raise DepthError("camera_info", f"camera info unusable: {e}") from e


def depth_for_frame(depth: np.ndarray, cam: CameraModel, hw: tuple[int, int]) -> tuple[np.ndarray, CameraModel]:
    """Depth and camera model at the colour frame's size ``hw`` (resized / scaled, or DepthError)."""
    h, w = hw
    try:
        cam = cam.scaled_to(w, h)
    except CameraError as e:
        raise DepthError("camera_info", str(e)) from e
    dh, dw = depth.shape
    if (dh, dw) != (h, w):
        if abs(dw / w - dh / h) > 0.01 * max(dw / w, dh / h):
            raise DepthError("size", f"depth is {dw}x{dh}, the colour frame {w}x{h}: different aspect ratio")
        depth = cv2.resize(depth, (w, h), interpolation=cv2.INTER_NEAREST)
    return depth, cam
