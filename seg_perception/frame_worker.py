"""The newest frame, handed to one worker thread; stale frames are dropped, never queued (no rclpy).

The node's image callback only offers a message (:meth:`NewestFrameWorker.offer`): it takes the
single slot, and a frame still waiting there is replaced (the caller counts it as dropped). The worker
thread takes the slot's frame and runs ``process`` on it while the worker is active; a frame
that reaches an inactive worker is discarded. Latency is therefore bounded by one frame in
flight plus one waiting, however slow ``process`` is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class NewestFrameWorker:
    def __init__(
        self,
        process: Callable[[Any], None],
        on_error: Callable[[Exception], None],
        name: str = "seg_worker",
    ):
        """``process(frame)`` runs on the worker thread; an exception it raises goes to ``on_error``
        and the worker carries on with the next frame."""
        self._process, self._on_error = process, on_error
        self._cond = threading.Condition()
        self._busy = threading.Lock()  # held while a frame is processed
        self._pending: Any | None = None
        self._stop = False
        self.active = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> bool:
        """A frame is in the slot, not yet taken by the worker."""
        return self._pending is not None

    def offer(self, frame: Any) -> bool:
        """Put ``frame`` in the slot; True when it replaced a frame still waiting there (dropped)."""
        with self._cond:
            dropped = self._pending is not None
            self._pending = frame
            self._cond.notify()
        return dropped

    def resume(self) -> None:
        """Process frames from now on."""
        self.active = True

    def pause(self) -> None:
        """Forget a waiting frame and wait for the frame in flight: nothing is processed after this
        returns, until :meth:`resume`."""
        self.active = False
        with self._cond:
            self._pending = None
        with self._busy:
            pass

    def stop(self, timeout_s: float = 5.0) -> None:
        """Finish the frame in flight and end the thread (a no-op when called from the worker itself)."""
        self.active = False
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                frame, self._pending = self._pending, None
            with self._busy:
                if not self.active:
                    continue
                try:
                    self._process(frame)
                except Exception as e:  # noqa: BLE001 - the worker must survive anything
                    self._on_error(e)
