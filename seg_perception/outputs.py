"""The node's output topics, as lifecycle publishers (silent while the node is inactive).

``OutputPublishers.publish`` turns one :class:`~seg_perception.pipeline.SegResult` into messages:
labels (mono8) and instances (mono16) always, the overlay only while someone subscribes;
``publish_detections`` (after the 3D boxes, when the node has depth) and ``publish_label_info`` send
vision_msgs detections / label info where vision_msgs is importable (a ROS distro).
"""

from __future__ import annotations

from typing import Any

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from .encodings import fill_image
from .object_msgs import detections_2d
from .pipeline import Segmenter

try:  # only in a ROS distro; the pip wheels have no vision_msgs
    import vision_msgs.msg as vision_msgs
    from vision_msgs.msg import Detection2DArray, LabelInfo, VisionClass
except ImportError:  # pragma: no cover - depends on the install
    Detection2DArray = None


def reliability_policy(name: str) -> ReliabilityPolicy:
    """``best_effort`` / ``reliable`` (config values) -> the QoS policy."""
    return ReliabilityPolicy.BEST_EFFORT if name == "best_effort" else ReliabilityPolicy.RELIABLE


def output_qos(reliability: str) -> QoSProfile:
    """QoS of every per-frame output (``output_qos_reliability``), 3D ones included."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=reliability_policy(reliability))


class OutputPublishers:
    """The node's output topics; created at configure, destroyed at cleanup."""

    def __init__(self, node: Any, reliability: str):
        qos = output_qos(reliability)
        self.labels = node.create_lifecycle_publisher(Image, "segmentation/labels", qos)
        self.instances = node.create_lifecycle_publisher(Image, "segmentation/instances", qos)
        self.overlay = node.create_lifecycle_publisher(Image, "segmentation/overlay", qos)
        self.detections = self.label_info = None
        if Detection2DArray is not None:  # pragma: no cover - distro only
            self.detections = node.create_lifecycle_publisher(Detection2DArray, "segmentation/detections", qos)
            latched = QoSProfile(
                depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE
            )
            self.label_info = node.create_lifecycle_publisher(LabelInfo, "segmentation/label_info", latched)

    def all(self) -> list[Any]:
        return [p for p in (self.labels, self.instances, self.overlay, self.detections, self.label_info) if p]

    def destroy(self, node: Any) -> None:
        for p in self.all():
            node.destroy_lifecycle_publisher(p)

    def wants_confidence(self) -> bool:
        """Per-pixel confidence is computed only for a detections subscriber."""
        return self.detections is not None and self.detections.get_subscription_count() > 0

    def publish(self, seg: Segmenter, rgb: Any, res: Any, header: Any, overlay_alpha: float) -> None:
        """The image outputs of one frame, with the input's header."""
        self.labels.publish(fill_image(Image(), res.labels, "mono8", header))
        self.instances.publish(fill_image(Image(), res.instances, "mono16", header))
        if self.overlay.get_subscription_count() > 0:
            self.overlay.publish(fill_image(Image(), seg.overlay(rgb, res, overlay_alpha), "rgb8", header))

    def publish_detections(self, seg: Segmenter, res: Any, header: Any, boxes: dict | None = None) -> None:
        """Detection2DArray while someone subscribes; ``class_id`` the numeric id as in LabelInfo, and
        ``boxes`` (instance id -> 3D box, with depth) give the measured pose and size-resolved class."""
        if self.wants_confidence():  # pragma: no cover - distro only
            self.detections.publish(detections_2d(seg.objects(res), header, vision_msgs, boxes))

    def publish_label_info(self, seg: Segmenter, stamp: Any) -> None:
        """vision_msgs LabelInfo (latched): the class names by id, at activation."""
        if self.label_info is None:
            return
        info = LabelInfo()  # pragma: no cover - distro only
        info.header.stamp = stamp
        for i, name in enumerate(seg.classes.names):
            vc = VisionClass()
            vc.class_id, vc.class_name = i, name
            info.class_map.append(vc)
        info.threshold = 0.0
        self.label_info.publish(info)
