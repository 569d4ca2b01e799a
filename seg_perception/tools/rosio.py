"""DDS plumbing shared by the demo, replay, benchmark and tests (needs rclpy).

* :func:`dds_env` – the environment that keeps DDS on this machine and carries frames
  through the shipped shared-memory Fast DDS profile.
* :class:`NodeProcess` – the segmentation node in its own process.
* :class:`StreamClient` – publishes camera frames and collects the node's outputs.
* :func:`frozen_heap` – keeps the measuring process's garbage collector out of its timings.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..encodings import fill_image
from ..manifest import default_models_dir
from ..stamps import Stamp, stamp_of


def fastdds_profile() -> Path:
    here = Path(__file__).resolve().parents[2] / "config" / "fastdds_shm.xml"
    if here.is_file():
        return here
    return default_models_dir().parent / "config" / "fastdds_shm.xml"


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep this process's garbage collector from pausing a timed stretch.

    A full collection scans every tracked object; in a process that has imported torch (a test
    session) one took 116 ms here, and the outputs that waited for it were timed as late as if the
    node had been slow. The objects alive now leave the collector's view (``gc.freeze``) for the
    block; the ones made inside it are still collected."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def dds_env(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(fastdds_profile()))
    return env


def apply_dds_env() -> None:
    """Set the DDS environment in this process (before rclpy.init)."""
    os.environ.update(dds_env())


class NodeProcess:
    """``python -m seg_perception.node --ros-args -p k:=v ...`` with output to a log file."""

    def __init__(
        self, params: dict[str, object], log_path: Path, remap: Sequence[str] = (), ros_args: Sequence[str] = ()
    ):
        args = [sys.executable, "-m", "seg_perception.node", "--ros-args", *ros_args]
        for k, v in params.items():
            args += ["-p", f"{k}:={v}"]
        for r in remap:
            args += ["-r", r]
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "w")
        root = Path(__file__).resolve().parents[2]
        env = dds_env()
        env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Received:
    labels: dict[Stamp, tuple[float, object]] = field(default_factory=dict)  # stamp -> (t_recv, msg)
    instances: dict[Stamp, tuple[float, object]] = field(default_factory=dict)
    overlays: dict[Stamp, tuple[float, object]] = field(default_factory=dict)
    diagnostics: list[object] = field(default_factory=list)


def image_msg(rgb: np.ndarray, stamp: Stamp, frame_id: str, encoding: str = "rgb8"):
    """An rclpy sensor_msgs/Image of ``rgb`` with the given stamp and frame."""
    from sensor_msgs.msg import Image

    msg = fill_image(Image(), rgb, encoding)
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    msg.header.frame_id = frame_id
    return msg


def camera_info_msg(cam: Any, stamp: Stamp, frame_id: str):
    """An rclpy sensor_msgs/CameraInfo of a :class:`~seg_perception.geometry.CameraModel` (K only)."""
    from sensor_msgs.msg import CameraInfo

    m = CameraInfo()
    m.header.stamp.sec, m.header.stamp.nanosec = stamp
    m.header.frame_id = frame_id
    m.width, m.height = cam.width, cam.height
    m.k = [float(v) for v in cam.k().reshape(-1)]
    return m


def msg_to_array(msg) -> np.ndarray:
    """mono8 / mono16 / rgb8 output Image -> numpy (honours step)."""
    dt = np.dtype("<u2") if msg.encoding == "mono16" else np.dtype(np.uint8)
    ch = 3 if msg.encoding == "rgb8" else 1
    raw = np.frombuffer(memoryview(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)
    row = raw[:, : msg.width * ch * dt.itemsize].copy()
    arr = row.view(dt).reshape(msg.height, msg.width, ch)
    return arr[:, :, 0] if ch == 1 else arr


def arrival_time(info: dict) -> float:
    """When a message reached this process (seconds, system clock): the middleware's reception time
    from the subscription's MessageInfo, not the time the callback ran. The callback runs 0.3-0.5 ms
    later, and later still behind another output's callback, which once put a frame's markers before
    its poses though the node sends the poses first. Falls back to now where the RMW gives no time."""
    ns = int(info.get("received_timestamp", 0) or 0)
    return ns / 1e9 if ns > 0 else time.time()


class StreamClient:
    """One rclpy node in this process: camera publisher + output collector, spun in a thread."""

    def __init__(
        self, image_topic: str = "/image", namespace: str = "", overlays: bool = False, name: str = "seg_stream_client"
    ):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import Image

        apply_dds_env()
        self._rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.received = Received()
        self._lock = threading.Lock()
        self.pub = self.node.create_publisher(Image, image_topic, qos_profile_sensor_data)
        qos = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
        ns = f"/{namespace.strip('/')}" if namespace else ""
        outputs = [("labels", self.received.labels), ("instances", self.received.instances)]
        if overlays:
            outputs.append(("overlay", self.received.overlays))
        for topic, into in outputs:
            # raw, timed by the middleware's reception time: latencies are the node's and the
            # transport's, not this Python client's scheduling and decoding
            self.node.create_subscription(Image, f"{ns}/segmentation/{topic}", self._store(into), qos, raw=True)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self._stop = False
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _store(self, into: dict[Stamp, tuple[float, object]]):
        from rclpy.serialization import deserialize_message
        from sensor_msgs.msg import Image

        def cb(raw: bytes, info: dict) -> None:
            t = arrival_time(info)
            msg = deserialize_message(raw, Image)
            with self._lock:
                into[stamp_of(msg)] = (t, msg)

        return cb

    def _on_diag(self, msg) -> None:
        with self._lock:
            self.received.diagnostics.append(msg)

    def _spin(self) -> None:
        while not self._stop and self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def now_stamp(self) -> Stamp:
        ns = self.node.get_clock().now().nanoseconds
        return ns // 1_000_000_000, ns % 1_000_000_000

    def publish(self, msg) -> None:
        self.pub.publish(msg)

    def wait_for_node(self, timeout: float = 30.0) -> bool:
        """True once the node's subscription is matched and it sent diagnostics."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.pub.get_subscription_count() > 0 and self.diag_values():
                return True
            time.sleep(0.05)
        return False

    def diag_values(self, since_ns: int = 0, having: str = "") -> dict[str, str]:
        """The newest segmentation status received; with ``since_ns``, only from an array stamped at or
        after that time (the node stamps an array before it reads its state, so a stale one that
        arrives late is not taken for the state after an event); with ``having``, only a status with
        that key (of several nodes on /diagnostics, e.g. the one with depth)."""
        with self._lock:
            diags = list(self.received.diagnostics)
        for arr in reversed(diags):
            if since_ns and arr.header.stamp.sec * 1_000_000_000 + arr.header.stamp.nanosec < since_ns:
                continue
            for st in arr.status:
                if st.name.endswith("segmentation"):
                    vals = {kv.key: kv.value for kv in st.values}
                    if having and having not in vals:
                        continue
                    level = st.level[0] if isinstance(st.level, (bytes, bytearray)) else int(st.level)
                    vals["_level"], vals["_message"] = str(level), st.message
                    return vals
        return {}

    def fresh_diag_values(self, timeout: float = 10.0, having: str = "") -> dict[str, str]:
        """The first status the node stamps after this call ({} if none within ``timeout``): one stamped
        earlier may still arrive after it, and must not be taken for the state now. ``having``: as in
        :meth:`diag_values`."""
        since, end = self.node.get_clock().now().nanoseconds, time.monotonic() + timeout
        while not self.diag_values(since, having) and time.monotonic() < end:
            time.sleep(0.02)
        return self.diag_values(since, having)

    def wait_quiet(self, settle: float = 1.0, timeout: float = 10.0) -> None:
        """Wait until no new label message arrived for ``settle`` seconds."""
        end = time.monotonic() + timeout
        last = -1
        quiet_since = time.monotonic()
        while time.monotonic() < end:
            n = len(self.received.labels)
            if n != last:
                last, quiet_since = n, time.monotonic()
            elif time.monotonic() - quiet_since > settle:
                return
            time.sleep(0.05)

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=2.0)
        self.node.destroy_node()
        self.context.try_shutdown()
