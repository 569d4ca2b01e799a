"""StreamClient.diag_values: the newest segmentation status, by stamp and, with ``having``, by key
(several nodes share /diagnostics: seg-bench --depth reads the depth node's among two)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue  # noqa: E402

from seg_perception.tools.rosio import StreamClient  # noqa: E402


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
