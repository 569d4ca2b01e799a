"""The node's depth side (rclpy): ``depth`` and ``camera_info`` in, 3D boxes out.

Created by the node only with ``use_depth``, and following its lifecycle: the publishers are
lifecycle publishers made at configure (:class:`DepthSide`), the subscriptions are made at activate
(:meth:`DepthSide.subscribe`) and destroyed at deactivate (:meth:`DepthSide.unsubscribe`), and
cleanup destroys the rest (:meth:`DepthSide.destroy`). The subscription callbacks only file messages by
stamp (:class:`~seg_perception.depth_sync.StampBuffer`); the node's worker calls
:meth:`DepthSide.process` after it has published a frame's 2D outputs. The frame is paired with
the depth image of its stamp (or the nearest within ``depth_sync_tolerance_s``; it waits at most
:data:`WAIT_S` for one still on its way) and with the camera info of its stamp, else the latest.
A frame without a partner, without camera info, or with depth that cannot be used (encoding,
size, data, camera info) gets no 3D output; each case is counted, logged (throttled) and shown
in diagnostics (:meth:`DepthSide.health`, a :class:`~seg_perception.diagnostics.DepthHealth`),
and the node keeps going.

Outputs (header = the colour frame's; poses in its optical frame), in this order:
``segmentation/object_poses`` (geometry_msgs/PoseArray), ``segmentation/detections_3d``
(Detection3DArray, where vision_msgs is importable, while someone subscribes) and
``segmentation/object_markers`` (visualization_msgs/MarkerArray, while someone subscribes: RViz).
"""

from __future__ import annotations

from typing import Any

from geometry_msgs.msg import PoseArray
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from visualization_msgs.msg import MarkerArray

from .depth_sync import REASONS, DepthError, StampBuffer, stamp_ns
from .diagnostics import DepthHealth
from .geometry import Object3D
from .object_msgs import MarkerArrayBuilder, detections_3d, object_poses
from .objects3d import ObjectGeometry
from .stats import Counters, Percentiles

try:  # only in a ROS distro
    import vision_msgs.msg as vision_msgs
except ImportError:  # pragma: no cover - depends on the install
    vision_msgs = None

WAIT_S = 0.03  # after inference, a frame waits at most this long for a depth image still on its way
_THROTTLE_S = 2.0
COUNTERS = (
    "depth_received",
    "camera_info_received",
    "frames_3d",
    "frames_no_depth",
    "frames_no_camera_info",
    *(f"depth_rejected_{r}" for r in REASONS),
    "objects_3d",
    "objects_no_pose",
    "size_resolved",
    "geometry_errors",
)


class DepthSide:
    def __init__(self, node: Any, out_qos: QoSProfile):
        """Configure: the 3D output publishers (``out_qos``: the node's output QoS); no subscription yet."""
        self.node = node
        self.counters = Counters(*COUNTERS)
        self.geometry_ms = Percentiles()
        self.depth: StampBuffer = StampBuffer(8)
        self.info: StampBuffer = StampBuffer(4)
        self.last_problem = ""
        self._geometry: ObjectGeometry | None = None
        self.sub_depth: Any = None
        self.sub_info: Any = None
        self._markers = MarkerArrayBuilder()  # refilled for every frame
        self.pub_markers = node.create_lifecycle_publisher(MarkerArray, "segmentation/object_markers", out_qos)
        self.pub_poses = node.create_lifecycle_publisher(PoseArray, "segmentation/object_poses", out_qos)
        self.pub_det3d = (
            node.create_lifecycle_publisher(vision_msgs.Detection3DArray, "segmentation/detections_3d", out_qos)
            if vision_msgs is not None
            else None
        )

    def subscribe(self, callback_group: Any = None) -> None:
        """Activate: ``depth`` and ``camera_info`` (best effort: matches reliable and best-effort cameras)."""
        in_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
        node = self.node
        self.sub_depth = node.create_subscription(Image, "depth", self._on_depth, in_qos, callback_group=callback_group)
        self.sub_info = node.create_subscription(
            CameraInfo, "camera_info", self._on_info, in_qos, callback_group=callback_group
        )
        node.get_logger().info(
            f"depth on: {self.sub_depth.topic_name} + {self.sub_info.topic_name} -> "
            f"{self.pub_markers.topic_name}, {self.pub_poses.topic_name}"
            + ("" if self.pub_det3d else " (vision_msgs not installed: no detections_3d)")
        )

    def unsubscribe(self) -> None:
        """Deactivate: no depth intake; the buffered images go (they pair with no later frame) and the
        last frame's problem with them (an inactive node has no frames to warn about)."""
        for sub in (self.sub_depth, self.sub_info):
            if sub is not None:
                self.node.destroy_subscription(sub)
        self.sub_depth = self.sub_info = None
        self.depth, self.info = StampBuffer(8), StampBuffer(4)
        self.last_problem = ""

    def destroy(self) -> None:
        """Cleanup / shutdown: subscriptions and publishers gone."""
        self.unsubscribe()
        for pub in (self.pub_markers, self.pub_poses, self.pub_det3d):
            if pub is not None:
                self.node.destroy_lifecycle_publisher(pub)
        self.pub_markers = self.pub_poses = self.pub_det3d = None

    def _on_depth(self, msg: Any) -> None:
        self.counters.inc("depth_received")
        self.depth.add(stamp_ns(msg.header.stamp), msg)

    def _on_info(self, msg: Any) -> None:
        self.counters.inc("camera_info_received")
        self.info.add(stamp_ns(msg.header.stamp), msg)

    def _problem(self, counter: str, text: str) -> None:
        self.counters.inc(counter)
        self.last_problem = text
        self.node.get_logger().error(text, throttle_duration_sec=_THROTTLE_S)

    def process(
        self, header: Any, res: Any, seg: Any, tolerance_s: float, resolve_pairs: bool
    ) -> dict[int, Object3D] | None:
        """3D boxes of a frame's objects, published; None (counted) when the frame has no usable depth."""
        stamp = stamp_ns(header.stamp)
        tol = int(round(tolerance_s * 1e9))
        pair = self.depth.wait_match(stamp, tol, WAIT_S)
        when = f"{header.stamp.sec}.{header.stamp.nanosec:09d}"
        if pair is None:
            newest = self.depth.newest()
            gap = f"nearest depth {abs(newest[0] - stamp) / 1e9:.3f} s away" if newest else "no depth image received"
            self._problem(
                "frames_no_depth",
                f"frame {when}: no depth image within depth_sync_tolerance_s={tolerance_s} ({gap}); 2D outputs only",
            )
            return None
        info = self.info.match(stamp, tol) or self.info.newest()  # camera info rarely changes: the latest will do
        if info is None:
            self._problem("frames_no_camera_info", f"frame {when}: no camera info received yet; 2D outputs only")
            return None
        names = tuple(seg.classes.names)
        if self._geometry is None or tuple(self._geometry.class_names) != names:
            self._geometry = ObjectGeometry(names)
        try:
            out = self._geometry.run(
                pair[1],
                info[1],
                res.labels,
                res.instances,
                None,
                resolve_pairs,
                res.scores,
                res.scores_quant,
                coarse=res.coarse_instances,
            )
        except DepthError as e:
            self._problem(f"depth_rejected_{e.reason}", f"frame {when}: depth not used: {e}")
            return None
        except Exception as e:  # noqa: BLE001 - a geometry fault costs the 3D outputs of one frame, not the node
            self._problem("geometry_errors", f"frame {when}: 3D boxes failed: {type(e).__name__}: {e}")
            return None
        # poses first (what planners read); the RViz markers only while someone subscribes, like the
        # overlay: for four objects they take ~0.7 ms to build and send
        self.pub_poses.publish(object_poses(out.objects, header))
        if self.pub_det3d is not None and self.pub_det3d.get_subscription_count() > 0:  # pragma: no cover - distro
            self.pub_det3d.publish(detections_3d(out.objects, header, vision_msgs))
        if self.pub_markers.get_subscription_count() > 0:
            self.pub_markers.publish(self._markers(out.objects, header, seg.classes.palette()))
        self.counters.inc("frames_3d")
        self.counters.inc("objects_3d", len(out.objects))
        self.counters.inc("objects_no_pose", len(out.no_pose))
        self.counters.inc("size_resolved", out.resolved)
        self.geometry_ms.add(out.ms)
        self.last_problem = ""
        return {o.instance_id: o for o in out.objects}

    def health(self) -> DepthHealth:
        """What diagnostics report of the depth side, as plain values."""
        return DepthHealth(
            problem=self.last_problem, counters=self.counters.snapshot(), geometry_ms=self.geometry_ms.get(50, 95)
        )
