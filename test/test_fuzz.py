"""Property-based fuzzing of what can arrive on the node's image topics.

Every message either decodes to an HxWx3 uint8 image or raises ImageDecodeError (never
anything else), and inside the node a bad frame is counted as rejected, after which a valid
frame is processed normally.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seg_perception.encodings import SUPPORTED_ENCODINGS, ImageDecodeError, ImageFields, compressed_to_rgb, image_to_rgb

ENCODINGS = st.one_of(
    st.sampled_from(SUPPORTED_ENCODINGS), st.sampled_from(["", "yuv422", "RGB8", "32FC1"]), st.text(max_size=12)
)


@st.composite
def raw_images(draw):
    h = draw(st.integers(0, 40))
    w = draw(st.integers(0, 40))
    enc = draw(ENCODINGS)
    step = draw(st.one_of(st.just(w * 3), st.integers(0, 200)))
    n = draw(st.one_of(st.just(step * h), st.integers(0, 5000)))
    return ImageFields(h, w, enc, draw(st.integers(0, 1)), step, bytes(draw(st.binary(min_size=n, max_size=n))))


@given(raw_images())
@settings(max_examples=400, deadline=None)
def test_raw_images_decode_or_raise_decode_error(f):
    try:
        out = image_to_rgb(f, max_pixels=10_000)
    except ImageDecodeError:
        return
    assert out.shape == (f.height, f.width, 3) and out.dtype == np.uint8


def test_huge_dimensions_rejected_before_reading_payload():
    f = ImageFields(100_000, 100_000, "rgb8", 0, 300_000, b"\x00" * 10)
    with pytest.raises(ImageDecodeError, match="max_image_pixels"):
        image_to_rgb(f, max_pixels=4096 * 4096)


class _C:
    def __init__(self, fmt, data):
        self.format, self.data = fmt, data


_PNG = cv2.imencode(".png", np.full((24, 32, 3), 90, np.uint8))[1].tobytes()
_JPG = cv2.imencode(".jpg", np.full((24, 32, 3), 90, np.uint8))[1].tobytes()


@given(
    st.sampled_from(["jpeg", "png", "rgb8; jpeg compressed bgr8", "tiff", ""]),
    st.sampled_from([_PNG, _JPG]),
    st.integers(0, 400),
    st.binary(max_size=64),
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_compressed_truncated_or_corrupt(fmt, blob, cut, junk):
    data = blob[:cut] + junk if cut < len(blob) else blob
    try:
        out = compressed_to_rgb(_C(fmt, data), max_pixels=10_000)
    except ImageDecodeError:
        return
    assert out.ndim == 3 and out.shape[2] == 3


@given(st.sampled_from([_PNG[:33], _JPG[:20], b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"]), st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_compressed_headers_with_random_bytes_after_the_magic(head, tail):
    try:
        out = compressed_to_rgb(_C("png", head + tail), max_pixels=10_000)
    except ImageDecodeError:
        return
    assert out.ndim == 3 and out.shape[2] == 3


# --- the same inputs through the node's own processing path (in-process, real rclpy) -----
# (rclpy is needed from here on only: the tests above run without it)


@pytest.fixture(scope="module")
def seg_node(tmp_path_factory):
    rclpy = pytest.importorskip("rclpy")
    from colour_model import make_colour_model
    from rclpy.parameter import Parameter

    from seg_perception.node import SegmentationNode

    d = tmp_path_factory.mktemp("m")
    make_colour_model(d)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = SegmentationNode(
        context=ctx,
        parameter_overrides=[
            Parameter("backend", value="onnx"),
            Parameter("model_path", value=str(d / "colour.onnx")),
            Parameter("max_image_pixels", value=1_000_000),
        ],
    )
    yield node
    node.destroy_node()
    ctx.try_shutdown()


def _msg(f: ImageFields):
    from sensor_msgs.msg import Image

    m = Image()
    m.height, m.width, m.encoding, m.is_bigendian, m.step = f.height, f.width, f.encoding, f.is_bigendian, f.step
    m.data = f.data
    return m


@given(raw_images())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_node_counts_bad_frames_and_keeps_going(seg_node, f):
    from seg_perception.encodings import rgb_to_fields

    before = seg_node.counters.snapshot()
    seg_node._process(_msg(f))  # must not raise, whatever arrives
    after = seg_node.counters.snapshot()
    assert after["processed"] + after["rejected"] == before["processed"] + before["rejected"] + 1
    seg_node._process(_msg(rgb_to_fields(np.full((48, 64, 3), 30, np.uint8))))
    assert seg_node.counters.snapshot()["processed"] == after["processed"] + 1


def test_node_backend_raising_is_counted(seg_node):
    from seg_perception.encodings import rgb_to_fields

    seg = seg_node._segmenter
    original = seg.backend.infer
    seg.backend.infer = lambda x: (_ for _ in ()).throw(RuntimeError("boom"))
    try:
        before = seg_node.counters.snapshot()["inference_errors"]
        seg_node._process(_msg(rgb_to_fields(np.zeros((48, 64, 3), np.uint8))))
        assert seg_node.counters.snapshot()["inference_errors"] == before + 1
    finally:
        seg.backend.infer = original
    n = seg_node.counters.snapshot()["processed"]
    seg_node._process(_msg(rgb_to_fields(np.zeros((48, 64, 3), np.uint8))))
    assert seg_node.counters.snapshot()["processed"] == n + 1


def test_slow_backend_drops_stale_frames_and_processes_the_newest(seg_node):
    """Overload, deterministic: frames arrive faster than inference; the worker takes only the
    newest, every replaced frame is counted as dropped, nothing queues."""
    import time

    from seg_perception.encodings import rgb_to_fields

    seg = seg_node._segmenter
    original = seg.backend.infer
    seen = []

    def slow(x):
        time.sleep(0.05)
        return original(x)

    seg.backend.infer = slow
    orig_process = seg_node.frames._process  # what the worker thread calls per frame
    seg_node.frames._process = lambda msg: (seen.append(msg.header.stamp.sec), orig_process(msg))[1]
    try:
        before = seg_node.counters.snapshot()
        for i in range(1, 21):
            m = _msg(rgb_to_fields(np.full((48, 64, 3), 30, np.uint8)))
            m.header.stamp.sec = i
            seg_node._on_image(m)
            time.sleep(0.005)
        deadline = time.monotonic() + 5
        while (
            seg_node.counters.snapshot()["processed"] + seg_node.counters.snapshot()["dropped"]
            < before["processed"] + before["dropped"] + 20
            and time.monotonic() < deadline
        ):
            time.sleep(0.01)
        time.sleep(0.1)
        after = seg_node.counters.snapshot()
    finally:
        seg.backend.infer = original
        seg_node.frames._process = orig_process
    received = after["received"] - before["received"]
    processed = after["processed"] - before["processed"]
    dropped = after["dropped"] - before["dropped"]
    assert received == 20 and processed + dropped == 20
    assert dropped >= 10, (processed, dropped)  # 20 frames in ~0.1 s, 50 ms per inference
    assert seen[-1] == 20, "the newest frame is always processed"
    assert seen == sorted(seen), "frames are processed in arrival order, never an old one after a newer"
