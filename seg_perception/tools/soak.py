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
  (``--age-slack-ms`` adds margin for CI).
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
    rate: float, seconds: float, backend: str, workdir: Path, warmup_s: float = 5.0, model_path: str = ""
) -> dict[str, object]:
    from ..demo_frames import render_frame
    from .rosio import NodeProcess, StreamClient, image_msg

    frames = [render_frame(s)[0] for s in range(8)]
    params = {"backend": backend, **({"model_path": model_path} if model_path else {})}
    node = NodeProcess(params, workdir / f"soak_{int(rate)}hz.log", remap=["image:=/soak/image_raw"])
    client = StreamClient("/soak/image_raw", name=f"seg_soak_{int(rate)}")
    rss: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            rss.append(rss_mb(node.proc.pid))
            stop.wait(1.0)

    try:
        if not client.wait_for_node(60):
            return {"rate_hz": rate, "error": "node did not come up", "log": node.log()[-400:]}
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        sent: dict[tuple, float] = {}
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < seconds:
            stamp = client.now_stamp()
            sent[stamp] = time.time()
            client.publish(image_msg(frames[i % len(frames)], stamp, "soak"))
            i += 1
            time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
        publish_hz = i / (time.monotonic() - t0)
        client.wait_quiet(0.5)
        time.sleep(1.05)
        diag = client.diag_values()
        stop.set()
        sampler.join(2)
        ages = np.array([1e3 * (t_recv - (s[0] + s[1] * 1e-9)) for s, (t_recv, _) in client.received.labels.items()])
        warm = max(1, int(warmup_s))
        infer_p95 = float(diag.get("inference_ms_p95", "nan"))
        return {
            "rate_hz": rate,
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
    ap.add_argument("--out", default="out/soak")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = False
    for rate in (float(r) for r in args.rates.split(",")):
        r = run_rate(rate, args.seconds, args.backend, out, model_path=args.model_path)
        r["violations"] = check(r, args.rss_growth_mb, args.age_slack_ms) if "error" not in r else [r["error"]]
        failed |= bool(r["violations"])
        print(json.dumps(r), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
