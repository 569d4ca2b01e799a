"""Counters and rolling statistics for diagnostics (thread-safe, no rclpy)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import numpy as np


class RateMeter:
    """Events per second over a sliding window (shorter while the meter is young)."""

    def __init__(self, window_s: float = 5.0):
        self.window_s = window_s
        self._start = time.monotonic()
        self._t: deque[float] = deque()
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._t.append(now)
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._t and now - self._t[0] > self.window_s:
            self._t.popleft()

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._trim(now)
            elapsed = min(self.window_s, now - self._start)
            return len(self._t) / elapsed if elapsed > 0 else 0.0


class SequenceGaps:
    """Messages a publisher sent that never reached the callback, from the publication sequence
    numbers of what did (rclpy's MessageInfo): with a KEEP_LAST 1 input a frame that arrives before the
    executor took the previous one replaces it inside DDS, and best effort loses frames on the way;
    the node sees neither, but the numbers it skips say how many. Counting starts at the first
    message of each publisher; a number that goes back (a new writer) restarts it."""

    def __init__(self, max_publishers: int = 16):
        self._last: OrderedDict[bytes, int] = OrderedDict()
        self._max = max_publishers

    def missed(self, publisher: bytes | None, seq: int | None) -> int:
        """Messages of ``publisher`` skipped since its last one (0 without a publisher id or number)."""
        if publisher is None or seq is None:
            return 0
        last = self._last.get(publisher)
        self._last[publisher] = seq
        self._last.move_to_end(publisher)
        while len(self._last) > self._max:
            self._last.popitem(last=False)
        return seq - last - 1 if last is not None and seq > last else 0


class Percentiles:
    """Keeps the last N samples; percentiles on demand."""

    def __init__(self, size: int = 500):
        self._v: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, v: float) -> None:
        with self._lock:
            self._v.append(float(v))

    def get(self, *qs: float) -> dict[float, float]:
        with self._lock:
            arr = np.asarray(self._v, dtype=np.float64)
        if arr.size == 0:
            return {q: float("nan") for q in qs}
        return {q: float(np.percentile(arr, q)) for q in qs}

    def __len__(self) -> int:
        return len(self._v)


class Counters:
    """Named monotonic counters."""

    def __init__(self, *names: str):
        self._c: dict[str, int] = {n: 0 for n in names}
        self._lock = threading.Lock()

    def inc(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._c[name] = self._c.get(name, 0) + n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._c)


def median_ms(fn: Callable[[], Any], runs: int, warmup: int) -> tuple[float, float]:
    """(median, 10th-90th percentile spread) in milliseconds of ``fn()`` after ``warmup`` calls."""
    return interleaved_ms({"_": fn}, runs, warmup)["_"]


def interleaved_ms(fns: dict[str, Callable[[], Any]], runs: int, warmup: int) -> dict[str, tuple[float, float]]:
    """Median / 10-90 % spread (ms) of several callables timed round-robin.

    Interleaving makes the comparison fair on a machine whose background load drifts (a shared
    dev box): every model sees the same mix of quiet and busy moments.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append((time.perf_counter() - t0) * 1e3)
    out = {}
    for k, t in times.items():
        p10, p90 = np.percentile(t, [10, 90])
        out[k] = (float(np.median(t)), float(p90 - p10))
    return out
