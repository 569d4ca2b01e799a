"""Lifecycle churn over real DDS, for as long as asked (the CI test runs 25 s of it).

A node on a hand-built colour model, a 60 Hz camera, and deactivate/activate as fast as the node
answers; prints the cycles, the widest gap between diagnostics messages (0.25 s period), the
node's ``executor_recoveries`` and its exit code as JSON:

    python test/churn_probe.py --seconds 60
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from colour_model import make_colour_model  # noqa: E402
from dds_tools import Camera, NodeControl  # noqa: E402

from seg_perception.tools.rosio import NodeProcess, StreamClient, apply_dds_env  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    apply_dds_env()
    work = Path(tempfile.mkdtemp(prefix="churn_"))
    make_colour_model(work, name="small", hw=(120, 160))
    client = StreamClient("/image")
    node = NodeProcess(
        {"backend": "onnx", "model_path": str(work / "small.onnx"), "diagnostics_period_s": 0.25}, work / "node.log"
    )
    ctl = NodeControl(client)
    stop = threading.Event()
    cam = None
    worst_gap = 0.0

    def watch() -> None:
        nonlocal worst_gap
        n, t = len(client.received.diagnostics), time.monotonic()
        while not stop.is_set():
            now, m = time.monotonic(), len(client.received.diagnostics)
            if m != n:
                worst_gap, n, t = max(worst_gap, now - t), m, now
            time.sleep(0.01)

    cycles, out = 0, {}
    try:
        if not client.wait_for_node(60):
            print(node.log(), file=sys.stderr)
            return 1
        cam = Camera(client, rate=60.0)
        threading.Thread(target=watch, daemon=True).start()
        end = time.monotonic() + args.seconds
        while time.monotonic() < end and node.alive():
            if not (ctl.transition("deactivate") and ctl.transition("activate")):
                break
            cycles += 1
        time.sleep(0.5)
        diag = client.diag_values()
        out = {
            "seconds": args.seconds,
            "cycles": cycles,
            "node_alive": node.alive(),
            "worst_diagnostics_gap_s": round(worst_gap, 3),
            "executor_recoveries": diag.get("executor_recoveries"),
            "lifecycle_state": diag.get("lifecycle_state"),
        }
    finally:
        stop.set()
        if cam is not None:
            cam.stop()
        rc = node.stop()
        client.close()
    out["exit_code"] = rc
    print(json.dumps(out))
    return 0 if out.get("node_alive") and rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
