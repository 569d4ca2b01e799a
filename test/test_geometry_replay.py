"""3D scoring against rendered truth (geometry_eval), depth in demo bags, and seg-replay --offline with depth."""

import json
import math

import numpy as np
import pytest

from seg_perception.classes import load_classes
from seg_perception.demo_scene3d import Placement, render_objects, render_scene
from seg_perception.geometry import Object3D, default_camera
from seg_perception.geometry_eval import (
    Box,
    GeometryScore,
    box_of,
    boxes_from_markers,
    match,
    truth_to_json,
    truths_from_json,
)
from seg_perception.stamps import ns_to_stamp, stamp_of, stamp_to_ns

pytest.importorskip("rosbags")
from seg_perception.tools import bags, make_bag, replay  # noqa: E402

NAMES = load_classes("full").names


def _box(name, centre, yaw, dims, symmetric=False):
    c, s = math.cos(yaw), math.sin(yaw)
    return Box(
        name,
        np.array(centre, float),
        np.array([c, s, 0.0]),
        np.array([0, 0, 1.0]),
        np.array(dims, float),
        symmetric,
        dims[0] >= 1.5 * dims[1],
    )


def test_score_known_errors():
    truth = [
        _box("f20_20_B", [0, 0, 0.5], 0.3, [0.1, 0.02, 0.02]),
        _box("m30", [0.1, 0, 0.5], 0.0, [0.053, 0.046, 0.026], True),
        _box("motor", [-0.1, 0, 0.5], 0.0, [0.087, 0.042, 0.042]),
    ]
    pred = [
        _box("s40_40_B", [0.003, 0.004, 0.5], 0.3 + math.radians(4), [0.11, 0.02, 0.018]),  # 5 mm, 4 deg
        _box("m30", [0.1, 0, 0.501], 1.0, [0.053, 0.053, 0.026]),  # symmetric: width = its largest side
        _box("axis", [0.3, 0.3, 0.5], 0.0, [0.1, 0.03, 0.03]),
    ]  # nowhere near the motor: extra + missed
    score = GeometryScore()
    score.add(pred, truth)
    s = score.summary()
    assert (s["objects_true"], s["matched"], s["missed"], s["extra"], s["class_agrees"]) == (3, 2, 1, 1, 1)
    assert s["position_error_mm"]["max"] == pytest.approx(5.0) and s["position_error_mm"]["n"] == 2
    assert s["yaw_error_deg_elongated"] == {
        "n": 1,
        "median": pytest.approx(4.0),
        "p90": pytest.approx(4.0),
        "max": pytest.approx(4.0),
    }
    assert s["dimension_error_rel"]["max"] == pytest.approx(0.1) and s["dimension_error_rel"]["n"] == 6
    # the width of a box reported turned by 90 degrees is still compared with the width
    assert [p[1].class_name for p in match([_box("x", [0, 0, 0.5], 0, [1, 1, 1])], truth, 0.001)] == ["f20_20_B"]


def test_truth_json_and_markers_round_trip():
    scene = render_objects([Placement("axis", 0.0, 0.0, 0.4), Placement("m20", 0.08, 0.0, 0.0)], tilt_deg=45)
    truths = truths_from_json(truth_to_json(scene.truths, (5, 6), "cam"))
    assert json.loads(truth_to_json(scene.truths, (5, 6), "cam"))["stamp"] == [5, 6]
    assert [t.class_name for t in truths] == ["axis", "m20"] and truths[1].symmetric and truths[0].elongated
    assert np.allclose(truths[0].center, scene.truths[0].center, atol=1e-6)
    pytest.importorskip("visualization_msgs.msg")
    from std_msgs.msg import Header

    from seg_perception.object_msgs import object_markers

    t = scene.truths[0]
    obj = Object3D(1, t.class_id, t.class_name, 1.0, t.center, t.rotation, t.dims, t.yaw, 100, True)
    boxes = boxes_from_markers(object_markers([obj], Header(), load_classes("full").palette()).markers)
    assert len(boxes) == 1 and boxes[0].class_name == "axis"
    score = GeometryScore()
    score.add(boxes, truths[:1])
    s = score.summary()
    assert s["position_error_mm"]["max"] < 1e-3 and s["yaw_error_deg_elongated"]["max"] < 1e-3
    assert box_of(obj).dims.tolist() == list(t.dims)


def test_demo_bag_has_depth_camera_info_and_truth(tmp_path, capsys):
    out = tmp_path / "demo"
    assert make_bag.main(["--demo", "2", "--size", "320x240", "--out", str(out)]) == 0
    capsys.readouterr()
    topics = {n: (t.msgtype, t.count) for n, t in bags.topics_of(bags.open_reader(out)).items()}
    assert topics[bags.DEPTH_TOPIC] == (bags.IMAGE_TYPE, 2) and topics[bags.OBJECTS_GT_TOPIC] == (bags.STRING_TYPE, 2)
    # the depth image sorts before image_raw, but is not the camera (regression: it was picked)
    assert replay.plan_replay(out, None, bags.GT_TOPIC, False).topic == bags.CAMERA_TOPIC
    cam = default_camera(320, 240)
    for seed, ((_, d), (_, info), (_, gt)) in enumerate(
        zip(
            bags.read_topic(out, bags.DEPTH_TOPIC),
            bags.read_topic(out, bags.CAMERA_INFO_TOPIC),
            bags.read_topic(out, bags.OBJECTS_GT_TOPIC),
            strict=False,
        )
    ):
        scene = render_scene(seed, (240, 320))
        assert (d.encoding, d.width, d.height) == ("16UC1", 320, 240)
        np.testing.assert_array_equal(np.frombuffer(d.data.tobytes(), "<u2").reshape(240, 320), scene.depth_mm)
        assert np.allclose(np.asarray(info.k).reshape(3, 3), cam.k())
        doc = json.loads(gt.data)
        assert tuple(doc["stamp"]) == stamp_of(d)
        assert [o["class_name"] for o in doc["objects"]] == [t.class_name for t in scene.truths]


def _palette_bag(path, n=3, depth_offset_ns=0):
    """Palette-coloured rendered scenes (the colour model segments them) with depth, camera info, truth."""
    with bags.BagWriter(path, "mcap") as w:
        for i in range(n):
            rng = np.random.default_rng(i)
            places = [
                Placement("s40_40_G", -0.06, 0.0, float(rng.uniform(-1.5, 1.5))),
                Placement("axis", 0.07, 0.04, float(rng.uniform(-1.5, 1.5))),
                Placement("m30", 0.0, 0.09, 0.0),
            ]
            scene = render_objects(places, tilt_deg=[0.0, 25.0, 45.0][i % 3], palette_colours=True)
            stamp = (1_700_000_000 + i, 0)
            t = stamp_to_ns(stamp)
            w.write(bags.CAMERA_TOPIC, bags.IMAGE_TYPE, t, bags.image_message(scene.rgb, "rgb8", stamp, "cam"))
            w.write(bags.GT_TOPIC, bags.IMAGE_TYPE, t, bags.image_message(scene.labels, "mono8", stamp, "cam"))
            w.write(
                bags.CAMERA_INFO_TOPIC,
                bags.CAMERA_INFO_TYPE,
                t,
                bags.camera_info_message(480, 640, stamp, "cam", scene.camera),
            )
            d_stamp = ns_to_stamp(t + depth_offset_ns)  # a real camera stamps depth a little apart
            w.write(bags.DEPTH_TOPIC, bags.IMAGE_TYPE, t, bags.image_message(scene.depth_mm, "16UC1", d_stamp, "cam"))
            w.write(
                bags.OBJECTS_GT_TOPIC,
                bags.STRING_TYPE,
                t,
                bags.string_message(truth_to_json(scene.truths, stamp, "cam")),
            )


@pytest.fixture(scope="module")
def full_res_colour_model(tmp_path_factory):
    from colour_model import make_colour_model

    d = tmp_path_factory.mktemp("fullres")
    make_colour_model(d, hw=(480, 640), down=1)
    return str(d / "colour.onnx")


def test_offline_replay_scores_3d_boxes(tmp_path, capsys, full_res_colour_model):
    bag = tmp_path / "palette"
    _palette_bag(bag)
    assert (
        replay.main(
            [
                str(bag),
                "--offline",
                "--backend",
                "onnx",
                "--model-path",
                full_res_colour_model,
                "-p",
                "min_object_area=50",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    geo = summary["geometry"]
    acc = geo["accuracy_3d"]
    assert geo["marker_arrays"] == 3 and (acc["objects_true"], acc["matched"], acc["extra"]) == (9, 9, 0), geo
    assert acc["class_agrees"] == 9
    assert acc["position_error_mm"]["median"] <= 5.0 and acc["dimension_error_rel"]["median"] <= 0.10
    assert acc["yaw_error_deg_elongated"]["n"] == 6 and acc["yaw_error_deg_elongated"]["max"] <= 5.0
    # without depth use, no geometry in the summary
    assert (
        replay.main(
            [str(bag), "--offline", "--backend", "onnx", "--model-path", full_res_colour_model, "-p", "use_depth=false"]
        )
        == 0
    )
    assert "geometry" not in json.loads(capsys.readouterr().out)
    assert replay.main([str(bag), "--offline", "-p", "use_depth=maybe"]) == 2


def test_offline_replay_pairs_depth_by_nearest_stamp(tmp_path, capsys, full_res_colour_model):
    model = ["--backend", "onnx", "--model-path", full_res_colour_model, "-p", "min_object_area=50"]
    near, far = tmp_path / "near", tmp_path / "far"
    _palette_bag(near, n=2, depth_offset_ns=5_000_000)  # 5 ms: within depth_sync_tolerance_s = 0.02
    _palette_bag(far, n=2, depth_offset_ns=50_000_000)  # 50 ms: never paired
    assert replay.main([str(near), "--offline", *model]) == 0
    geo = json.loads(capsys.readouterr().out)["geometry"]
    assert geo["accuracy_3d"]["matched"] == 6 and geo["frames_without_depth"] == 0
    assert replay.main([str(far), "--offline", *model]) == 0
    geo = json.loads(capsys.readouterr().out)["geometry"]
    assert geo["accuracy_3d"]["frames"] == 0 and geo["frames_without_depth"] == 2
    assert replay.main([str(far), "--offline", *model, "-p", "depth_sync_tolerance_s=0.06"]) == 0
    assert json.loads(capsys.readouterr().out)["geometry"]["accuracy_3d"]["matched"] == 6
