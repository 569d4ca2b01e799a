"""README command 1 (issue: replay + demo): seg-demo renders its own stream, writes it as a bag,
replays it through a node on the default backend over real DDS and reports."""

import json

import pytest

pytest.importorskip("rclpy")

from seg_perception.tools import demo  # noqa: E402

pytestmark = [pytest.mark.dds, pytest.mark.slow]


def test_demo_bag_replay_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert demo.main(["--frames", "12", "--rate", "10", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert printed == demo.plain_summary(summary, out, rendered=True) + "\n"  # words on the screen, JSON in the file
    assert summary["backend"] == "tflite_int8" and summary["mode"] == "live"
    assert summary["frames_sent"] == 12
    assert summary["frames_processed"] >= 6, summary
    assert summary["frames_processed"] + summary["frames_dropped"] == 12
    assert (out / "camera_bag" / "metadata.yaml").is_file()
    assert (out / "segmentation_bag" / "metadata.yaml").is_file()
    assert (out / "report.png").stat().st_size > 10_000
    assert summary["overlays"] and all(
        (out / f"overlay_{k:02d}.png").is_file() for k in range(len(summary["overlays"]))
    )
    acc = summary["accuracy"]
    assert acc["frames_evaluated"] == summary["frames_processed"] and acc["miou"] is not None
    # rendered depth: the node measured 3D boxes, scored against the rendered truth beside the 2D numbers
    geo = summary["geometry"]
    assert geo["depth_frames_published"] == 12 and geo["marker_arrays"] == summary["frames_processed"], geo
    assert geo["accuracy_3d"]["frames"] == summary["frames_processed"] and geo["accuracy_3d"]["objects_true"] > 0


def test_demo_rejects_zero_rendered_frames(tmp_path):
    assert demo.main(["--frames", "0", "--out", str(tmp_path / "d")]) == 2
