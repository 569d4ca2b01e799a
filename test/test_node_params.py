"""Runtime parameter changes and model faults, on an in-process node (real rclpy, no mocks)."""
from __future__ import annotations

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.parameter import Parameter  # noqa: E402

from colour_model import make_colour_model  # noqa: E402
from seg_perception.encodings import rgb_to_fields  # noqa: E402


def _frame():
    from sensor_msgs.msg import Image

    f = rgb_to_fields(np.zeros((48, 64, 3), np.uint8))
    m = Image()
    m.height, m.width, m.encoding, m.step, m.data = f.height, f.width, f.encoding, f.step, f.data
    return m


@pytest.fixture()
def ctx():
    c = rclpy.Context()
    rclpy.init(context=c)
    yield c
    c.try_shutdown()


def _node(ctx, **params):
    from seg_perception.node import SegmentationNode

    return SegmentationNode(context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])


def test_invalid_changes_rejected_with_reason_and_valid_switch_applies(ctx, tmp_path):
    make_colour_model(tmp_path / "a", name="a")
    make_colour_model(tmp_path / "b", name="b", hw=(96, 128))
    node = _node(ctx, backend="onnx", model_path=str(tmp_path / "a" / "a.onnx"))
    try:
        assert node._segmenter.backend.input_hw == (128, 160)
        r = node.set_parameters([Parameter("backend", value="resnet")])[0]
        assert not r.successful and "tflite_int8" in r.reason
        r = node.set_parameters([Parameter("overlay_alpha", value=3.0)])[0]
        assert not r.successful and "overlay_alpha" in r.reason
        r = node.set_parameters([Parameter("transport", value="compressed")])[0]
        assert not r.successful and "start-up" in r.reason
        r = node.set_parameters([Parameter("model_path", value=str(tmp_path / "missing.onnx"))])[0]
        assert not r.successful and "missing.onnx" in r.reason
        (tmp_path / "bad.onnx").write_bytes(b"\x00garbage")
        r = node.set_parameters([Parameter("model_path", value=str(tmp_path / "bad.onnx"))])[0]
        assert not r.successful and "cannot load model" in r.reason
        assert node.get_parameter("model_path").value == str(tmp_path / "a" / "a.onnx")
        node._process(_frame())
        assert node.counters.snapshot()["processed"] == 1  # old backend kept running
        r = node.set_parameters([Parameter("model_path", value=str(tmp_path / "b" / "b.onnx"))])[0]
        assert r.successful
        assert node._segmenter.backend.input_hw == (96, 128)
        node._process(_frame())
        assert node.counters.snapshot()["processed"] == 2
    finally:
        node.destroy_node()


def test_node_starts_without_model_reports_fault_and_recovers(ctx, tmp_path):
    make_colour_model(tmp_path / "a", name="a")
    node = _node(ctx, backend="onnx", model_path=str(tmp_path / "nope.onnx"))
    try:
        assert node._segmenter is None
        st = node.diagnostics_status()
        assert st.level == b"\x02" and "nope.onnx" in st.message
        node._process(_frame())
        assert node.counters.snapshot()["no_backend"] == 1
        r = node.set_parameters([Parameter("model_path", value=str(tmp_path / "a" / "a.onnx"))])[0]
        assert r.successful
        assert node.diagnostics_status().level == b"\x00"
        node._process(_frame())
        assert node.counters.snapshot()["processed"] == 1
    finally:
        node.destroy_node()


def test_bad_startup_parameter_does_not_kill_node(ctx):
    node = _node(ctx, backend="does_not_exist")
    try:
        st = node.diagnostics_status()
        assert st.level == b"\x02" and "does_not_exist" in st.message
    finally:
        node.destroy_node()


def test_camera_stall_is_a_warning_and_recovers(ctx, tmp_path):
    make_colour_model(tmp_path / "a", name="a")
    node = _node(ctx, backend="onnx", model_path=str(tmp_path / "a" / "a.onnx"), stall_timeout_s=0.2)
    try:
        node._on_image(_frame())
        import time
        time.sleep(0.3)
        st = node.diagnostics_status()
        assert st.level == b"\x01" and "camera stall" in st.message
        node._on_image(_frame())
        assert node.diagnostics_status().level == b"\x00"
    finally:
        node.destroy_node()
