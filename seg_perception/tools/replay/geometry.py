"""seg-replay with depth: publish a bag's depth and camera info beside its frames, score 3D boxes.

When a bag has ``/camera/depth`` (sensor_msgs/Image) and ``/camera/camera_info``, seg-replay
starts the node with ``use_depth`` and these topics remapped, publishes each frame's depth and
camera info (log time <= the frame's) before the frame itself, collects
``segmentation/object_markers`` and, where the bag has ``/camera/objects_gt`` (rendered truth),
scores the CUBE markers with :class:`~seg_perception.geometry_eval.GeometryScore`. ``--offline``
measures the same boxes in-process (:class:`~seg_perception.objects3d.ObjectGeometry` on the
segmenter's output). Bags without depth are untouched by this module; :mod:`.cli` creates a
:class:`GeometryReplay` only for a bag with depth and hands it to :mod:`.offline` or :mod:`.live`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

from ...geometry_eval import GeometryScore, box_of, boxes_from_markers, truths_from_json
from ...stamps import Stamp, stamp_of, stamp_to_ns
from .. import bags

LOG = logging.getLogger("seg_replay")


def has_depth(plan: Any) -> bool:
    """The bag has depth and camera info topics of the right types."""
    t = plan.topics
    none = bags.TopicInfo("", 0)
    return (
        t.get(bags.DEPTH_TOPIC, none).msgtype == bags.IMAGE_TYPE
        and t.get(bags.CAMERA_INFO_TOPIC, none).msgtype == bags.CAMERA_INFO_TYPE
    )


class GeometryReplay:
    """The depth side of one replay (one instance per replay; not shared between threads but its own)."""

    def __init__(self, plan: Any, class_names: list[str], resolve_pairs: bool = True, tolerance_s: float = 0.02):
        from ...depth_sync import StampBuffer

        self.plan = plan
        self.tolerance_ns = int(round(tolerance_s * 1e9))
        self.class_names = class_names
        self.resolve_pairs = resolve_pairs
        self.gt_topic = bags.OBJECTS_GT_TOPIC if bags.OBJECTS_GT_TOPIC in plan.topics else None
        self.score = GeometryScore()
        self._reader = None
        self._iter: Iterator[tuple[str, int, bytes]] | None = None
        self._pending: tuple[str, int, bytes] | None = None
        self._truth: dict[Stamp, list] = {}
        self._preds: dict[Stamp, list] = {}
        self._lock = threading.Lock()
        self._pubs: dict[str, Any] = {}
        self._depth: Any = StampBuffer(8)  # offline: depth images by stamp
        self._info: Any = None
        self._geometry: Any = None
        self.counts = {
            "depth_frames_published": 0,
            "marker_arrays": 0,
            "objects_3d": 0,
            "size_resolved": 0,
            "frames_without_depth": 0,
        }

    @classmethod
    def for_plan(
        cls, plan: Any, class_names: list[str], resolve_pairs: bool = True, tolerance_s: float = 0.02
    ) -> GeometryReplay | None:
        return cls(plan, class_names, resolve_pairs, tolerance_s) if has_depth(plan) else None

    # --- node side
    @staticmethod
    def node_params() -> dict[str, Any]:
        return {"use_depth": True}

    @staticmethod
    def remaps() -> list[str]:
        return [f"depth:={bags.DEPTH_TOPIC}", f"camera_info:={bags.CAMERA_INFO_TOPIC}"]

    # --- the bag, read in step with the camera frames
    def _messages(self) -> Iterator[tuple[str, int, bytes]]:
        self._reader = bags.open_reader(self.plan.bag)
        conns = bags.connections_for(self._reader, [bags.DEPTH_TOPIC, bags.CAMERA_INFO_TOPIC, self.gt_topic])
        for conn, t_ns, raw in self._reader.messages(connections=conns):
            yield conn.topic, int(t_ns), bytes(raw)

    def _advance(self, t_ns: int) -> list[tuple[str, int, bytes]]:
        """Depth / camera info / truth messages logged at or before ``t_ns`` not yet returned."""
        if self._iter is None:
            self._iter = self._messages()
        out = []
        while True:
            item = self._pending if self._pending is not None else next(self._iter, None)
            self._pending = None
            if item is None:
                return out
            if item[1] > t_ns:
                self._pending = item
                return out
            if item[0] == self.gt_topic:
                text = str(bags.deserialize(item[2], bags.STRING_TYPE).data)
                stamp = tuple(json.loads(text)["stamp"])
                with self._lock:
                    self._truth[stamp] = truths_from_json(text)
            else:
                out.append(item)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # --- live: publish depth + info, collect markers
    def attach(self, node: Any, namespace: str = "") -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image
        from visualization_msgs.msg import MarkerArray

        self._pubs[bags.DEPTH_TOPIC] = node.create_publisher(Image, bags.DEPTH_TOPIC, qos_profile_sensor_data)
        self._pubs[bags.CAMERA_INFO_TOPIC] = node.create_publisher(
            CameraInfo, bags.CAMERA_INFO_TOPIC, qos_profile_sensor_data
        )
        ns = f"/{namespace.strip('/')}" if namespace else ""
        node.create_subscription(
            MarkerArray,
            f"{ns}{bags.MARKERS_TOPIC}",
            self._on_markers,
            QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE),
        )

    def before_frame(self, t_ns: int) -> None:
        """Publish the bag's depth and camera info up to the frame's log time (byte for byte)."""
        for topic, _, raw in self._advance(t_ns):
            self._pubs[topic].publish(raw)
            self.counts["depth_frames_published"] += int(topic == bags.DEPTH_TOPIC)

    def _on_markers(self, msg: Any) -> None:
        if not msg.markers:
            return
        h = msg.markers[0].header
        boxes = boxes_from_markers(msg.markers)
        with self._lock:
            self.counts["marker_arrays"] += 1
            self.counts["objects_3d"] += len(boxes)
            self.counts["size_resolved"] += sum(1 for m in msg.markers if "(size:" in str(m.text))
            if self.gt_topic:
                self._preds[(int(h.stamp.sec), int(h.stamp.nanosec))] = boxes

    # --- offline: the same measurement in-process
    def offline_frame(self, stamp: Stamp, t_ns: int, result: Any, seg: Any) -> None:
        from ...depth_sync import DepthError
        from ...objects3d import ObjectGeometry

        for topic, _, raw in self._advance(t_ns):
            if topic == bags.DEPTH_TOPIC:
                msg = bags.deserialize(raw, bags.IMAGE_TYPE)
                self._depth.add(stamp_to_ns(stamp_of(msg)), msg)
            else:
                self._info = bags.deserialize(raw, bags.CAMERA_INFO_TYPE)
        pair = self._depth.match(stamp_to_ns(stamp), self.tolerance_ns)  # as the node pairs them
        if pair is None or self._info is None:
            self.counts["frames_without_depth"] += 1
            return
        depth = pair[1]
        if self._geometry is None:
            self._geometry = ObjectGeometry(self.class_names)
        try:
            out = self._geometry.run(
                depth, self._info, result.labels, result.instances, seg.objects(result), self.resolve_pairs
            )
        except DepthError as e:
            LOG.warning("frame %s: depth not used (%s)", stamp, e)
            return
        with self._lock:
            self.counts["marker_arrays"] += 1
            self.counts["objects_3d"] += len(out.objects)
            self.counts["size_resolved"] += out.resolved
            if self.gt_topic:
                self._preds[stamp] = [box_of(o) for o in out.objects]

    # --- scoring
    def drain(self) -> None:
        """Score every frame that has both boxes and truth."""
        with self._lock:
            for stamp in [s for s in self._preds if s in self._truth]:
                self.score.add(self._preds.pop(stamp), self._truth.pop(stamp))

    def summary(self) -> dict[str, Any]:
        self.drain()
        out: dict[str, Any] = dict(self.counts)
        if self.gt_topic:
            out["accuracy_3d"] = self.score.summary()
        return out
