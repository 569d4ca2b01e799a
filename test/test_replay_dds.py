"""seg-replay as a user runs it: its own process, the node in another, real DDS between them.

A 20-frame 640x480 demo bag at 10 Hz goes through the colour ONNX model in both storage
formats (sqlite3 raw at the recorded rate, mcap JPEG as fast as the node answers). The
output bag must carry the input stamps, and the live mIoU must equal the offline mIoU of
the same frames (``--compare-offline`` reruns them through make_segmenter).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("rosbags")

from seg_perception.stamps import stamp_of  # noqa: E402
from seg_perception.tools import bags, make_bag  # noqa: E402
from seg_perception.tools.rosio import dds_env  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.dds, pytest.mark.slow]
FRAMES = 20


def seg_replay(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "seg_perception.tools.replay", *args],
        cwd=ROOT,
        env=dds_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def make_demo_bag(path: Path, storage: str, compressed: bool) -> None:
    args = ["--demo", str(FRAMES), "--out", str(path), "--storage", storage, "--rate", "10"]
    assert make_bag.main(args + (["--compressed"] if compressed else [])) == 0


@pytest.mark.parametrize(
    "storage,compressed,pacing",
    [
        ("sqlite3", False, []),
        ("mcap", True, ["--as-fast-as-node"]),
    ],
    ids=["sqlite3-raw-recorded-rate", "mcap-jpeg-as-fast-as-node"],
)
def test_replay_round_trip(tmp_path, colour_model, storage, compressed, pacing):
    bag, out_bag = tmp_path / "in", tmp_path / "out"
    make_demo_bag(bag, storage, compressed)
    proc = seg_replay(
        str(bag),
        "--backend",
        "onnx",
        "--model-path",
        colour_model,
        "--out-bag",
        str(out_bag),
        "--compare-offline",
        "--node-log",
        str(tmp_path / "node.log"),
        *pacing,
    )
    assert proc.returncode == 0, proc.stderr + "\nnode log:\n" + (tmp_path / "node.log").read_text()
    summary = json.loads(proc.stdout)  # exactly one JSON document on stdout
    sent, done = summary["frames_sent"], summary["frames_processed"]
    assert sent == FRAMES and 0 < done <= sent and summary["frames_dropped"] == sent - done
    assert summary["node"]["frames_processed"] == done, summary["node"]
    assert summary["latency_ms"]["n"] == done and summary["latency_ms"]["p50"] > 0

    # outputs recorded with the ORIGINAL stamps, in the input's storage format
    assert bags.storage_of(out_bag) == storage
    in_stamps = set(bags.stamps_of(bag, summary["topic"]))
    labels = [m for _, m in bags.read_topic(out_bag, bags.LABELS_TOPIC)]
    instances = [m for _, m in bags.read_topic(out_bag, bags.INSTANCES_TOPIC)]
    assert len(labels) == done and len(instances) == done
    label_stamps = {stamp_of(m) for m in labels}
    assert label_stamps <= in_stamps and len(label_stamps) == done
    assert {stamp_of(m) for m in instances} == label_stamps
    assert (labels[0].encoding, labels[0].width, labels[0].height) == ("mono8", 640, 480)
    assert instances[0].encoding == "mono16"

    # live and offline agree on the processed frames
    acc, off = summary["accuracy"], summary["offline_on_processed"]
    assert acc["frames_evaluated"] == done and off["frames_evaluated"] == done
    assert off["frames_identical_labels"] == done and off["model_matches_node"] is True
    assert acc["miou"] == pytest.approx(off["miou"], abs=1e-6)


def test_replay_missing_topic_fails_before_starting_anything(tmp_path, colour_model):
    bag = tmp_path / "in"
    make_demo_bag(bag, "mcap", False)
    proc = seg_replay(
        str(bag), "--topic", "/camera/missing", "--backend", "onnx", "--model-path", colour_model, timeout=30
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert "'/camera/missing' is not in the bag" in proc.stderr and bags.CAMERA_TOPIC in proc.stderr
    assert not (tmp_path / "in_seg").exists(), "no output bag on a failed start"
