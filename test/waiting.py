"""One polling wait for the tests (no ROS)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(cond: Callable[[], object], timeout: float = 5.0, poll: float = 0.005) -> bool:
    """Poll ``cond`` until it is true or ``timeout`` passes; its last value, as a bool."""
    end = time.monotonic() + timeout
    while not cond() and time.monotonic() < end:
        time.sleep(poll)
    return bool(cond())
