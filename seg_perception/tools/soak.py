"""seg-soak: the node under camera load over real DDS (memory, drops, output age).

Publishes rendered 640x480 rgb8 frames at each ``--rates`` Hz for ``--seconds`` s into a
node in its own process, samples the node's RSS once a second and measures each output's
age (receipt time minus its stamp, stamps taken at publish time). Prints one JSON object per
rate and checks the bounds the README states:

* RSS after warm-up grows by at most ``--rss-growth-mb``;
* stale frames are dropped (counted) instead of queued: output age p99 stays below
  2 x the node's p99 work per frame (decode, pipeline, publishing; ``frame_ms_p99`` in
  diagnostics) + 20 ms of transport: a new frame waits at most for the one in flight, then
  its own work. A queue breaks it within seconds once input outruns the node
  (``--age-slack-ms`` adds margin for CI). The ages are taken in this process on arrival, so its
  own garbage collector is kept out of the timed stretch (``rosio.frozen_heap``): a full collection
  took 30-44 ms in a pytest run of this test alone and 116 ms in a process that had imported torch
  and the training code (as a whole test session has), time the outputs spent waiting here.

``--depth``: the node runs with ``use_depth`` and gets each frame's depth image and camera info
just before the frame (rendered table scenes); then also the object poses' age p99 stays under
the same bound (the node's work per frame includes the 3D step), and at least 99 % of the
processed frames get 3D boxes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from pathlib import Path

import numpy as np


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def run_rate(
    rate: float,
    seconds: float,
    backend: str,
    workdir: Path,
    warmup_s: float = 5.0,
    model_path: str = "",
    depth: bool = False,
) -> dict[str, object]:
    """One rate. ``depth``: the node runs with ``use_depth`` and every colour frame is preceded by its
    depth image (16UC1) and camera info, as from an RGB-D driver (rendered table scenes); the object
    poses and markers are collected too."""
    from .rosio import NodeProcess, StreamClient, camera_info_msg, frozen_heap, image_msg

    params: dict[str, object] = {"backend": backend, **({"model_path": model_path} if model_path else {})}
    remap = ["image:=/soak/image_raw"]
    if depth:
        from ..demo_scene3d import render_scene

        scenes = [render_scene(s) for s in range(8)]
        frames = [sc.rgb for sc in scenes]
        params["use_depth"] = True
        remap += ["depth:=/soak/depth", "camera_info:=/soak/camera_info"]
    else:
        from ..demo_frames import render_frame

        frames = [render_frame(s)[0] for s in range(8)]
    tag = f"{int(rate)}hz" + ("_depth" if depth else "")
    node = NodeProcess(params, workdir / f"soak_{tag}.log", remap=remap)
    client = StreamClient("/soak/image_raw", name=f"seg_soak_{tag}")
    poses: dict[tuple, float] = {}
    markers: list[int] = [0]
    if depth:
        from geometry_msgs.msg import PoseArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image
        from visualization_msgs.msg import MarkerArray

        pub_depth = client.node.create_publisher(Image, "/soak/depth", qos_profile_sensor_data)
        pub_info = client.node.create_publisher(CameraInfo, "/soak/camera_info", qos_profile_sensor_data)
        reliable = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)

        def on_poses(msg: object) -> None:
            poses[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = time.time()

        def on_markers(msg: object) -> None:
            markers[0] += 1

        client.node.create_subscription(PoseArray, "/segmentation/object_poses", on_poses, reliable)
        # markers too, as RViz would: the node builds them only while someone subscribes
        client.node.create_subscription(MarkerArray, "/segmentation/object_markers", on_markers, reliable)
    rss: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            rss.append(rss_mb(node.proc.pid))
            stop.wait(1.0)

    try:
        if not client.wait_for_node(60):
            return {"rate_hz": rate, "error": "node did not come up", "log": node.log()[-400:]}
        if depth:  # the depth subscriptions match a little after the image one
            end = time.monotonic() + 10
            while (
                pub_depth.get_subscription_count() == 0 or pub_info.get_subscription_count() == 0
            ) and time.monotonic() < end:
                time.sleep(0.05)
        with frozen_heap():  # the client times arrivals: its own collector must not pause them
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            t0 = time.monotonic()
            i = 0
            while time.monotonic() - t0 < seconds:
                stamp = client.now_stamp()
                if depth:
                    sc = scenes[i % len(scenes)]
                    pub_info.publish(camera_info_msg(sc.camera, stamp, "soak"))
                    pub_depth.publish(image_msg(sc.depth_mm, stamp, "soak", "16UC1"))
                client.publish(image_msg(frames[i % len(frames)], stamp, "soak"))
                i += 1
                time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            publish_hz = i / (time.monotonic() - t0)
            client.wait_quiet(0.5)
            time.sleep(1.05)
            diag = client.diag_values(having="frames_3d" if depth else "")
            stop.set()
            sampler.join(2)
        ages = np.array([1e3 * (t_recv - (s[0] + s[1] * 1e-9)) for s, (t_recv, _) in client.received.labels.items()])
        warm = max(1, int(warmup_s))
        infer_p95 = float(diag.get("inference_ms_p95", "nan"))
        result: dict[str, object] = {
            "rate_hz": rate,
            "depth": depth,
            "published_hz": round(publish_hz, 1),
            "seconds": seconds,
            "frames_sent": i,
            "frames_with_output": len(ages),
            "node_dropped": int(diag.get("frames_dropped", 0)),
            "node_processed": int(diag.get("frames_processed", 0)),
            "node_received": int(diag.get("frames_received", 0)),
            "node_missed": int(diag.get("frames_missed", 0)),  # sent, never reached the node (sequence gaps)
            "age_ms_p50": round(float(np.percentile(ages, 50)), 2) if ages.size else None,
            "age_ms_p99": round(float(np.percentile(ages, 99)), 2) if ages.size else None,
            "age_ms_max": round(float(ages.max()), 2) if ages.size else None,
            "inference_ms_p50": float(diag.get("inference_ms_p50", "nan")),
            "inference_ms_p95": infer_p95,
            "inference_ms_p99": float(diag.get("inference_ms_p99", "nan")),
            "pipeline_ms_p95": float(diag.get("pipeline_ms_p95", "nan")),
            "frame_ms_p50": float(diag.get("frame_ms_p50", "nan")),
            "frame_ms_p99": float(diag.get("frame_ms_p99", "nan")),
            "rss_mb_after_warmup": round(rss[min(warm, len(rss) - 1)], 1) if rss else None,
            "rss_mb_end": round(rss[-1], 1) if rss else None,
            "rss_mb_max": round(max(rss), 1) if rss else None,
            "node_alive": node.alive(),
        }
        if depth:
            pose_ages = np.array([1e3 * (t - (s[0] + s[1] * 1e-9)) for s, t in poses.items()])
            result.update(
                {
                    "frames_with_poses": len(poses),
                    "frames_with_markers": markers[0],
                    "poses_age_ms_p99": round(float(np.percentile(pose_ages, 99)), 2) if pose_ages.size else None,
                    **{k: int(diag.get(k, 0)) for k in ("frames_3d", "frames_no_depth", "objects_3d")},
                    "geometry_ms_p50": float(diag.get("geometry_ms_p50", "nan")),
                }
            )
        return result
    finally:
        stop.set()
        client.close()
        node.stop()


def check(r: dict[str, object], rss_growth_mb: float, age_slack_ms: float) -> list[str]:
    """The bounds; returns what was violated (empty = held)."""
    bad = []
    if not r.get("node_alive"):
        bad.append("node died")
    if r.get("rss_mb_end") is not None and r["rss_mb_end"] - r["rss_mb_after_warmup"] > rss_growth_mb:
        bad.append(f"RSS grew {r['rss_mb_end'] - r['rss_mb_after_warmup']:.1f} MB > {rss_growth_mb}")
    bound = 2 * float(r["frame_ms_p99"]) + 20 + age_slack_ms
    if not math.isfinite(bound) or r.get("age_ms_p99") is None or r["age_ms_p99"] > bound:  # nan: no timing
        bad.append(f"output age p99 {r.get('age_ms_p99')} ms > {bound:.1f} ms")
    if r.get("depth"):
        # the node's work per frame includes the 3D step: the poses obey the same bound
        if r.get("poses_age_ms_p99") is None or r["poses_age_ms_p99"] > bound:
            bad.append(f"poses age p99 {r.get('poses_age_ms_p99')} ms > {bound:.1f} ms")
        # every depth image is sent before its colour frame: a processed frame without 3D is a fault
        if int(r["frames_3d"]) < 0.99 * int(r["node_processed"]):
            bad.append(f"3D boxes for {r['frames_3d']} of {r['node_processed']} processed frames")
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="seg-soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--backend", default="tflite_int8")
    ap.add_argument("--model-path", default="")
    ap.add_argument("--rates", default="30,90")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rss-growth-mb", type=float, default=20.0)
    ap.add_argument("--age-slack-ms", type=float, default=0.0)
    ap.add_argument("--depth", action="store_true", help="use_depth, with a depth image and camera info per frame")
    ap.add_argument("--out", default="out/soak")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = False
    for rate in (float(r) for r in args.rates.split(",")):
        r = run_rate(rate, args.seconds, args.backend, out, model_path=args.model_path, depth=args.depth)
        r["violations"] = check(r, args.rss_growth_mb, args.age_slack_ms) if "error" not in r else [r["error"]]
        failed |= bool(r["violations"])
        print(json.dumps(r), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
