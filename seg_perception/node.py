"""The ROS 2 shell: messages in, :class:`~seg_perception.pipeline.Segmenter` out.

Threading: the subscription callback only stores the newest frame (a frame that
was still waiting is dropped and counted); one worker thread decodes, runs the
model and publishes. Nothing is queued, so latency stays bounded under load.
"""
from __future__ import annotations

import array
import threading
import time
from typing import Any, List, Optional

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)
from sensor_msgs.msg import CompressedImage, Image

from .backends import BackendError
from .config import DESCRIPTIONS, ConfigError, NodeConfig
from .encodings import ImageDecodeError, compressed_to_rgb, image_to_rgb
from .object_msgs import detections_2d
from .pipeline import Segmenter, make_segmenter
from .stats import Counters, Percentiles, RateMeter

try:  # only in a ROS distro; the pip wheels have no vision_msgs
    import vision_msgs.msg as vision_msgs
    from vision_msgs.msg import Detection2DArray, LabelInfo, VisionClass
except ImportError:  # pragma: no cover - depends on the install
    Detection2DArray = None

# Changing these needs a new subscription: rejected at runtime with this reason.
_RESTART_ONLY = ("transport", "qos_reliability", "qos_depth", "diagnostics_period_s", "use_depth")
_THROTTLE_S = 2.0


def fill_image(msg: Image, arr: np.ndarray, encoding: str, header: Any) -> Image:
    """numpy (mono8 / mono16 / rgb8) -> sensor_msgs/Image with the input's header."""
    arr = np.ascontiguousarray(arr)
    msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(arr.strides[0])
    data = array.array("B")
    data.frombytes(arr.tobytes())
    msg.data = data  # array('B') skips rclpy's per-element check
    return msg


class SegmentationNode(Node):
    def __init__(self, **kwargs: Any):
        super().__init__("seg_perception", **kwargs)
        defaults = NodeConfig()
        for name, value in defaults.as_dict().items():
            self.declare_parameter(name, value, ParameterDescriptor(description=DESCRIPTIONS[name]))
        values = {n: self.get_parameter(n).value for n in defaults.as_dict()}
        self.counters = Counters("received", "processed", "dropped", "rejected", "inference_errors",
                                 "no_backend", "publish_errors")
        self.in_rate, self.out_rate = RateMeter(), RateMeter()
        self.infer_ms, self.total_ms, self.age_ms = Percentiles(), Percentiles(), Percentiles()
        self._last_age_ms = float("nan")
        self._last_frame_t: Optional[float] = None
        self._fault = ""  # backend fault
        self._config_fault = ""  # start-up parameters that failed validation
        self._segmenter: Optional[Segmenter] = None
        try:
            self.cfg = NodeConfig.from_dict(values)
        except ConfigError as e:
            # A bad launch value must not kill the node: run on defaults, report the fault.
            self.get_logger().error(f"invalid parameters ({e}); using defaults for everything")
            self.cfg = defaults
            self._config_fault = f"invalid parameters, running on defaults: {e}"
        self._load_backend(self.cfg)
        self.declare_parameter("class_names", list(self._class_names()),
                               ParameterDescriptor(description="class names by label id", read_only=True))

        self._cond = threading.Condition()
        self._pending: Optional[Any] = None
        self._stop = False

        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_labels = self.create_publisher(Image, "segmentation/labels", out_qos)
        self.pub_instances = self.create_publisher(Image, "segmentation/instances", out_qos)
        self.pub_overlay = self.create_publisher(Image, "segmentation/overlay", out_qos)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.pub_det = self.pub_label_info = None
        if Detection2DArray is not None:
            self.pub_det = self.create_publisher(Detection2DArray, "segmentation/detections", out_qos)
            latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                                 reliability=ReliabilityPolicy.RELIABLE)
            self.pub_label_info = self.create_publisher(LabelInfo, "segmentation/label_info", latched)
            self._publish_label_info()
        else:
            self.get_logger().info("vision_msgs not installed: /segmentation/detections and label_info are off")
        # --- depth (use_depth): 3D boxes, seg_perception.node_depth
        self.depth_side = None
        if self.cfg.use_depth:
            from .node_depth import DepthSide

            self.depth_side = DepthSide(self, out_qos)

        in_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.cfg.qos_depth,
                            reliability=(ReliabilityPolicy.BEST_EFFORT if self.cfg.qos_reliability == "best_effort"
                                         else ReliabilityPolicy.RELIABLE),
                            durability=qos_profile_sensor_data.durability)
        if self.cfg.transport == "compressed":
            self.sub = self.create_subscription(CompressedImage, "image/compressed", self._on_image, in_qos)
        else:
            self.sub = self.create_subscription(Image, "image", self._on_image, in_qos)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.diag_timer = self.create_timer(self.cfg.diagnostics_period_s, self._publish_diagnostics)
        self._worker = threading.Thread(target=self._work, name="seg_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"subscribed to {self.sub.topic_name} ({self.cfg.transport}); backend {self.cfg.backend}"
            + (f" ({self._segmenter.backend.path.name})" if self._segmenter else " (NOT LOADED)"))

    # --- backend ---------------------------------------------------------------------
    def _class_names(self) -> List[str]:
        return list(self._segmenter.classes.names) if self._segmenter else []

    def _load_backend(self, cfg: NodeConfig) -> Optional[str]:
        """Swap in a new segmenter; on failure keep the old one and return the reason."""
        try:
            seg = make_segmenter(cfg)
        except BackendError as e:
            reason = str(e)
            self.get_logger().error(f"backend {cfg.backend!r} not loaded: {reason}")
            if self._segmenter is None:
                self._fault = reason
            return reason
        self._segmenter = seg  # atomic swap: the worker picks it up on its next frame
        self._fault = ""
        self.get_logger().info(f"backend {cfg.backend} ready: {seg.backend.path.name} "
                               f"input {seg.backend.input_hw[1]}x{seg.backend.input_hw[0]}, "
                               f"{seg.classes.num_classes} classes ({seg.classes.variant})")
        return None

    def _on_set_parameters(self, params: List[rclpy.parameter.Parameter]) -> SetParametersResult:
        changes = {p.name: p.value for p in params if p.name != "class_names"}
        restart = [n for n in _RESTART_ONLY if n in changes and changes[n] != getattr(self.cfg, n)]
        if restart:
            return SetParametersResult(successful=False, reason=f"{restart} can only be set at start-up")
        try:
            new = self.cfg.replace(**changes)
        except ConfigError as e:
            self.get_logger().warning(f"rejected parameter change: {e}")
            return SetParametersResult(successful=False, reason=str(e))
        if new.backend_key() != self.cfg.backend_key() or self._segmenter is None:
            reason = self._load_backend(new)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        elif self._segmenter is not None:
            self._segmenter.min_object_area = new.min_object_area
        self.cfg = new
        self._config_fault = ""
        return SetParametersResult(successful=True)

    # --- frames ----------------------------------------------------------------------
    def _on_image(self, msg: Any) -> None:
        now = time.monotonic()
        self.counters.inc("received")
        self.in_rate.tick(now)
        with self._cond:
            if self._pending is not None:
                self.counters.inc("dropped")
            self._pending = msg
            self._last_frame_t = now
            self._cond.notify()

    def _work(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stop:
                    self._cond.wait(0.5)
                if self._stop:
                    return
                msg, self._pending = self._pending, None
            try:
                self._process(msg)
            except Exception as e:  # noqa: BLE001 - the worker must survive anything
                self.counters.inc("publish_errors")
                self.get_logger().error(f"unexpected error on a frame: {type(e).__name__}: {e}",
                                        throttle_duration_sec=_THROTTLE_S)

    def _process(self, msg: Any) -> None:
        try:
            if isinstance(msg, CompressedImage):
                rgb = compressed_to_rgb(msg, self.cfg.max_image_pixels)
            else:
                rgb = image_to_rgb(msg, self.cfg.max_image_pixels)
        except ImageDecodeError as e:
            self.counters.inc("rejected")
            self.get_logger().error(f"rejected frame (stamp {msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}): "
                                    f"{e}", throttle_duration_sec=_THROTTLE_S)
            return
        seg = self._segmenter
        if seg is None:
            self.counters.inc("no_backend")
            self.get_logger().error(f"no backend loaded ({self._fault}); frame skipped",
                                    throttle_duration_sec=_THROTTLE_S)
            return
        want_det = self.pub_det is not None and self.pub_det.get_subscription_count() > 0
        try:
            res = seg.run(rgb, want_confidence=want_det)
        except Exception as e:  # noqa: BLE001 - a backend fault skips the frame, not the node
            self.counters.inc("inference_errors")
            self.get_logger().error(f"inference failed ({seg.backend.name}): {type(e).__name__}: {e}",
                                    throttle_duration_sec=_THROTTLE_S)
            return
        header = msg.header
        self.pub_labels.publish(fill_image(Image(), res.labels, "mono8", header))
        self.pub_instances.publish(fill_image(Image(), res.instances, "mono16", header))
        if self.pub_overlay.get_subscription_count() > 0:
            self.pub_overlay.publish(fill_image(Image(), seg.overlay(rgb, res, self.cfg.overlay_alpha), "rgb8",
                                                header))
        boxes = None
        if self.depth_side is not None:  # use_depth: 3D boxes from the paired depth image, after the 2D outputs
            boxes = self.depth_side.process(header, res, seg, self.cfg.depth_sync_tolerance_s,
                                            self.cfg.resolve_size_pairs)
        if want_det:
            self._publish_detections(seg, res, header, boxes)
        now_ns = self.get_clock().now().nanoseconds
        age = (now_ns - (header.stamp.sec * 1_000_000_000 + header.stamp.nanosec)) / 1e6
        self._last_age_ms = age
        self.age_ms.add(age)
        self.infer_ms.add(res.infer_ms)
        self.total_ms.add(res.total_ms)
        self.counters.inc("processed")
        self.out_rate.tick()

    def _publish_detections(self, seg: Segmenter, res: Any, header: Any,
                            boxes: Optional[dict] = None) -> None:  # pragma: no cover - distro only
        # class_id: the numeric id as a string, as in LabelInfo (object_msgs.detections_2d)
        self.pub_det.publish(detections_2d(seg.objects(res), header, vision_msgs, boxes))

    def _publish_label_info(self) -> None:  # pragma: no cover - distro only
        info = LabelInfo()
        info.header.stamp = self.get_clock().now().to_msg()
        for i, name in enumerate(self._class_names()):
            vc = VisionClass()
            vc.class_id, vc.class_name = i, name
            info.class_map.append(vc)
        info.threshold = 0.0
        self.pub_label_info.publish(info)

    # --- diagnostics -----------------------------------------------------------------
    def diagnostics_status(self) -> DiagnosticStatus:
        c = self.counters.snapshot()
        now = time.monotonic()
        st = DiagnosticStatus()
        st.name = f"{self.get_name()}: segmentation"
        seg = self._segmenter
        st.hardware_id = seg.backend.name if seg else self.cfg.backend
        level, messages = DiagnosticStatus.OK, []
        for fault in (self._config_fault, self._fault and f"backend fault: {self._fault}"):
            if fault:
                level = DiagnosticStatus.ERROR
                messages.append(fault)
        stalled_for = (now - self._last_frame_t) if self._last_frame_t is not None else None
        if stalled_for is not None and stalled_for > self.cfg.stall_timeout_s:
            level = max(level, DiagnosticStatus.WARN)
            messages.append(f"camera stall: no frame for {stalled_for:.1f} s")
        elif self._last_frame_t is None:
            messages.append("waiting for the first frame")
        depth_values: dict = {}
        if self.depth_side is not None:  # use_depth: its counters; a frame without usable depth is a WARN
            depth_problem, depth_values = self.depth_side.diagnostics()
            if depth_problem:
                level = max(level, DiagnosticStatus.WARN)
                messages.append(depth_problem)
        st.level = level
        st.message = "; ".join(messages) or "ok"
        inf = self.infer_ms.get(50, 95, 99)
        tot = self.total_ms.get(50, 95)
        age = self.age_ms.get(50, 95)
        values = {
            "backend": st.hardware_id,
            "model_file": seg.backend.path.name if seg else "",
            "model_sha256": seg.backend.sha256 if seg else "",
            "input_rate_hz": f"{self.in_rate.rate(now):.2f}",
            "processed_rate_hz": f"{self.out_rate.rate(now):.2f}",
            "inference_ms_p50": f"{inf[50]:.2f}", "inference_ms_p95": f"{inf[95]:.2f}",
            "inference_ms_p99": f"{inf[99]:.2f}",
            "pipeline_ms_p50": f"{tot[50]:.2f}", "pipeline_ms_p95": f"{tot[95]:.2f}",
            "output_age_ms_last": f"{self._last_age_ms:.2f}",
            "output_age_ms_p50": f"{age[50]:.2f}", "output_age_ms_p95": f"{age[95]:.2f}",
            "seconds_since_last_frame": f"{stalled_for:.2f}" if stalled_for is not None else "inf",
            **{f"frames_{k}": str(v) for k, v in c.items()},
            **depth_values,
        }
        st.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        return st

    def _publish_diagnostics(self) -> None:
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [self.diagnostics_status()]
        self.pub_diag.publish(arr)

    def destroy_node(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._worker.join(timeout=2.0)
        super().destroy_node()


def main(args: Optional[List[str]] = None) -> None:
    rclpy.init(args=args)
    node = SegmentationNode()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    main()
