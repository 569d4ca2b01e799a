"""seg-bench --depth: what use_depth adds to the node's end-to-end time (real DDS, 640x480).

Two nodes run side by side on the same backend, one without depth (``/bench_rgb``) and one with
``use_depth`` (``/bench_rgbd``); frames go to them in turn (fair under a drifting background
load), each only after the previous frame's outputs arrived, so nothing queues. The frames are
rendered table scenes (:mod:`seg_perception.demo_scene3d`); the depth node also gets each frame's
depth (16UC1) and camera info, published just before the colour frame, as a camera driver does;
times run from the colour frame's publication for both nodes. Every output is received raw and
timed by the middleware's reception time (the times are the node's and the transport's, not when
the bench's callbacks got to run; the bench's own decoding of the markers, ~0.4 ms in rclpy, is
reported apart as ``bench_markers_decode_ms_p50``).

Reported (ms, median / p95 over ``runs`` frames): ``rgb_labels`` and ``rgb_last`` (publish ->
labels, -> instances, the last output; depth off), ``rgbd_labels`` (depth on), ``rgbd_poses``
(publish -> object poses, what a planner reads) and ``rgbd_markers`` (publish -> object markers,
the last output of a depth frame; the bench subscribes to them, as RViz would, else the node
builds none); ``added_ms_p50`` = rgbd_markers p50 - rgb_labels p50 (what a viewer waiting for
boxes waits longer than one waiting for labels), ``added_to_last_output_ms_p50`` = rgbd_markers
p50 - rgb_last p50, ``poses_after_last_2d_output_ms_p50`` = rgbd_poses p50 - rgb_last p50 (the same
for a planner), the number of 3D objects per frame the depth node measured, and the depth node's
own ``geometry_ms`` p50 from its diagnostics (decoding the depth and measuring the boxes; the
messages and publishing come on top).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan")}
    return {"p50": round(float(np.median(values)), 2), "p95": round(float(np.percentile(values, 95)), 2)}


def bench_node_depth(
    backend: str, runs: int, threads: int, workdir: Path, frame_timeout: float = 2.0
) -> dict[str, Any]:
    from geometry_msgs.msg import PoseArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CameraInfo, Image
    from visualization_msgs.msg import MarkerArray

    from ..demo_scene3d import render_scene
    from .rosio import NodeProcess, StreamClient, arrival_time, camera_info_msg, image_msg

    scenes = [render_scene(s) for s in range(4)]
    params = {"backend": backend, "num_threads": threads}
    nodes = [
        NodeProcess(params, workdir / f"node_{backend}_rgb.log", remap=["__ns:=/bench_rgb"]),
        NodeProcess({**params, "use_depth": True}, workdir / f"node_{backend}_rgbd.log", remap=["__ns:=/bench_rgbd"]),
    ]
    rgb = StreamClient("/bench_rgb/image", namespace="bench_rgb", name="seg_bench_rgb")
    rgbd = StreamClient("/bench_rgbd/image", namespace="bench_rgbd", name="seg_bench_rgbd")
    pub_depth = rgbd.node.create_publisher(Image, "/bench_rgbd/depth", qos_profile_sensor_data)
    pub_info = rgbd.node.create_publisher(CameraInfo, "/bench_rgbd/camera_info", qos_profile_sensor_data)
    markers: dict[Any, Any] = {}
    poses: dict[Any, float] = {}
    lock = threading.Lock()

    # Raw subscriptions timed by the middleware's reception time (rosio.arrival_time), so the times
    # are the node's and the transport's, not this Python client's scheduling or decoding (decoding
    # nine Marker messages in rclpy takes ~0.4 ms, RViz's C++ a few us); the decode time is reported
    # on its own.
    decode_ms: list[float] = []

    def on_markers(raw: bytes, info: dict) -> None:
        t = arrival_time(info)
        t_decode = time.time()
        msg = deserialize_message(raw, MarkerArray)
        decode_ms.append((time.time() - t_decode) * 1e3)
        h = msg.markers[0].header
        with lock:
            markers[(h.stamp.sec, h.stamp.nanosec)] = (t, sum(1 for m in msg.markers if m.type == 1))

    def on_poses(raw: bytes, info: dict) -> None:
        t = arrival_time(info)
        msg = deserialize_message(raw, PoseArray)
        with lock:
            poses[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = t

    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    topic = "/bench_rgbd/segmentation/object_"
    rgbd.node.create_subscription(MarkerArray, topic + "markers", on_markers, reliable, raw=True)
    rgbd.node.create_subscription(PoseArray, topic + "poses", on_poses, reliable, raw=True)
    lat: dict[str, list[float]] = {
        "rgb_labels": [],
        "rgb_last": [],
        "rgbd_labels": [],
        "rgbd_poses": [],
        "rgbd_markers": [],
    }
    objects: list[int] = []
    lost = 0
    try:
        if not (rgb.wait_for_node(60) and rgbd.wait_for_node(60)):
            return {"depth_node_error": (nodes[0].log() + nodes[1].log())[-800:]}
        end = time.monotonic() + 10  # the depth subscriptions match a little later than the image one
        while (
            pub_depth.get_subscription_count() == 0 or pub_info.get_subscription_count() == 0
        ) and time.monotonic() < end:
            time.sleep(0.05)
        for i in range(runs + 5):
            sc = scenes[i % len(scenes)]
            # depth off (latencies: receipt time in the client's callback minus publish time, one clock)
            stamp = rgb.now_stamp()
            t = time.time()
            rgb.publish(image_msg(sc.rgb, stamp, "bench"))
            while (
                not (stamp in rgb.received.labels and stamp in rgb.received.instances)
                and time.time() < t + frame_timeout
            ):
                time.sleep(0.0005)
            got_rgb, got_last = rgb.received.labels.get(stamp), rgb.received.instances.get(stamp)
            # depth on: camera info and depth first, then the colour frame
            stamp = rgbd.now_stamp()
            pub_info.publish(camera_info_msg(sc.camera, stamp, "bench"))
            pub_depth.publish(image_msg(sc.depth_mm, stamp, "bench", "16UC1"))
            t_d = time.time()  # the node's time starts with the colour frame, as for the node without depth
            rgbd.publish(image_msg(sc.rgb, stamp, "bench"))
            while time.time() < t_d + frame_timeout:
                with lock:
                    got_m = markers.get(stamp)
                    has_poses = stamp in poses
                if got_m is not None and has_poses and stamp in rgbd.received.labels:
                    break
                time.sleep(0.0005)
            got_l = rgbd.received.labels.get(stamp)
            with lock:
                got_p = poses.get(stamp)
            if i >= 5:
                got = (got_rgb, got_last, got_m, got_l, got_p)
                if all(g is not None for g in got):
                    lat["rgb_labels"].append((got_rgb[0] - t) * 1e3)
                    lat["rgb_last"].append((got_last[0] - t) * 1e3)
                    lat["rgbd_labels"].append((got_l[0] - t_d) * 1e3)
                    lat["rgbd_poses"].append((got_p - t_d) * 1e3)
                    lat["rgbd_markers"].append((got_m[0] - t_d) * 1e3)
                    objects.append(got_m[1])
                else:
                    lost += 1
            for c in (rgb, rgbd):
                c.received.labels.clear()
                c.received.instances.clear()
        out: dict[str, Any] = {k: _stats(v) for k, v in lat.items()}
        out["added_ms_p50"] = round(out["rgbd_markers"]["p50"] - out["rgb_labels"]["p50"], 2)
        out["added_to_last_output_ms_p50"] = round(out["rgbd_markers"]["p50"] - out["rgb_last"]["p50"], 2)
        out["poses_after_last_2d_output_ms_p50"] = round(out["rgbd_poses"]["p50"] - out["rgb_last"]["p50"], 2)
        out["bench_markers_decode_ms_p50"] = round(float(np.median(decode_ms)), 3) if decode_ms else float("nan")
        out["objects_3d_per_frame"] = round(float(np.mean(objects)), 2) if objects else 0.0
        # the depth node's own time for the 3D step's measuring part (depth decode, boxes, size pairs)
        diag = rgbd.fresh_diag_values(5.0, having="geometry_ms_p50")
        if "geometry_ms_p50" in diag:
            out["node_geometry_ms_p50"] = float(diag["geometry_ms_p50"])
        out["frames_lost"] = lost
        out["runs"] = runs
        return out
    finally:
        rgb.close()
        rgbd.close()
        for n in nodes:
            n.stop()
