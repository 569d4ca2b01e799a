"""The node with use_depth, in-process (real rclpy, no DDS traffic needed): 3D boxes from paired depth,
and bad depth that never stops the 2D outputs."""

import math

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("visualization_msgs.msg")

from seg_perception.demo_scene3d import Placement, render_objects  # noqa: E402
from seg_perception.geometry import yaw_error  # noqa: E402
from seg_perception.geometry_eval import boxes_from_markers  # noqa: E402

HW = (240, 320)
PLACES = [Placement("s40_40_G", -0.07, 0.0, 0.6), Placement("axis", 0.08, 0.03, -0.9), Placement("m30", 0.0, 0.1, 0.0)]


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    from colour_model import make_colour_model
    from rclpy.parameter import Parameter

    from seg_perception.node import SegmentationNode

    d = tmp_path_factory.mktemp("m")
    make_colour_model(d, hw=HW, down=1)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    n = SegmentationNode(
        context=ctx,
        parameter_overrides=[
            Parameter("backend", value="onnx"),
            Parameter("model_path", value=str(d / "colour.onnx")),
            Parameter("use_depth", value=True),
            Parameter("min_object_area", value=30),
        ],
    )
    n.published = {"labels": [], "markers": [], "poses": []}
    n.pubs.labels.publish = n.published["labels"].append
    n.depth_side.pub_markers.publish = n.published["markers"].append
    n.depth_side.pub_markers.get_subscription_count = lambda: 1  # RViz is watching (markers only then)
    n.depth_side.pub_poses.publish = n.published["poses"].append
    yield n
    n.destroy_node()
    ctx.try_shutdown()


@pytest.fixture(scope="module")
def scene():
    return render_objects(PLACES, HW, tilt_deg=45.0, distance=0.55, palette_colours=True)


def _stamp(m, sec):
    m.header.stamp.sec, m.header.stamp.nanosec = sec, 500
    m.header.frame_id = "cam_optical"
    return m


def colour(scene, sec):
    from seg_perception.tools.rosio import image_msg

    return image_msg(scene.rgb, (sec, 500), "cam_optical")


def depth(arr, sec, encoding="16UC1"):
    from seg_perception.tools.rosio import image_msg

    m = image_msg(arr, (sec, 500), "cam_optical", encoding)
    return m


def info(scene, sec, k=None):
    from sensor_msgs.msg import CameraInfo

    m = _stamp(CameraInfo(), sec)
    m.height, m.width = HW
    m.k = list(scene.camera.k().reshape(-1)) if k is None else k
    return m


def step(node, scene, sec, depth_msg=None, info_msg=None):
    """One frame through the node's own path; returns the counter changes."""
    before = {**node.counters.snapshot(), **node.depth_side.counters.snapshot()}
    if info_msg is not None:
        node.depth_side._on_info(info_msg)
    if depth_msg is not None:
        node.depth_side._on_depth(depth_msg)
    n_labels = len(node.published["labels"])
    node._process(colour(scene, sec))
    assert len(node.published["labels"]) == n_labels + 1, "2D outputs come whatever the depth"
    after = {**node.counters.snapshot(), **node.depth_side.counters.snapshot()}
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def test_boxes_at_the_right_place_size_and_angle(node, scene):
    got = step(node, scene, 10, depth(scene.depth_mm, 10), info(scene, 10))
    assert got["frames_3d"] == 1 and got["objects_3d"] == 3 and got["processed"] == 1
    markers = node.published["markers"][-1]
    assert markers.markers[0].action == 3  # DELETEALL
    assert markers.markers[1].header.stamp.sec == 10 and markers.markers[1].header.frame_id == "cam_optical"
    boxes = {b.class_name: b for b in boxes_from_markers(markers.markers)}
    assert set(boxes) == {"s40_40_G", "axis", "m30"}
    for t in scene.truths:
        b = boxes[t.class_name]
        assert np.linalg.norm(b.center - t.center) < 0.005, t.class_name
        want = t.dims.copy()
        if t.symmetric:
            want[:2] = want[:2].max()
        assert np.allclose(b.dims, want, rtol=0.12), (t.class_name, b.dims, want)
        if t.elongated:
            from seg_perception.geometry import yaw_in_table

            assert math.degrees(yaw_error(yaw_in_table(b.axis, t.rotation[:, 2]), t.yaw)) < 3.0
    poses = node.published["poses"][-1]
    assert len(poses.poses) == 3 and poses.header.stamp.sec == 10
    text = [m.text for m in markers.markers if m.type == 9]
    assert any(t.startswith("m30 ") for t in text)


def test_markers_only_while_someone_subscribes_poses_always(node, scene, monkeypatch):
    monkeypatch.setattr(node.depth_side.pub_markers, "get_subscription_count", lambda: 0)
    n_markers, n_poses = len(node.published["markers"]), len(node.published["poses"])
    got = step(node, scene, 12, depth(scene.depth_mm, 12), info(scene, 12))
    assert got["frames_3d"] == 1 and got["objects_3d"] == 3
    assert len(node.published["markers"]) == n_markers and len(node.published["poses"]) == n_poses + 1


def test_nearest_depth_within_tolerance_pairs_and_beyond_does_not(node, scene):
    d = depth(scene.depth_mm, 20)
    d.header.stamp.nanosec = 500 + 10_000_000  # 10 ms later than the frame: within 0.02 s
    assert step(node, scene, 20, d, info(scene, 20))["frames_3d"] == 1
    far = depth(scene.depth_mm, 21)
    far.header.stamp.sec = 22  # a second later: never matches
    got = step(node, scene, 21, far, info(scene, 21))
    assert got.get("frames_no_depth") == 1 and "frames_3d" not in got


def test_no_camera_info_yet(node, scene):
    from seg_perception.depth_sync import StampBuffer

    kept = node.depth_side.info
    node.depth_side.info = StampBuffer(4)  # as if none had arrived
    try:
        got = step(node, scene, 30, depth(scene.depth_mm, 30))
    finally:
        node.depth_side.info = kept
    assert got.get("frames_no_camera_info") == 1 and "frames_3d" not in got
    assert "no camera info" in node.diagnostics_status().message


@pytest.mark.parametrize(
    "case, counter",
    [
        ("wrong_encoding", "depth_rejected_encoding"),
        ("wrong_size", "depth_rejected_size"),
        ("nan_camera_info", "depth_rejected_camera_info"),
        ("all_invalid", "objects_no_pose"),
    ],
)
def test_bad_depth_is_counted_and_2d_continues(node, scene, case, counter):
    sec = 100 + ["wrong_encoding", "wrong_size", "nan_camera_info", "all_invalid"].index(case)
    d, i = depth(scene.depth_mm, sec), info(scene, sec)
    if case == "wrong_encoding":
        d = depth(scene.rgb, sec, "rgb8")
    elif case == "wrong_size":
        d = depth(np.zeros((100, 100), np.uint16), sec, "16UC1")
    elif case == "nan_camera_info":
        i = info(scene, sec, [float("nan")] * 9)
    elif case == "all_invalid":
        d = depth(np.zeros(HW, np.uint16), sec)
    got = step(node, scene, sec, d, i)
    assert got[counter] == (3 if case == "all_invalid" else 1) and got["processed"] == 1
    status = node.diagnostics_status()
    values = {kv.key: kv.value for kv in status.values}
    assert int(values[counter]) >= 1
    if case != "all_invalid":
        assert "depth not used" in status.message and status.level == b"\x01"
        # the next good frame clears the warning
        step(node, scene, sec + 50, depth(scene.depth_mm, sec + 50), info(scene, sec + 50))
        assert node.diagnostics_status().level == b"\x00"


def test_depth_follows_the_lifecycle(tmp_path, scene):
    """Subscriptions at activate, gone at deactivate (with the buffered depth and the last warning);
    publishers at configure, gone at cleanup; a new configure brings them back."""
    from colour_model import make_colour_model
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from seg_perception.node import SegmentationNode

    ok = TransitionCallbackReturn.SUCCESS
    make_colour_model(tmp_path, hw=HW, down=1)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    n = SegmentationNode(
        context=ctx,
        parameter_overrides=[
            Parameter("backend", value="onnx"),
            Parameter("model_path", value=str(tmp_path / "colour.onnx")),
            Parameter("use_depth", value=True),
        ],
    )
    try:

        def subs():
            return {s.topic_name for s in n.subscriptions}

        def pubs():
            return {p.topic_name for p in n.publishers}

        out3d = {"/segmentation/object_markers", "/segmentation/object_poses"}
        assert {"/image", "/depth", "/camera_info"} <= subs() and out3d <= pubs()
        n.depth_side._on_depth(depth(scene.depth_mm, 1))
        n.depth_side._on_info(info(scene, 1))
        n.depth_side.last_problem = "frame 0.000000500: no depth image within depth_sync_tolerance_s"
        assert n.diagnostics_status().level == b"\x01"
        assert n.trigger_deactivate() == ok
        assert not subs() & {"/image", "/depth", "/camera_info"} and out3d <= pubs()
        assert len(n.depth_side.depth) == 0 and len(n.depth_side.info) == 0
        status = n.diagnostics_status()
        assert status.level == b"\x00" and "depth" not in status.message, status.message
        assert n.trigger_activate() == ok
        assert {"/image", "/depth", "/camera_info"} <= subs()
        assert n.trigger_deactivate() == ok and n.trigger_cleanup() == ok
        assert n.depth_side is None and not pubs() & out3d
        values = {kv.key: kv.value for kv in n.diagnostics_status().values}
        assert "frames_3d" not in values  # no depth side, no depth values
        assert n.trigger_configure() == ok and out3d <= pubs() and n.depth_side is not None
    finally:
        n.destroy_node()
        ctx.try_shutdown()
