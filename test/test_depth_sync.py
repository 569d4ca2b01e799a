"""Depth input: stamp pairing, decoding, size/camera-info checks (seg_perception.depth_sync)."""

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from seg_perception.depth_sync import DepthError, StampBuffer, camera_from_info, decode_depth, depth_for_frame
from seg_perception.geometry import CameraModel

MS = 1_000_000


def test_exact_stamp_wins_over_nearer_arrival_order():
    buf = StampBuffer(4)
    buf.add(100 * MS, "a")
    buf.add(133 * MS, "b")
    buf.add(166 * MS, "c")  # newest arrival; pairing never uses arrival order
    assert buf.match(133 * MS, 20 * MS) == (133 * MS, "b")
    assert buf.match(100 * MS, 0) == (100 * MS, "a")


def test_nearest_within_tolerance_and_missing_partner():
    buf = StampBuffer(4)
    for t, v in ((100, "a"), (133, "b"), (166, "c")):
        buf.add(t * MS, v)
    assert buf.match(140 * MS, 20 * MS) == (133 * MS, "b")  # 7 ms from b, 26 from c
    assert buf.match(150 * MS, 20 * MS) == (166 * MS, "c")  # 16 vs 17
    assert buf.match(149_500_000, 20 * MS) == (133 * MS, "b")  # tie: 16.5 each -> the earlier
    assert buf.match(200 * MS, 20 * MS) is None  # 34 ms from the nearest
    assert buf.match(50 * MS, 20 * MS) is None


def test_buffer_is_bounded_and_replaces_a_repeated_stamp():
    buf = StampBuffer(3)
    for t in range(10):
        buf.add(t, str(t))
    assert len(buf) == 3 and buf.match(2, 0) is None and buf.match(9, 0) == (9, "9")
    buf.add(9, "again")
    assert len(buf) == 3 and buf.match(9, 0) == (9, "again")
    assert buf.newest() == (9, "again")
    with pytest.raises(ValueError):
        StampBuffer(0)


def test_wait_match_gets_a_partner_that_arrives_late_and_gives_up_when_newer_came():
    buf = StampBuffer(4)
    threading.Timer(0.05, lambda: buf.add(1000, "late")).start()
    t = time.monotonic()
    assert buf.wait_match(1000, 0, 2.0) == (1000, "late")
    assert time.monotonic() - t < 1.0
    buf.add(5000, "newer")  # a newer depth frame already came: the partner of 3000 will not
    t = time.monotonic()
    assert buf.wait_match(3000, 10, 2.0) is None
    assert time.monotonic() - t < 0.5
    t = time.monotonic()
    assert StampBuffer(2).wait_match(1, 0, 0.05) is None and time.monotonic() - t >= 0.04


def _img(arr, encoding, bigendian=False, pad=0):
    arr = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder(">" if bigendian else "<")))
    rows = arr.view(np.uint8).reshape(arr.shape[0], -1)
    if pad:
        rows = np.hstack([rows, np.full((rows.shape[0], pad), 7, np.uint8)])
    return SimpleNamespace(
        encoding=encoding,
        height=arr.shape[0],
        width=arr.shape[1],
        step=rows.shape[1],
        is_bigendian=int(bigendian),
        data=rows.tobytes(),
    )


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("pad", [0, 6])
def test_decode_16uc1_and_32fc1(bigendian, pad):
    mm = np.arange(12, dtype=np.uint16).reshape(3, 4) * 100
    out = decode_depth(_img(mm, "16UC1", bigendian, pad))
    assert out.dtype == np.uint16 and out.dtype.isnative and np.array_equal(out, mm)
    m = mm.astype(np.float32) / 1000
    m[0, 0] = np.nan
    out = decode_depth(_img(m, "32FC1", bigendian, pad))
    assert out.dtype == np.float32 and np.array_equal(out, m, equal_nan=True)


def test_decode_rejects_with_reasons():
    good = _img(np.zeros((3, 4), np.uint16), "16UC1")
    for change, reason in (
        ({"encoding": "rgb8"}, "encoding"),
        ({"encoding": "32FC3"}, "encoding"),
        ({"height": 0}, "size"),
        ({"step": 7}, "data"),
        ({"data": b"\0" * 10}, "data"),
    ):
        msg = SimpleNamespace(**{**vars(good), **change})
        with pytest.raises(DepthError) as e:
            decode_depth(msg)
        assert e.value.reason == reason, change


def test_camera_info_and_frame_size():
    info = SimpleNamespace(k=[400.0, 0, 159.5, 0, 400.0, 119.5, 0, 0, 1], width=320, height=240)
    cam = camera_from_info(info)
    depth = np.arange(240 * 320, dtype=np.uint16).reshape(240, 320)
    d2, cam2 = depth_for_frame(depth, cam, (480, 640))  # both half the colour size: scaled / resized
    assert d2.shape == (480, 640) and d2[2, 2] == depth[1, 1] and cam2.fx == 800.0 and cam2.cx == 319.5
    d3, cam3 = depth_for_frame(depth, cam, (240, 320))
    assert d3 is depth and cam3 is cam
    with pytest.raises(DepthError) as e:
        depth_for_frame(depth[:, :200], cam, (240, 320))
    assert e.value.reason == "size"
    with pytest.raises(DepthError) as e:
        depth_for_frame(depth, cam, (240, 400))
    assert e.value.reason == "camera_info"
    for bad in ([np.nan] * 9, [0.0] * 9):
        with pytest.raises(DepthError) as e:
            camera_from_info(SimpleNamespace(k=bad, width=320, height=240))
        assert e.value.reason == "camera_info"
    assert isinstance(cam, CameraModel)
