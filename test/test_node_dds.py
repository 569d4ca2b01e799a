"""The node as a robot runs it: separate processes talking over real DDS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")

from dds_tools import FRAME_ID, frame_stamp  # noqa: E402

from seg_perception.tools.rosio import NodeProcess, StreamClient, dds_env, msg_to_array  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.dds, pytest.mark.slow]


def start_publisher(*args: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "test" / "dds_tools.py"), "publish", *args],
        cwd=ROOT,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        env=dds_env(),
    )


@pytest.fixture()
def client():
    c = StreamClient("/unused_camera")
    yield c
    c.close()


@pytest.fixture(params=["default", "colour_onnx"])
def shipped_backend(request, tmp_path):
    """The node's defaults (shipped tflite_int8 model), and a hand-built ONNX model with known answers."""
    if request.param == "default":
        return {}
    from colour_model import make_colour_model

    make_colour_model(tmp_path / "m", hw=(240, 320))
    return {"backend": "onnx", "model_path": str(tmp_path / "m" / "colour.onnx")}


def test_node_segments_stream_and_survives_malformed_frame(client, tmp_path, shipped_backend):
    node = NodeProcess({**shipped_backend, "min_object_area": 50}, tmp_path / "node.log")
    try:
        assert client.wait_for_node(30) or client.diag_values(), "node sent no diagnostics:\n" + node.log()
        # the pause after the bad frame keeps a newer frame from replacing it on a loaded machine (that a
        # replaced frame is dropped, not queued, is tested in test_fuzz.py)
        pub = start_publisher(
            "--rate", "30", "--duration", "10", "--bad", "150", "--pause-after-bad", "0.5", log=tmp_path / "pub.log"
        )
        assert pub.wait(60) == 0, (tmp_path / "pub.log").read_text()
        client.wait_quiet(1.0)
        assert node.alive(), "node died:\n" + node.log()
        import time

        time.sleep(1.1)
        d = client.diag_values()
    finally:
        node.stop()
    log = node.log()
    labels = {s: m for s, (_, m) in client.received.labels.items()}
    insts = {s: m for s, (_, m) in client.received.instances.items()}
    assert len(labels) >= 30, f"only {len(labels)} label frames arrived; node log:\n{log}"
    assert set(labels) == set(insts), "labels and instances must come in pairs with the same stamps"
    sent = {frame_stamp(i) for i in range(300)}
    assert set(labels) <= sent - {frame_stamp(150)}, "outputs carry input stamps; the bad frame has none"
    for key in sorted(labels)[:20]:
        lab, inst = labels[key], insts[key]
        assert lab.header.frame_id == FRAME_ID and inst.header.frame_id == FRAME_ID
        assert (lab.width, lab.height, lab.encoding) == (640, 480, "mono8")
        assert (inst.width, inst.height, inst.encoding) == (640, 480, "mono16")
        la, ia = msg_to_array(lab), msg_to_array(inst)
        assert la.max() < 19
        for k in np.unique(ia):
            if k:
                assert len(np.unique(la[ia == k])) == 1, "an instance must have exactly one class"
                assert la[ia == k][0] > 0
    assert int(d["frames_rejected"]) == 1, f"{d}\n{log[-3000:]}"
    assert int(d["frames_processed"]) == len(labels), d
    assert int(d["frames_received"]) >= int(d["frames_processed"]) + 1
    assert "rejected frame" in log and "needs" in log
    assert "Traceback" not in log
    if not shipped_backend:
        from seg_perception.manifest import Manifest

        entry = Manifest.load().get("tflite_int8")
        assert d["backend"] == "tflite_int8" and d["model_sha256"] == entry.sha256, d


def test_every_frame_sent_is_received_or_counted_missed(tmp_path):
    """Bursts faster than the node's executor takes frames: with the KEEP_LAST 1 input a newer frame
    replaces an untaken one inside DDS, where the node never sees it; the publication sequence numbers
    it does see make those count (``frames_missed``), so received + missed = sent."""
    import time

    from seg_perception.demo_frames import render_frame
    from seg_perception.tools.rosio import image_msg

    client = StreamClient("/image")
    node = NodeProcess({}, tmp_path / "node.log")
    try:
        assert client.wait_for_node(30), "node sent no diagnostics:\n" + node.log()
        rgb = render_frame(0)[0]
        sent = 0

        def send() -> None:
            nonlocal sent
            client.publish(image_msg(rgb, client.now_stamp(), FRAME_ID))
            sent += 1

        send()  # counting starts at the first frame the node gets: wait for it
        end = time.monotonic() + 20
        while int(client.diag_values().get("frames_received", 0)) < 1 and time.monotonic() < end:
            time.sleep(0.1)
        for _ in range(3):
            for _ in range(60):
                send()
            time.sleep(0.5)
        send()  # after a pause: the last frame arrives, so every gap before it is known
        client.wait_quiet(1.0)
        d = client.fresh_diag_values()
    finally:
        node.stop()
        client.close()
    assert d, "no diagnostics after the bursts:\n" + node.log()
    received, missed = int(d["frames_received"]), int(d["frames_missed"])
    assert received + missed == sent, (received, missed, sent, d)
    assert missed > 0 and received > 1, (received, missed)  # the bursts did outrun the executor
