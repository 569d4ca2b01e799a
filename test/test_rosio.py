"""StreamClient.diag_values: the newest segmentation status, by stamp and, with ``having``, by key
(several nodes share /diagnostics: seg-bench --depth reads the depth node's among two); frozen_heap."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from types import SimpleNamespace

import pytest

pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue  # noqa: E402

from seg_perception.tools.rosio import StreamClient, arrival_time, frozen_heap  # noqa: E402


def _array(sec: int, **values: str) -> DiagnosticArray:
    arr = DiagnosticArray()
    arr.header.stamp.sec = sec
    st = DiagnosticStatus(name="seg_perception: segmentation", message="ok")
    st.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    arr.status = [st]
    return arr


def _client(*arrays: DiagnosticArray) -> SimpleNamespace:
    return SimpleNamespace(_lock=threading.Lock(), received=SimpleNamespace(diagnostics=list(arrays)))


def test_newest_status_and_the_one_having_a_key():
    depth_node = _array(10, geometry_ms_p50="4.50", frames_processed="7")
    plain_node = _array(11, frames_processed="9")  # newer, from the node without depth
    c = _client(depth_node, plain_node)
    assert StreamClient.diag_values(c)["frames_processed"] == "9"
    got = StreamClient.diag_values(c, having="geometry_ms_p50")
    assert got["geometry_ms_p50"] == "4.50" and got["frames_processed"] == "7"
    assert StreamClient.diag_values(c, since_ns=11 * 10**9, having="geometry_ms_p50") == {}  # only stale ones have it
    assert StreamClient.diag_values(c, having="no_such_key") == {}


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_frozen_heap_hides_the_objects_alive_before_and_still_collects_new_garbage():
    old = [[i] for i in range(1000)]  # tracked lists, alive before the block
    assert gc.get_freeze_count() == 0
    with frozen_heap():
        assert gc.get_freeze_count() >= len(old)  # out of the collector's view: a full pass skips them
        c = _Cycle()
        ref = weakref.ref(c)
        del c
        gc.collect()
        assert ref() is None  # a cycle made inside the block is still collected
    assert gc.get_freeze_count() == 0


def test_frozen_heap_unfreezes_when_the_block_raises():
    with pytest.raises(RuntimeError), frozen_heap():
        assert gc.get_freeze_count() > 0
        raise RuntimeError("measurement failed")
    assert gc.get_freeze_count() == 0


def test_arrival_time_is_the_middlewares_reception_time_in_seconds():
    # float64 seconds since the epoch resolve ~0.2 us
    assert arrival_time({"received_timestamp": 1_700_000_000_250_000_000}) == pytest.approx(1_700_000_000.25, abs=1e-6)
    before = time.time()  # an RMW that gives no reception time: now
    assert before <= arrival_time({"received_timestamp": 0}) <= time.time()
    assert before <= arrival_time({}) <= time.time()
