"""seg-bench --depth over real DDS: two nodes (without / with depth), frames in turn, every output
received raw and timed before the bench decodes it."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("visualization_msgs.msg")

from seg_perception.tools.bench_depth import bench_node_depth  # noqa: E402

pytestmark = [pytest.mark.dds, pytest.mark.slow]


def test_depth_bench_times_every_output_of_every_frame(tmp_path):
    row = bench_node_depth("tflite_int8", runs=4, threads=1, workdir=tmp_path)
    assert "depth_node_error" not in row, row
    assert row["frames_lost"] == 0 and row["runs"] == 4
    for key in ("rgb_labels", "rgb_last", "rgbd_labels", "rgbd_poses", "rgbd_markers"):
        assert 0 < row[key]["p50"] <= row[key]["p95"] < 2000, (key, row)
    # the depth node's outputs come in the order it sends them: labels, then poses, then markers
    assert row["rgbd_labels"]["p50"] <= row["rgbd_poses"]["p50"] <= row["rgbd_markers"]["p50"], row
    # the rendered scenes hold several objects; the default model finds some of them in 3D
    assert row["objects_3d_per_frame"] >= 1, row
    assert row["node_geometry_ms_p50"] > 0, row
    # the bench's own decoding of the markers is measured apart from the latencies
    assert 0 < row["bench_markers_decode_ms_p50"] < 50 and not math.isnan(row["bench_markers_decode_ms_p50"]), row
    assert row["added_to_last_output_ms_p50"] == round(row["rgbd_markers"]["p50"] - row["rgb_last"]["p50"], 2)
