"""The node as a robot runs it: separate processes talking over real DDS."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")

from dds_tools import FRAME_ID, Collector, frame_stamp, image_array  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.dds, pytest.mark.slow]


def start_node(*params: str, log: Path) -> subprocess.Popen:
    args = [sys.executable, "-m", "seg_perception.node", "--ros-args"]
    for p in params:
        args += ["-p", p]
    return subprocess.Popen(args, cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=os.environ.copy())


def start_publisher(*args: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "test" / "dds_tools.py"), "publish", *args], cwd=ROOT,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, env=os.environ.copy())


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(2)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@pytest.fixture()
def collector():
    c = Collector()
    yield c
    c.close()


@pytest.fixture()
def shipped_backend(tmp_path):
    from colour_model import make_colour_model

    make_colour_model(tmp_path / "m", hw=(240, 320))
    return ["backend:=onnx", f"model_path:={tmp_path / 'm' / 'colour.onnx'}"]


def test_node_segments_stream_and_survives_malformed_frame(collector, tmp_path, shipped_backend):
    node = start_node(*shipped_backend, "min_object_area:=50", log=tmp_path / "node.log")
    try:
        assert collector.spin_until(lambda: collector.last_diag_values(), 20), "node sent no diagnostics"
        pub = start_publisher("--rate", "30", "--duration", "10", "--bad", "150", log=tmp_path / "pub.log")
        collector.spin_until(lambda: pub.poll() is not None, 60)
        assert pub.returncode == 0, (tmp_path / "pub.log").read_text()
        collector.spin_for(2.5)
        assert node.poll() is None, "node died: " + (tmp_path / "node.log").read_text()
    finally:
        rc = stop(node)
    log = (tmp_path / "node.log").read_text()
    labels = {(m.header.stamp.sec, m.header.stamp.nanosec): m for _, m in collector.labels}
    insts = {(m.header.stamp.sec, m.header.stamp.nanosec): m for _, m in collector.instances}
    assert len(labels) >= 30, f"only {len(labels)} label frames arrived; node log:\n{log}"
    assert set(labels) == set(insts), "labels and instances must come in pairs with the same stamps"
    sent = {frame_stamp(i) for i in range(300)}
    assert set(labels) <= sent - {frame_stamp(150)}, "outputs carry input stamps; the bad frame has none"
    for key, lab in list(labels.items())[:20]:
        inst = insts[key]
        assert lab.header.frame_id == FRAME_ID and inst.header.frame_id == FRAME_ID
        assert (lab.width, lab.height, lab.encoding) == (640, 480, "mono8")
        assert (inst.width, inst.height, inst.encoding) == (640, 480, "mono16")
        la, ia = image_array(lab), image_array(inst)
        assert la.max() < 19
        for k in np.unique(ia):
            if k:
                assert len(np.unique(la[ia == k])) == 1, "an instance must have exactly one class"
                assert la[ia == k][0] > 0
    d = collector.last_diag_values()
    assert int(d["frames_rejected"]) == 1, d
    assert int(d["frames_processed"]) == len(labels)
    assert int(d["frames_received"]) >= int(d["frames_processed"]) + 1
    assert "rejected frame" in log and "needs" in log
    assert rc in (0, -2, 130, None) or "Traceback" not in log
