"""The node's newest-frame handoff (seg_perception.frame_worker), without ROS."""

import threading
import time

from waiting import wait_until as _wait

from seg_perception.frame_worker import NewestFrameWorker


class _Gate:
    """process(): records the frame, then blocks until released (a slow model)."""

    def __init__(self):
        self.done, self.started, self.release = [], threading.Event(), threading.Event()

    def __call__(self, frame):
        self.started.set()
        self.release.wait(5.0)
        self.done.append(frame)


def test_a_slow_worker_gets_the_newest_frame_and_the_stale_ones_are_dropped_not_queued():
    gate = _Gate()
    w = NewestFrameWorker(gate, on_error=lambda e: None)
    w.resume()
    try:
        assert w.offer(1) is False
        assert gate.started.wait(5.0)  # frame 1 in flight, the slot is free again
        dropped = [w.offer(k) for k in (2, 3, 4)]
        assert dropped == [False, True, True] and w.waiting
        gate.release.set()
        assert _wait(lambda: gate.done == [1, 4])
        assert not w.waiting
    finally:
        gate.release.set()
        w.stop()


def test_an_inactive_worker_discards_frames_and_pause_waits_for_the_frame_in_flight():
    gate = _Gate()
    w = NewestFrameWorker(gate, on_error=lambda e: None)
    try:
        w.offer("before activate")
        assert _wait(lambda: not w.waiting)  # taken and discarded
        assert gate.done == []
        w.resume()
        w.offer("a")
        assert gate.started.wait(5.0)
        threading.Timer(0.2, gate.release.set).start()
        t0 = time.monotonic()
        w.pause()  # returns only when "a" is finished
        assert gate.done == ["a"] and time.monotonic() - t0 >= 0.15
        w.offer("after pause")
        time.sleep(0.1)
        assert gate.done == ["a"] and not w.waiting
    finally:
        gate.release.set()
        w.stop()


def test_an_exception_goes_to_on_error_and_the_worker_carries_on():
    errors, done = [], []

    def process(frame):
        if frame == "bad":
            raise ValueError("corrupt")
        done.append(frame)

    w = NewestFrameWorker(process, on_error=errors.append)
    w.resume()
    try:
        w.offer("bad")
        assert _wait(lambda: len(errors) == 1)
        w.offer("good")
        assert _wait(lambda: done == ["good"])
        assert isinstance(errors[0], ValueError) and w.alive
    finally:
        w.stop()


def test_stop_finishes_the_frame_in_flight_and_ends_the_thread():
    gate = _Gate()
    w = NewestFrameWorker(gate, on_error=lambda e: None)
    w.resume()
    w.offer("last")
    assert gate.started.wait(5.0)
    threading.Timer(0.1, gate.release.set).start()
    w.stop()
    assert gate.done == ["last"] and not w.alive
