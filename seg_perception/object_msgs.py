"""Per-object results -> ROS messages for grasp planners and RViz.

* :func:`object_markers`: visualization_msgs/MarkerArray: a DELETEALL first (objects of the
  previous frame vanish), then per object a CUBE (ns = class name, id = instance id, pose and
  scale = the box, colour = the class colour) and a TEXT_VIEW_FACING above it ("class score",
  plus "size: a->b" when a size pair changed the class; ns ``labels``, id = instance id).
* :func:`object_poses`: geometry_msgs/PoseArray of the same boxes in instance-id order.
* :func:`detections_3d` / :func:`detections_2d`: vision_msgs Detection3DArray / Detection2DArray,
  given the vision_msgs.msg module (only importable in a ROS distro; tests pass a stand-in).
  ``class_id`` is the numeric class id as a string, as in LabelInfo's class_map.

All poses are in the colour camera's optical frame (x right, y down, z forward), the header
is the colour frame's. The message packages are imported on first use, so this module loads
without ROS.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .geometry import Object3D

TEXT_HEIGHT_M = 0.015
CUBE_ALPHA = 0.6
LABELS_NS = "labels"


def _fill_pose(pose: Any, obj: Object3D) -> Any:
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in obj.center)
    q = obj.quaternion()
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = q
    return pose


def label_text(obj: Object3D) -> str:
    text = f"{obj.class_name} {obj.score:.2f}"
    if obj.resolved_from:
        text += f" (size: {obj.resolved_from}->{obj.class_name})"
    return text


def object_markers(objects: Sequence[Object3D], header: Any, palette: np.ndarray) -> Any:
    """MarkerArray for RViz: DELETEALL, then a CUBE and a TEXT_VIEW_FACING per object."""
    return MarkerArrayBuilder()(objects, header, palette)


class MarkerArrayBuilder:
    """:func:`object_markers` with its Marker messages made once and refilled for every frame: making
    one costs ~40 us in rclpy (it has twenty fields, some of them messages), refilling one ~2 us.
    The array a call returns is valid until the next call: publish it first."""

    def __init__(self) -> None:
        from visualization_msgs.msg import Marker, MarkerArray

        self._marker = Marker
        self._array = MarkerArray()
        self._clear = Marker()
        self._clear.action = Marker.DELETEALL
        self._cubes: list[Any] = []
        self._texts: list[Any] = []

    def __call__(self, objects: Sequence[Object3D], header: Any, palette: np.ndarray) -> Any:
        marker = self._marker
        while len(self._cubes) < len(objects):
            self._cubes.append(marker(type=marker.CUBE, action=marker.ADD))
            self._texts.append(marker(ns=LABELS_NS, type=marker.TEXT_VIEW_FACING, action=marker.ADD))
        self._clear.header = header
        markers = [self._clear]
        for obj, cube, text in zip(objects, self._cubes, self._texts, strict=False):
            rgb = palette[obj.class_id] / 255.0 if 0 <= obj.class_id < len(palette) else np.array([1.0, 1.0, 1.0])
            cube.header = header
            cube.ns, cube.id = obj.class_name, int(obj.instance_id)
            _fill_pose(cube.pose, obj)
            cube.scale.x, cube.scale.y, cube.scale.z = (max(float(v), 1e-4) for v in obj.dims)
            cube.color.r, cube.color.g, cube.color.b = float(rgb[0]), float(rgb[1]), float(rgb[2])
            cube.color.a = CUBE_ALPHA
            text.header = header
            text.id = int(obj.instance_id)
            up = obj.rotation[:, 2]
            pos = obj.center + up * (obj.dims[2] / 2 + TEXT_HEIGHT_M)
            text.pose.position.x, text.pose.position.y, text.pose.position.z = (float(v) for v in pos)
            text.pose.orientation.w = 1.0
            text.scale.z = TEXT_HEIGHT_M
            text.color.r = text.color.g = text.color.b = text.color.a = 1.0
            text.text = label_text(obj)
            markers += (cube, text)
        self._array.markers = markers
        return self._array


def object_poses(objects: Sequence[Object3D], header: Any) -> Any:
    """PoseArray of the boxes, sorted by instance id."""
    from geometry_msgs.msg import Pose, PoseArray

    arr = PoseArray()
    arr.header = header
    arr.poses = [_fill_pose(Pose(), o) for o in sorted(objects, key=lambda o: o.instance_id)]
    return arr


def detections_3d(objects: Sequence[Object3D], header: Any, vm: Any) -> Any:
    """vision_msgs Detection3DArray. ``vm``: the vision_msgs.msg module (or a stand-in with its classes).

    A size-resolved object carries the segmentation's own class as a second hypothesis, score 0.
    """
    arr = vm.Detection3DArray()
    arr.header = header
    for obj in sorted(objects, key=lambda o: o.instance_id):
        d = vm.Detection3D()
        d.header = header
        d.id = str(obj.instance_id)
        hyp = vm.ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = str(obj.class_id)
        hyp.hypothesis.score = float(obj.score)
        _fill_pose(hyp.pose.pose, obj)
        d.results.append(hyp)
        if obj.resolved_from is not None and obj.original_class_id is not None:
            orig = vm.ObjectHypothesisWithPose()
            orig.hypothesis.class_id = str(obj.original_class_id)
            orig.hypothesis.score = 0.0
            _fill_pose(orig.pose.pose, obj)
            d.results.append(orig)
        _fill_pose(d.bbox.center, obj)
        d.bbox.size.x, d.bbox.size.y, d.bbox.size.z = (float(v) for v in obj.dims)
        arr.detections.append(d)
    return arr


def detections_2d(objects: Sequence[Any], header: Any, vm: Any, boxes: dict | None = None) -> Any:
    """vision_msgs Detection2DArray of ``SegObject``s (pixel boxes; ``class_id`` the numeric id).

    ``boxes`` (instance id -> Object3D, optional): where an object was measured in 3D, its result
    pose is the box's pose and a size-resolved class is used.
    """
    arr = vm.Detection2DArray()
    arr.header = header
    for obj in objects:
        box = (boxes or {}).get(obj.instance_id)
        d = vm.Detection2D()
        d.header = header
        d.id = str(obj.instance_id)
        hyp = vm.ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = str(box.class_id if box is not None else obj.class_id)
        hyp.hypothesis.score = float(obj.score)
        if box is not None:
            _fill_pose(hyp.pose.pose, box)
        d.results.append(hyp)
        x, y, w, h = obj.bbox
        d.bbox.center.position.x = x + w / 2.0
        d.bbox.center.position.y = y + h / 2.0
        d.bbox.size_x, d.bbox.size_y = float(w), float(h)
        arr.detections.append(d)
    return arr
