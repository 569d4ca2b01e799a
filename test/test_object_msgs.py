"""Per-object results -> MarkerArray / PoseArray / vision_msgs detections (seg_perception.object_msgs)."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from seg_perception.classes import load_classes
from seg_perception.geometry import Object3D
from seg_perception.object_msgs import (
    MarkerArrayBuilder,
    detections_2d,
    detections_3d,
    label_text,
    object_markers,
    object_poses,
)
from seg_perception.postprocess import SegObject

pytest.importorskip("visualization_msgs.msg")
from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

CLASSES = load_classes("full")


def _obj(k, cls, yaw=0.0, resolved_from=None, original=None):
    c, s = math.cos(yaw), math.sin(yaw)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    return Object3D(
        k,
        cls,
        CLASSES.names[cls],
        0.87,
        np.array([0.1, -0.02, 0.5]),
        rot,
        np.array([0.1, 0.04, 0.04]),
        yaw,
        900,
        True,
        resolved_from,
        original,
    )


def _header():
    h = Header()
    h.frame_id = "camera_color_optical_frame"
    h.stamp.sec, h.stamp.nanosec = 12, 34
    return h


def test_markers_clear_then_cube_and_text_per_object():
    objs = [_obj(2, 2, math.pi / 2, "f20_20_B", 1), _obj(5, 13)]
    arr = object_markers(objs, _header(), CLASSES.palette())
    m = arr.markers
    assert len(m) == 5 and m[0].action == Marker.DELETEALL
    cube, text = m[1], m[2]
    assert (cube.type, cube.action, cube.ns, cube.id) == (Marker.CUBE, Marker.ADD, "s40_40_B", 2)
    assert (cube.header.frame_id, cube.header.stamp.sec, cube.header.stamp.nanosec) == (
        "camera_color_optical_frame",
        12,
        34,
    )
    assert (cube.pose.position.x, cube.pose.position.y, cube.pose.position.z) == pytest.approx((0.1, -0.02, 0.5))
    q = cube.pose.orientation  # 90 degrees about z
    assert (q.x, q.y, q.z, q.w) == pytest.approx((0, 0, math.sqrt(0.5), math.sqrt(0.5)))
    assert (cube.scale.x, cube.scale.y, cube.scale.z) == pytest.approx((0.1, 0.04, 0.04))
    assert (cube.color.r, cube.color.g, cube.color.b) == pytest.approx(tuple(np.array([174, 199, 232]) / 255))
    assert text.type == Marker.TEXT_VIEW_FACING and (text.ns, text.id) == ("labels", 2)
    assert text.text == "s40_40_B 0.87 (size: f20_20_B->s40_40_B)"
    assert text.pose.position.z == pytest.approx(0.5 + 0.02 + 0.015)  # above the box along its up axis (z here)
    assert m[3].ns == "motor" and m[4].text == "motor 0.87"
    assert object_markers([], _header(), CLASSES.palette()).markers[0].action == Marker.DELETEALL


def test_reused_markers_equal_fresh_ones_frame_after_frame():
    build = MarkerArrayBuilder()
    frames = [
        [_obj(2, 2, math.pi / 2, "f20_20_B", 1), _obj(5, 13), _obj(7, 4, 0.3)],
        [_obj(1, 13, -0.4)],  # fewer objects: the spare markers stay out of the array
        [_obj(3, 2), _obj(4, 4, 1.0, "m20", 9)],
        [],
    ]
    for k, objs in enumerate(frames):
        h = _header()
        h.stamp.sec = 100 + k
        got = build(objs, h, CLASSES.palette())
        want = object_markers(objs, h, CLASSES.palette())
        assert len(got.markers) == 1 + 2 * len(objs)
        assert list(got.markers) == list(want.markers), k  # every field of every marker


def test_pose_array_in_instance_order():
    arr = object_poses([_obj(5, 13), _obj(2, 2)], _header())
    assert arr.header.frame_id == "camera_color_optical_frame" and len(arr.poses) == 2
    assert arr.poses[0].orientation.w == pytest.approx(1.0)
    assert label_text(_obj(1, 1)) == "f20_20_B 0.87"


class _Msg(SimpleNamespace):
    """Stand-in for a ROS message: unset fields spring into existence as nested messages."""

    def __getattr__(self, name):
        value = _Msg()
        setattr(self, name, value)
        return value


def _vision_msgs():
    def arr(field):
        return lambda: _Msg(**{field: []})

    return SimpleNamespace(
        Detection3DArray=arr("detections"),
        Detection3D=arr("results"),
        Detection2DArray=arr("detections"),
        Detection2D=arr("results"),
        ObjectHypothesisWithPose=_Msg,
    )


def test_detection3d_with_a_stand_in_vision_msgs():
    vm = _vision_msgs()
    arr = detections_3d([_obj(5, 13), _obj(2, 2, 0.0, "f20_20_B", 1)], _header(), vm)
    d0, d1 = arr.detections
    assert d0.id == "2" and [h.hypothesis.class_id for h in d0.results] == ["2", "1"]
    assert [h.hypothesis.score for h in d0.results] == [pytest.approx(0.87), 0.0]
    assert d1.id == "5" and d1.results[0].hypothesis.class_id == "13"
    assert (d1.bbox.size.x, d1.bbox.size.y, d1.bbox.size.z) == pytest.approx((0.1, 0.04, 0.04))
    assert d1.bbox.center.position.z == pytest.approx(0.5) and d1.results[0].pose.pose.orientation.w == pytest.approx(1)


def test_detection2d_class_id_is_the_numeric_id():
    """Regression: class_id was the class name; LabelInfo maps numeric ids, so it must be the id as a string."""
    vm = _vision_msgs()
    seg = [SegObject(3, 7, "m30", (10, 20, 30, 40), (25.0, 40.0), 1200, 0.9, np.zeros((1, 1), bool))]
    arr = detections_2d(seg, _header(), vm)
    (d,) = arr.detections
    assert d.results[0].hypothesis.class_id == "7" and d.id == "3"
    assert (d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.size_x, d.bbox.size_y) == (25, 40, 30, 40)
    box = _obj(3, 6, 0.0, "m30", 7)  # depth said it is the smaller nut
    (d,) = detections_2d(seg, _header(), vm, {3: box}).detections
    assert d.results[0].hypothesis.class_id == "6" and d.results[0].pose.pose.position.z == pytest.approx(0.5)


def test_rviz_config_shows_image_overlay_and_markers(repo_root):
    import yaml

    from seg_perception.tools import bags

    doc = yaml.safe_load((repo_root / "config" / "seg.rviz").read_text())
    shown = doc["Visualization Manager"]["Displays"]
    displays = {d["Class"]: d for d in shown if d["Class"] != "rviz_default_plugins/Image"}
    images = [d["Topic"]["Value"] for d in shown if d["Class"] == "rviz_default_plugins/Image"]
    assert images == [bags.CAMERA_TOPIC, "/segmentation/overlay"]
    assert displays["rviz_default_plugins/MarkerArray"]["Topic"]["Value"] == bags.MARKERS_TOPIC
    assert displays["rviz_default_plugins/PoseArray"]["Topic"]["Value"] == "/segmentation/object_poses"
    # the frame the node's boxes are in when replaying a bag made by seg-make-bag
    assert doc["Visualization Manager"]["Global Options"]["Fixed Frame"] == "camera_color_optical_frame"
