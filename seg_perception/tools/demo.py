"""seg-demo: the node on the default backend, fed frames the project renders itself.

Starts the node in its own process, publishes rendered 640x480 frames over real DDS,
collects labels/instances/overlays, prints throughput and latency, writes overlay PNGs.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import List, Optional

import numpy as np

LOG = logging.getLogger("seg_demo")


def summarize(sent: int, rec, t_sent: dict, diag: dict) -> dict:
    lat = [1e3 * (rec.labels[s][0] - t_sent[s]) for s in rec.labels if s in t_sent]
    return {
        "frames_sent": sent,
        "frames_with_output": len(rec.labels),
        "frames_dropped_by_node": int(diag.get("frames_dropped", 0)),
        "frames_rejected_by_node": int(diag.get("frames_rejected", 0)),
        "latency_ms_p50": round(float(np.percentile(lat, 50)), 2) if lat else None,
        "latency_ms_p95": round(float(np.percentile(lat, 95)), 2) if lat else None,
        "node_inference_ms_p50": float(diag.get("inference_ms_p50", "nan")),
        "node_pipeline_ms_p50": float(diag.get("pipeline_ms_p50", "nan")),
        "backend": diag.get("backend"),
        "model_file": diag.get("model_file"),
    }


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="seg-demo", description=__doc__)
    ap.add_argument("--backend", default="tflite_int8")
    ap.add_argument("--model-path", default="", help="model file overriding the backend's shipped model")
    ap.add_argument("--rate", type=float, default=15.0, help="camera frame rate (Hz)")
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--out", default="out/demo", help="folder for overlay PNGs and summary.json")
    ap.add_argument("--save", type=int, default=4, help="number of overlay PNGs to write")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import cv2

    from ..demo_frames import render_frame
    from .rosio import NodeProcess, StreamClient, image_msg

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frames = [render_frame(seed)[0] for seed in range(12)]
    params = {"backend": args.backend, **({"model_path": args.model_path} if args.model_path else {})}
    node = NodeProcess(params, out / "node.log", remap=["image:=/demo/image_raw"])
    client = StreamClient("/demo/image_raw", overlays=True, name="seg_demo_camera")
    try:
        if not client.wait_for_node(60):
            LOG.error("node did not come up; its log:\n%s", node.log())
            return 1
        t_sent = {}
        period = 1.0 / args.rate
        t0 = time.monotonic()
        for i in range(args.frames):
            stamp = client.now_stamp()
            t_sent[stamp] = time.time()
            client.publish(image_msg(frames[i % len(frames)], stamp, "demo_camera"))
            time.sleep(max(0.0, t0 + (i + 1) * period - time.monotonic()))
        client.wait_quiet(0.5)
        time.sleep(1.05)  # one more diagnostics period (stall warnings start after 2 s)
        rec, diag = client.received, client.diag_values()
        summary = summarize(args.frames, rec, t_sent, diag)
        if diag.get("_message", "ok") != "ok":
            summary["node_status"] = diag["_message"]
        stamps = sorted(rec.overlays)[:: max(1, len(rec.overlays) // max(1, args.save))][: args.save]
        from .rosio import msg_to_array

        for k, s in enumerate(stamps):
            path = out / f"overlay_{k:02d}.png"
            cv2.imwrite(str(path), msg_to_array(rec.overlays[s][1])[:, :, ::-1])
        summary["overlays"] = [str(out / f"overlay_{k:02d}.png") for k in range(len(stamps))]
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        print(json.dumps(summary, indent=2))
        ok = node.alive() and summary["frames_with_output"] > 0
        return 0 if ok else 1
    finally:
        client.close()
        node.stop()


if __name__ == "__main__":
    sys.exit(main())
