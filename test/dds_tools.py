"""Processes for DDS integration tests: a camera publisher and a result collector.

Run as ``python test/dds_tools.py publish --rate 30 --duration 10 --bad-every 0``. Frames
are rendered by :func:`seg_perception.demo_frames.render_frame` (no dataset pixels). Each frame's stamp
encodes its index (sec = 1000 + i) so a subscriber can match outputs to inputs.
"""

from __future__ import annotations

import argparse
import array
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FRAME_ID = "camera_optical"


def frame_stamp(i: int):
    return 1000 + i, 123


def publish(args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from seg_perception.demo_frames import render_frame

    rclpy.init()
    node = rclpy.create_node("test_camera")
    pub = node.create_publisher(Image, args.topic, qos_profile_sensor_data)
    scenes = [render_frame(s, (args.height, args.width))[0] for s in range(4)]
    deadline = time.monotonic() + args.wait_subscriber
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(args.settle)
    period = 1.0 / args.rate
    n = int(args.duration * args.rate)
    t0 = time.monotonic()
    bad = set(int(b) for b in args.bad.split(",") if b) if args.bad else set()
    for i in range(n):
        msg = Image()
        msg.header.stamp.sec, msg.header.stamp.nanosec = frame_stamp(i)
        msg.header.frame_id = FRAME_ID
        rgb = scenes[i % len(scenes)]
        msg.height, msg.width, msg.encoding, msg.is_bigendian = rgb.shape[0], rgb.shape[1], "rgb8", 0
        msg.step = rgb.shape[1] * 3
        data = array.array("B")
        data.frombytes(rgb.tobytes())
        if i in bad or (args.bad_every and i % args.bad_every == args.bad_every // 2):
            data = data[: len(data) // 2]  # truncated payload: must be rejected, not crash
            msg.header.frame_id = "bad"
        msg.data = data
        pub.publish(msg)
        if msg.header.frame_id == "bad" and args.pause_after_bad:
            # give the node time to take the bad frame before a newer one replaces it (drop-not-queue)
            time.sleep(args.pause_after_bad)
            t0 += args.pause_after_bad
        sleep = t0 + (i + 1) * period - time.monotonic()
        if sleep > 0:
            time.sleep(sleep)
    time.sleep(0.5)
    node.destroy_node()
    rclpy.shutdown()
    print(f"published {n} frames in {time.monotonic() - t0:.2f} s", flush=True)
    return 0


class Camera:
    """Publishes rendered 320x240 frames at ``rate`` Hz from a thread until stopped."""

    def __init__(self, client, rate: float = 20.0):  # a seg_perception.tools.rosio.StreamClient
        self.client, self.period = client, 1.0 / rate
        from seg_perception.demo_frames import render_frame
        from seg_perception.tools.rosio import image_msg

        self.frame, self._image_msg = render_frame(0, (240, 320))[0], image_msg
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sent += 1
            self.client.publish(self._image_msg(self.frame, (2000 + self.sent, 0), "camera"))
            time.sleep(self.period)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class NodeControl:
    """The lifecycle and parameter services of a node in another process, called over DDS.

    ``client`` is a :class:`seg_perception.tools.rosio.StreamClient` (it spins its node in a thread).
    """

    def __init__(self, client, node: str = "/seg_perception"):
        from lifecycle_msgs.srv import ChangeState, GetState
        from rcl_interfaces.srv import DescribeParameters, GetParameters, SetParameters

        n = client.node
        self._clients = {
            "change_state": n.create_client(ChangeState, f"{node}/change_state"),
            "get_state": n.create_client(GetState, f"{node}/get_state"),
            "get_parameters": n.create_client(GetParameters, f"{node}/get_parameters"),
            "set_parameters": n.create_client(SetParameters, f"{node}/set_parameters"),
            "describe_parameters": n.create_client(DescribeParameters, f"{node}/describe_parameters"),
        }

    def call(self, service: str, request, timeout: float = 60.0):
        cli = self._clients[service]
        if not cli.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {cli.srv_name} not available")
        fut = cli.call_async(request)
        end = time.monotonic() + timeout
        while not fut.done() and time.monotonic() < end:
            time.sleep(0.01)
        if not fut.done():
            raise TimeoutError(f"no answer from {cli.srv_name} within {timeout} s")
        return fut.result()

    def state(self) -> str:
        from lifecycle_msgs.srv import GetState

        return self.call("get_state", GetState.Request()).current_state.label

    def transition(self, label: str) -> bool:
        from lifecycle_msgs.srv import ChangeState

        req = ChangeState.Request()
        req.transition.label = label
        return bool(self.call("change_state", req).success)

    def get(self, *names: str) -> dict:
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        values = self.call("get_parameters", GetParameters.Request(names=list(names))).values
        return {n: parameter_value_to_python(v) for n, v in zip(names, values, strict=False)}

    def set(self, **values) -> list:
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        req = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
        return list(self.call("set_parameters", req).results)

    def describe(self, *names: str) -> dict:
        from rcl_interfaces.srv import DescribeParameters

        return dict(
            zip(
                names,
                self.call("describe_parameters", DescribeParameters.Request(names=list(names))).descriptors,
                strict=False,
            )
        )


def scene3d(i: int, hw=(480, 640)):
    """Frame i of the depth stream: three objects in palette colours (the nearest-colour model segments them)
    under a camera tilted by 0 / 25 / 45 degrees; the test re-renders it for the truth."""
    import math

    from seg_perception.demo_scene3d import Placement, render_objects

    turn = 0.4 * (i % 5)
    places = [
        Placement("s40_40_G", -0.07, 0.0, 0.6 + turn),
        Placement("axis", 0.08, 0.03, -0.9 + turn),
        Placement("m30", 0.0, 0.1, 0.0),
    ]
    return render_objects(
        places, hw, tilt_deg=[0.0, 25.0, 45.0][i % 3], distance=0.55 + 0.01 * math.sin(i), palette_colours=True
    )


BAD_DEPTH = ("encoding", "camera_info", "stamp", "size", "invalid")


def publish3d(args: argparse.Namespace) -> int:
    """Colour + registered depth (16UC1) + camera info per frame, the same stamp on all three; frames
    listed in --bad get one kind of bad depth (see BAD_DEPTH)."""
    import numpy as np
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    from seg_perception.tools.rosio import image_msg

    rclpy.init()
    node = rclpy.create_node("test_rgbd_camera")
    pub = node.create_publisher(Image, args.topic, qos_profile_sensor_data)
    pub_d = node.create_publisher(Image, args.depth_topic, qos_profile_sensor_data)
    pub_i = node.create_publisher(CameraInfo, args.info_topic, qos_profile_sensor_data)
    hw = (args.height, args.width)
    bad = dict(b.split(":") for b in args.bad.split(",") if b)
    deadline = time.monotonic() + args.wait_subscriber
    while min(p.get_subscription_count() for p in (pub, pub_d, pub_i)) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(args.settle)
    period = 1.0 / args.rate
    t0 = time.monotonic()
    for i in range(args.frames):
        sc = scene3d(i, hw)
        stamp = frame_stamp(i)
        kind = bad.get(str(i), "")
        info = CameraInfo()
        info.header.stamp.sec, info.header.stamp.nanosec = stamp
        info.header.frame_id = FRAME_ID
        info.height, info.width = hw
        info.k = [float("nan")] * 9 if kind == "camera_info" else [float(v) for v in sc.camera.k().reshape(-1)]
        depth = sc.depth_mm
        if kind == "size":
            depth = np.zeros((50, 50), np.uint16)
        elif kind == "invalid":
            depth = np.zeros_like(depth)
        d = image_msg(sc.rgb, stamp, FRAME_ID) if kind == "encoding" else image_msg(depth, stamp, FRAME_ID, "16UC1")
        if kind == "stamp":
            d.header.stamp.sec += 1000  # never matches any colour frame
        pub_i.publish(info)
        pub_d.publish(d)
        pub.publish(image_msg(sc.rgb, stamp, FRAME_ID))
        sleep = t0 + (i + 1) * period - time.monotonic()
        if sleep > 0:
            time.sleep(sleep)
    time.sleep(0.5)
    node.destroy_node()
    rclpy.shutdown()
    print(f"published {args.frames} rgbd frames in {time.monotonic() - t0:.2f} s", flush=True)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("publish")
    p.add_argument("--topic", default="/image")
    p.add_argument("--rate", type=float, default=30.0)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--bad", default="", help="comma-separated frame indices to truncate")
    p.add_argument("--bad-every", type=int, default=0)
    p.add_argument("--pause-after-bad", type=float, default=0.0, help="seconds of silence after each bad frame")
    p.add_argument("--wait-subscriber", type=float, default=20.0)
    p.add_argument("--settle", type=float, default=1.0)
    q = sub.add_parser("publish3d")
    q.add_argument("--topic", default="/image")
    q.add_argument("--depth-topic", default="/depth")
    q.add_argument("--info-topic", default="/camera_info")
    q.add_argument("--rate", type=float, default=10.0)
    q.add_argument("--frames", type=int, default=20)
    q.add_argument("--width", type=int, default=640)
    q.add_argument("--height", type=int, default=480)
    q.add_argument("--bad", default="", help="frame:kind,... with kind one of " + ", ".join(BAD_DEPTH))
    q.add_argument("--wait-subscriber", type=float, default=20.0)
    q.add_argument("--settle", type=float, default=1.0)
    args = ap.parse_args(argv)
    return publish3d(args) if args.cmd == "publish3d" else publish(args)


if __name__ == "__main__":
    sys.exit(main())
