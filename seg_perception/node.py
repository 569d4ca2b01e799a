"""The ROS 2 shell: a managed (lifecycle) node; messages in, :class:`~seg_perception.pipeline.Segmenter` out.

Lifecycle: *configure* loads and verifies the model and creates the publishers, *activate*
subscribes to the camera, *deactivate* unsubscribes (no inference, the worker idles), *cleanup*
frees the model. With ``autostart`` (default) the node configures and activates itself.
With ``use_depth`` (start-up only) the depth side (:mod:`seg_perception.node_depth`) follows the
same states: its publishers come at configure, its ``depth`` and ``camera_info`` subscriptions
at activate, and each frame's 3D boxes are made after its 2D outputs are published.

Threading: the subscription callback only hands the newest frame to the worker
(:class:`~seg_perception.frame_worker.NewestFrameWorker`; a frame that was still waiting is
dropped and counted); that one thread decodes, runs the model and publishes.
Nothing is queued, so latency stays bounded under load. :func:`main` spins an
:class:`~seg_perception.executor.InlineSubscriptionsExecutor`: the (short) subscription callbacks run
on the spinning thread, the fastest way in for a frame; diagnostics and parameter/lifecycle services
run in a thread pool, each in its own callback group, so loading a model (in a parameter change or
configure) never stalls frame intake or diagnostics; frames keep flowing on the old backend until
the new one is ready.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage, Image

from . import diagnostics
from .backends import BackendError, flip_average_for
from .config import PARAMS, ConfigError, NodeConfig, startup_config
from .encodings import ImageDecodeError, compressed_to_rgb, image_to_rgb
from .executor import InlineSubscriptionsExecutor
from .frame_worker import NewestFrameWorker
from .node_params import RCLPY_PARAMS, coerce_numbers, descriptor_type_of, parameter_descriptor
from .outputs import OutputPublishers, output_qos, reliability_policy
from .pipeline import Segmenter, make_segmenter
from .spin import spin_until_signal
from .stamps import stamp_of, stamp_to_ns
from .stats import Counters, Percentiles, RateMeter, SequenceGaps

_THROTTLE_S = 2.0
_COUNTERS = (
    "received",
    "processed",
    "dropped",
    "missed",
    "rejected",
    "inference_errors",
    "no_backend",
    "publish_errors",
)
_SUCCESS, _FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class SegmentationNode(LifecycleNode):
    def __init__(self, node_name: str = "seg_perception", **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self._init_state()
        self.cfg, self._param_faults = self._declare_parameters()
        self._create_diagnostics()
        self._start_worker()
        if self.cfg.autostart:
            self._autostart()
        else:
            self.get_logger().info("autostart off: waiting for the lifecycle configure transition")

    def _init_state(self) -> None:
        self.counters = Counters(*_COUNTERS)
        self.in_rate, self.out_rate = RateMeter(), RateMeter()
        self.infer_ms, self.total_ms, self.age_ms = Percentiles(), Percentiles(), Percentiles()
        self.frame_ms = Percentiles()
        self._last_age_ms = float("nan")
        self.executor_recoveries = 0  # destroy races the spinning thread survived (seg_perception.spin)
        self._last_frame_t: float | None = None
        self._lifecycle_state = "unconfigured"
        self._backend_fault = ""  # why configure could not load the model
        self._autostart_pending = False  # autostart failed: retry when a parameter change may fix it
        self._retry_timer: Any = None
        self._segmenter: Segmenter | None = None
        self.pubs: OutputPublishers | None = None
        self.depth_side: Any = None  # node_depth.DepthSide with use_depth, between configure and cleanup
        self.sub: Any = None
        self._gaps = SequenceGaps()
        self._internal_set = False
        self._new_class_names: list[str] | None = None

    # --- start-up: parameters --------------------------------------------------------------
    def _declare_parameters(self) -> tuple[NodeConfig, dict[str, str]]:
        """Declare every parameter with its descriptor and the value the node will really use.

        A start-up value that is invalid falls back to its default, alone: the parameter then
        reads the default (what runs) and the reason stays an ERROR in diagnostics until that
        parameter is set to a valid value.
        """
        # rclpy keeps the -p / params-file values here; they are checked before declaring, because
        # a value of the wrong type would otherwise raise out of declare_parameter.
        given = {n: p.value for n, p in self._parameter_overrides.items() if n in PARAMS}
        for name in sorted(set(self._parameter_overrides) - set(PARAMS) - RCLPY_PARAMS):
            if not name.startswith("qos_overrides."):
                self.get_logger().warning(f"unknown parameter {name!r} ignored; valid: {sorted(PARAMS)}")
        cfg, faults = startup_config(given)
        for reason in faults.values():
            self.get_logger().error(f"start-up parameter refused: {reason}")
        for name, value in cfg.as_dict().items():
            self.declare_parameter(name, value, parameter_descriptor(name), ignore_override=True)
        self.declare_parameter(
            "class_names",
            Parameter.Type.STRING_ARRAY,
            ParameterDescriptor(
                description="class names by label id of the loaded model (read-only; empty while no model is loaded)"
            ),
        )
        self._set_class_names([])
        self.add_pre_set_parameters_callback(coerce_numbers)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)
        return cfg, faults

    def _create_diagnostics(self) -> None:
        """/diagnostics in every lifecycle state, on its own callback group."""
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.diag_timer = self.create_timer(
            self.cfg.diagnostics_period_s, self._publish_diagnostics, callback_group=MutuallyExclusiveCallbackGroup()
        )

    def _start_worker(self) -> None:
        self.frames = NewestFrameWorker(self._process, self._on_worker_error)

    def _autostart(self) -> None:
        if self.trigger_configure() == _SUCCESS:
            self.trigger_activate()
        else:
            self._autostart_pending = True

    # --- lifecycle -------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        seg, reason = self._build_segmenter(self.cfg)
        if seg is None:
            self._backend_fault = reason
            return _FAILURE
        self._install_segmenter(seg)
        self._set_class_names(list(seg.classes.names))
        self.pubs = OutputPublishers(self, self.cfg.output_qos_reliability)
        if self.cfg.use_depth:  # 3D boxes: imported only here (geometry_msgs, visualization_msgs)
            from .node_depth import DepthSide

            self.depth_side = DepthSide(self, output_qos(self.cfg.output_qos_reliability))
        self._lifecycle_state = "inactive"
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # enables the lifecycle publishers
        self.frames.resume()
        self._subscribe()
        if self.pubs is not None and self._segmenter is not None:
            self.pubs.publish_label_info(self._segmenter, self.get_clock().now().to_msg())
        self._lifecycle_state = "active"
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_intake()
        self._lifecycle_state = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self._lifecycle_state = "unconfigured"
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self._lifecycle_state = "finalized"
        return super().on_shutdown(state)

    def _subscribe(self) -> None:
        cfg = self.cfg
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=cfg.qos_depth,
            reliability=reliability_policy(cfg.qos_reliability),
            durability=qos_profile_sensor_data.durability,
        )
        msg_type, topic = (CompressedImage, "image/compressed") if cfg.transport == "compressed" else (Image, "image")
        self._last_frame_t = None
        if self.depth_side is not None:  # depth first: the first colour frame finds its depth partner
            self.depth_side.subscribe(MutuallyExclusiveCallbackGroup())
        self._gaps = SequenceGaps()  # frames published while the node was not subscribed are not missed
        self.sub = self.create_subscription(
            msg_type, topic, self._on_image_with_info, qos, callback_group=MutuallyExclusiveCallbackGroup()
        )
        seg = self._segmenter
        self.get_logger().info(
            f"active: subscribed to {self.sub.topic_name} ({cfg.transport}); backend "
            f"{cfg.backend} ({seg.backend.path.name if seg else 'NOT LOADED'})"
        )

    def _stop_intake(self) -> None:
        """Unsubscribe, forget a waiting frame and wait for the frame in flight: no inference after this."""
        if self.sub is not None:
            self.destroy_subscription(self.sub)
            self.sub = None
        self.frames.pause()
        if self.depth_side is not None:  # after the frame in flight: it may still be pairing its depth
            self.depth_side.unsubscribe()

    def _release(self) -> None:
        """Cleanup / shutdown: no subscription, no publishers, no model."""
        self._stop_intake()
        if self.pubs is not None:
            self.pubs.destroy(self)
            self.pubs = None
        if self.depth_side is not None:
            self.depth_side.destroy()
            self.depth_side = None
        self._segmenter = None  # the backend (interpreter / session) goes with its last reference
        self._set_class_names([])

    # --- backend ---------------------------------------------------------------------------
    def _build_segmenter(self, cfg: NodeConfig) -> tuple[Segmenter | None, str]:
        """A verified segmenter for ``cfg``, or None and the reason."""
        try:
            return make_segmenter(cfg), ""
        except BackendError as e:
            self.get_logger().error(f"backend {cfg.backend!r} not loaded: {e}")
            return None, str(e)

    def _install_segmenter(self, seg: Segmenter) -> None:
        self._segmenter = seg  # atomic swap: the worker picks it up on its next frame
        self._backend_fault = ""
        self._autostart_pending = False
        self.get_logger().info(
            f"backend {seg.backend.name} ready: {seg.backend.path.name} "
            f"(sha256 {seg.backend.sha256[:12]}) input {seg.backend.input_hw[1]}x"
            f"{seg.backend.input_hw[0]}, {seg.classes.num_classes} classes ({seg.classes.variant}), "
            f"flip averaging {'on' if seg.flip_average else 'off'}"
        )

    def _set_class_names(self, names: list[str]) -> None:
        self._internal_set = True
        try:
            self.set_parameters([Parameter("class_names", Parameter.Type.STRING_ARRAY, list(names))])
        finally:
            self._internal_set = False

    # --- parameters at runtime -----------------------------------------------------------------
    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        if any(p.name == "class_names" for p in params) and not self._internal_set:
            return SetParametersResult(successful=False, reason="class_names is read-only: the loaded model's classes")
        changes = {p.name: p.value for p in params if p.name in PARAMS}
        if not changes:
            return SetParametersResult(successful=True)
        try:
            new = self.cfg.replace(**changes)
        except ConfigError as e:
            self._restore_descriptor_types(changes)
            self.get_logger().warning(f"rejected parameter change: {e}")
            return SetParametersResult(successful=False, reason=str(e))
        if self._lifecycle_state in ("inactive", "active") and new.backend_key() != self.cfg.backend_key():
            seg, reason = self._build_segmenter(new)  # frames keep flowing on the old backend meanwhile
            if seg is None:
                return SetParametersResult(successful=False, reason=reason)
            self._install_segmenter(seg)
            self._new_class_names = list(seg.classes.names)  # set after this change is stored
        elif self._segmenter is not None:
            self._segmenter.min_object_area = new.min_object_area
            self._segmenter.flip_average = flip_average_for(new.flip_average, new.backend)
        self.cfg = new
        for name in changes:
            self._param_faults.pop(name, None)  # its cause is gone: a valid value is set
        return SetParametersResult(successful=True)

    def _restore_descriptor_types(self, names: Any) -> None:
        """rclpy re-types a dynamically typed descriptor before the callbacks run; a rejected value of
        the wrong type must not change what ``ros2 param describe`` says."""
        for name in names:
            self._descriptors[name].type = descriptor_type_of(getattr(self.cfg, name))

    def _after_set_parameters(self, params: list[Parameter]) -> None:
        if self._new_class_names is not None:
            names, self._new_class_names = self._new_class_names, None
            self._set_class_names(names)
        if self._autostart_pending and any(p.name in PARAMS for p in params) and self._retry_timer is None:
            # autostart failed (e.g. a bad model_path): try again now that a parameter changed
            self._retry_timer = self.create_timer(0.0, self._retry_autostart)

    def _retry_autostart(self) -> None:
        self.destroy_timer(self._retry_timer)
        self._retry_timer = None
        if self._autostart_pending and self._lifecycle_state == "unconfigured":
            self.get_logger().info("retrying autostart after a parameter change")
            self._autostart()

    # --- frames --------------------------------------------------------------------------------
    def _on_image_with_info(self, msg: Any, info: Any) -> None:
        """The subscription's callback: frames the camera sent that never got here are counted as
        ``missed`` (replaced in the DDS input queue before the executor took them, or lost on the way)."""
        gid = (info.get("publisher_gid") or {}).get("data")
        missed = self._gaps.missed(bytes(gid) if gid is not None else None, info.get("publication_sequence_number"))
        if missed:
            self.counters.inc("missed", missed)
        self._on_image(msg)

    def _on_image(self, msg: Any) -> None:
        now = time.monotonic()
        self.counters.inc("received")
        self.in_rate.tick(now)
        self._last_frame_t = now
        if self.frames.offer(msg):
            self.counters.inc("dropped")

    def _on_worker_error(self, e: Exception) -> None:
        self.counters.inc("publish_errors")
        self.get_logger().error(
            f"unexpected error on a frame: {type(e).__name__}: {e}", throttle_duration_sec=_THROTTLE_S
        )

    def _decode(self, msg: Any) -> Any | None:
        try:
            if isinstance(msg, CompressedImage):
                return compressed_to_rgb(msg, self.cfg.max_image_pixels)
            return image_to_rgb(msg, self.cfg.max_image_pixels)
        except ImageDecodeError as e:
            self.counters.inc("rejected")
            sec, nsec = stamp_of(msg)
            self.get_logger().error(f"rejected frame (stamp {sec}.{nsec:09d}): {e}", throttle_duration_sec=_THROTTLE_S)
            return None

    def _process(self, msg: Any) -> None:
        t_start = time.perf_counter()
        rgb = self._decode(msg)
        if rgb is None:
            return
        seg, pubs, depth = self._segmenter, self.pubs, self.depth_side
        if seg is None or pubs is None:
            self.counters.inc("no_backend")
            self.get_logger().error(
                f"no backend loaded ({self._backend_fault or self._lifecycle_state}); frame skipped",
                throttle_duration_sec=_THROTTLE_S,
            )
            return
        try:
            res = seg.run(rgb, want_confidence=pubs.wants_confidence())
        except Exception as e:  # noqa: BLE001 - a backend fault skips the frame, not the node
            self.counters.inc("inference_errors")
            self.get_logger().error(
                f"inference failed ({seg.backend.name}): {type(e).__name__}: {e}", throttle_duration_sec=_THROTTLE_S
            )
            return
        cfg = self.cfg
        pubs.publish(seg, rgb, res, msg.header, cfg.overlay_alpha)
        boxes = None
        if depth is not None:  # use_depth: 3D boxes from the paired depth image, after the 2D outputs
            boxes = depth.process(msg.header, res, seg, cfg.depth_sync_tolerance_s, cfg.resolve_size_pairs)
        pubs.publish_detections(seg, res, msg.header, boxes)
        self._record_timing(msg, res, t_start)

    def _record_timing(self, msg: Any, res: Any, t_start: float) -> None:
        self.frame_ms.add(1e3 * (time.perf_counter() - t_start))
        age = (self.get_clock().now().nanoseconds - stamp_to_ns(stamp_of(msg))) / 1e6
        self._last_age_ms = age
        self.age_ms.add(age)
        self.infer_ms.add(res.infer_ms)
        self.total_ms.add(res.total_ms)
        self.counters.inc("processed")
        self.out_rate.tick()

    # --- diagnostics ---------------------------------------------------------------------------
    def health(self) -> diagnostics.Health:
        """Everything diagnostics report, as plain values."""
        seg, depth = self._segmenter, self.depth_side
        refused = list(self._param_faults.values())  # a copy: a parameter change (another thread) may clear one
        faults = tuple(f"start-up value refused: {r}" for r in refused)
        if self._backend_fault:
            faults += (f"backend fault: {self._backend_fault}",)
        now = time.monotonic()
        last = self._last_frame_t
        return diagnostics.Health(
            lifecycle_state=self._lifecycle_state,
            faults=faults,
            backend=seg.backend.name if seg else self.cfg.backend,
            model_file=seg.backend.path.name if seg else "",
            model_sha256=seg.backend.sha256 if seg else "",
            flip_average=seg.flip_average if seg else None,
            seconds_since_last_frame=(now - last) if last is not None else None,
            stall_timeout_s=self.cfg.stall_timeout_s,
            counters=self.counters.snapshot(),
            input_rate_hz=self.in_rate.rate(now),
            processed_rate_hz=self.out_rate.rate(now),
            inference_ms=self.infer_ms.get(50, 95, 99),
            pipeline_ms=self.total_ms.get(50, 95),
            frame_ms=self.frame_ms.get(50, 95, 99),
            output_age_ms=self.age_ms.get(50, 95),
            last_output_age_ms=self._last_age_ms,
            executor_recoveries=self.executor_recoveries,
            depth=depth.health() if depth is not None else None,
        )

    def diagnostics_status(self) -> DiagnosticStatus:
        level, message, values = diagnostics.status(self.health())
        st = DiagnosticStatus()
        st.name = f"{self.get_name()}: segmentation"
        st.hardware_id = values["backend"]
        st.level = bytes([level])
        st.message = message
        st.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        return st

    def _publish_diagnostics(self) -> None:
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [self.diagnostics_status()]
        self.pub_diag.publish(arr)

    def executor_recovered(self, error: BaseException) -> None:
        """spin_until_signal survived rclpy's destroy race (a lifecycle transition mid-wait)."""
        self.executor_recoveries += 1
        self.get_logger().warning(
            f"executor wait interrupted by a destroyed entity ({error}); spinning resumed",
            throttle_duration_sec=_THROTTLE_S,
        )

    # --- shutdown ------------------------------------------------------------------------------
    def stop_worker(self) -> None:
        """Finish the frame in flight and end the worker: called before the context goes, so nothing
        publishes on a dead context."""
        self.frames.stop()

    def destroy_node(self) -> None:
        self.stop_worker()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    # No rclpy signal handler: it would invalidate the context while the worker may be publishing.
    # spin_until_signal stops the worker first, then the executor, then the node and the context go.
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # until spinning: as Ctrl-C
    node = None
    try:
        node = SegmentationNode()
        executor = InlineSubscriptionsExecutor(num_threads=4)
        executor.add_node(node)
        spin_until_signal(executor, stop_first=node.stop_worker, on_recovered=node.executor_recovered)
    except KeyboardInterrupt:  # a signal while the model was still loading
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
