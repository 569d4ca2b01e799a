"""seg-make-bag and seg-replay without DDS: bag layout, stamps, ground truth, errors, offline mIoU.

Everything is generated in tmp_path (no dataset pixels); the model is the hand-built colour
ONNX model, so the expected labels come from running the same Segmenter directly.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rosbags")

from seg_perception.classes import load_classes  # noqa: E402
from seg_perception.config import NodeConfig  # noqa: E402
from seg_perception.demo_scene3d import render_scene  # noqa: E402
from seg_perception.metrics import iou_per_class  # noqa: E402
from seg_perception.pipeline import make_segmenter  # noqa: E402
from seg_perception.stamps import ns_to_stamp, stamp_of, stamp_to_ns  # noqa: E402
from seg_perception.tools import bags, make_bag, replay  # noqa: E402
from seg_perception.tools.errors import UsageError  # noqa: E402

STORAGES = ["sqlite3", "mcap"]
START = 1_700_000_000


def _make(args, capsys) -> dict:
    assert make_bag.main([str(a) for a in args]) == 0
    return json.loads(capsys.readouterr().out)


def _topics(path: Path) -> dict:
    reader = bags.open_reader(path)
    try:
        return {k: (v.msgtype, v.count) for k, v in bags.topics_of(reader).items()}
    finally:
        reader.close()


def _expected_stamps(n: int, rate: float):
    return [ns_to_stamp(START * 10**9 + int(round(i * 1e9 / rate))) for i in range(n)]


# --- seg-make-bag -----------------------------------------------------------------------------
@pytest.mark.parametrize("storage", STORAGES)
def test_make_bag_from_image_folder(tmp_path, capsys, storage):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(3)]
    for i, rgb in enumerate(images):
        cv2.imwrite(str(folder / f"f{i:02d}.png"), rgb[:, :, ::-1])
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "bag"
    summary = _make(
        ["--images", folder, "--out", out, "--storage", storage, "--rate", "4", "--frame-id", "cam"], capsys
    )
    assert summary["frames"] == 3
    assert bags.storage_of(out) == storage
    assert _topics(out) == {bags.CAMERA_TOPIC: (bags.IMAGE_TYPE, 3), bags.CAMERA_INFO_TOPIC: (bags.CAMERA_INFO_TYPE, 3)}
    msgs = list(bags.read_topic(out, bags.CAMERA_TOPIC))
    assert [stamp_of(m) for _, m in msgs] == _expected_stamps(3, 4.0)
    assert [t for t, _ in msgs] == [stamp_to_ns(s) for s in _expected_stamps(3, 4.0)]  # log time = stamp
    for (_, m), rgb in zip(msgs, images, strict=False):  # sorted by name, PNG is lossless
        assert (m.encoding, m.header.frame_id) == ("rgb8", "cam")
        np.testing.assert_array_equal(bags.decode_camera(m, bags.IMAGE_TYPE), rgb)
    info = [m for _, m in bags.read_topic(out, bags.CAMERA_INFO_TOPIC)]
    assert (info[0].width, info[0].height) == (64, 48)
    assert info[0].k[2] == pytest.approx(31.5) and info[0].k[0] == info[0].k[4] > 0


def _atwork_tree(root: Path) -> dict:
    """Two classes, two photos each with masks (object id / 19 = background), one photo without mask."""
    names = load_classes("full").names
    made = {}
    for cls in ("axis", "motor"):
        cid = names.index(cls)
        (root / "objects" / "image" / cls).mkdir(parents=True)
        (root / "objects" / "semantic_labels" / cls).mkdir(parents=True)
        for k in range(2):
            rgb = np.full((40, 56, 3), 90 + 40 * k, np.uint8)
            mask = np.full((40, 56), 19, np.uint8)
            mask[10:30, 8 + k : 40] = cid
            stem = f"{cls}_{k:03d}"
            cv2.imwrite(str(root / "objects" / "image" / cls / f"{stem}.jpg"), rgb)
            cv2.imwrite(str(root / "objects" / "semantic_labels" / cls / f"{stem}.png"), mask)
            made[stem] = (cid, mask)
    cv2.imwrite(str(root / "objects" / "image" / "axis" / "axis_099.jpg"), np.zeros((40, 56, 3), np.uint8))
    return made


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("compressed", [False, True])
def test_make_bag_from_atwork_layout_remaps_background(tmp_path, capsys, storage, compressed):
    made = _atwork_tree(tmp_path / "atwork")
    out = tmp_path / "bag"
    args = ["--atwork", tmp_path / "atwork", "--out", out, "--storage", storage, "--rate", "8"]
    summary = _make(args + (["--compressed"] if compressed else []), capsys)
    assert summary["frames"] == 4, "the photo without a mask is skipped"
    cam_topic, cam_type = (
        (bags.COMPRESSED_TOPIC, bags.COMPRESSED_TYPE) if compressed else (bags.CAMERA_TOPIC, bags.IMAGE_TYPE)
    )
    assert _topics(out) == {
        cam_topic: (cam_type, 4),
        bags.GT_TOPIC: (bags.IMAGE_TYPE, 4),
        bags.CAMERA_INFO_TOPIC: (bags.CAMERA_INFO_TYPE, 4),
    }
    gts = list(bags.read_topic(out, bags.GT_TOPIC))
    cams = list(bags.read_topic(out, cam_topic))
    assert [stamp_of(m) for _, m in gts] == [stamp_of(m) for _, m in cams] == _expected_stamps(4, 8.0)
    for (_, m), (cid, mask) in zip(gts, [made[s] for s in sorted(made)], strict=False):  # class folder, then file name
        gt = bags.gt_to_array(m)
        assert m.encoding == "mono8" and gt.shape == mask.shape
        np.testing.assert_array_equal(gt, np.where(mask == 19, 0, cid))  # 19 -> background 0
    assert bags.custom_data(out)[bags.GT_VARIANT_KEY] == "full"
    if compressed:
        assert "jpeg" in cams[0][1].format
        assert bags.decode_camera(cams[0][1], cam_type).shape == (40, 56, 3)


def test_make_bag_errors_are_clean(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert make_bag.main(["--images", str(tmp_path / "empty"), "--out", str(tmp_path / "b")]) == 2
    assert not (tmp_path / "b").exists()
    assert make_bag.main(["--atwork", str(tmp_path), "--out", str(tmp_path / "b")]) == 2
    assert make_bag.main(["--demo", "1", "--size", "120x100", "--out", str(tmp_path / "d")]) == 2, "too small"
    assert make_bag.main(["--demo", "1", "--size", "192x176", "--out", str(tmp_path / "d")]) == 0
    assert make_bag.main(["--demo", "1", "--size", "192x176", "--out", str(tmp_path / "d")]) == 2, "never clobbers"
    assert make_bag.main(["--demo", "1", "--size", "192x176", "--out", str(tmp_path / "d"), "--overwrite"]) == 0
    capsys.readouterr()


def test_make_bag_to_an_unwritable_path_is_one_line_and_exit_2(tmp_path, capsys, caplog):
    (tmp_path / "a_file").write_text("not a folder")
    assert make_bag.main(["--demo", "1", "--size", "192x176", "--out", str(tmp_path / "a_file" / "bag")]) == 2
    err = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(err) == 1 and "cannot write" in err[0].getMessage() and "a_file" in err[0].getMessage()
    assert capsys.readouterr().out == ""


def test_argument_errors_are_usage_errors_not_bag_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no images"):
        make_bag.image_folder_frames(tmp_path / "empty")
    with pytest.raises(UsageError, match="--rate"):
        make_bag.write_bag(iter(()), make_bag.BagSpec(tmp_path / "b", rate_hz=0))
    from seg_perception.tools.replay.node_config import parse_params

    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_params(["nonsense=1"])
    assert not issubclass(UsageError, bags.BagError)


# --- seg-replay: plan and errors --------------------------------------------------------------------
@pytest.fixture()
def demo_bag(tmp_path, capsys) -> Path:
    out = tmp_path / "demo"
    _make(["--demo", "3", "--size", "256x192", "--out", out, "--storage", "sqlite3"], capsys)
    return out


def test_replay_missing_topic_is_a_clean_error(demo_bag, capsys, caplog):
    assert replay.main([str(demo_bag), "--topic", "/nope", "--offline"]) == 2
    text = caplog.text
    assert "'/nope' is not in the bag" in text and bags.CAMERA_TOPIC in text and bags.GT_TOPIC in text
    assert capsys.readouterr().out == "", "no summary on failure"
    with pytest.raises(bags.BagError, match="CameraInfo"):
        replay.plan_replay(demo_bag, bags.CAMERA_INFO_TOPIC, bags.GT_TOPIC, False)
    with pytest.raises(bags.BagError, match="ground-truth topic '/gt' is not in the bag"):
        replay.plan_replay(demo_bag, None, "/gt", True)
    plan = replay.plan_replay(demo_bag, None, "/gt", False)  # default gt topic absent: no metrics, no error
    assert (plan.topic, plan.gt_topic, plan.frames, plan.first_hw) == (bags.CAMERA_TOPIC, None, 3, (192, 256))


def test_replay_picks_camera_not_labels_topic():
    topics = {
        "/a/labels_gt": bags.TopicInfo(bags.IMAGE_TYPE, 1),
        "/z/cam": bags.TopicInfo(bags.IMAGE_TYPE, 1),
        "/b/info": bags.TopicInfo(bags.CAMERA_INFO_TYPE, 1),
    }
    assert bags.select_camera_topic(topics) == "/z/cam"
    with pytest.raises(bags.BagError, match="no sensor_msgs/msg/Image"):
        bags.select_camera_topic({"/b/info": topics["/b/info"]})


def test_replay_unsupported_encoding_is_a_clean_error(tmp_path, caplog):
    out = tmp_path / "yuv"
    with bags.BagWriter(out, "mcap") as w:
        for i in range(2):
            msg = bags.image_message(np.zeros((8, 16, 2), np.uint8), "yuv422", (START, i), "cam")
            w.write(bags.CAMERA_TOPIC, bags.IMAGE_TYPE, START * 10**9 + i, msg)
    assert replay.main([str(out), "--offline"]) == 2
    assert "'yuv422'" in caplog.text and "first message" in caplog.text
    assert replay.main([str(out / "yuv.mcap"), "--offline"]) == 2, "a bare .mcap file is read too"


def test_replay_refuses_existing_output_and_bad_args(demo_bag, caplog):
    assert replay.main([str(demo_bag), "--offline", "--out-bag", str(demo_bag)]) == 2
    assert "exists" in caplog.text
    assert replay.main([str(demo_bag), "--offline", "-p", "nonsense=1"]) == 2
    assert replay.main([str(demo_bag), "--rate", "0"]) == 2
    assert replay.main([str(demo_bag / "nothing")]) == 2


@pytest.mark.parametrize(
    "metadata",
    [
        "rosbag2_bagfile_information: [\n",
        "just text\n",
        "rosbag2_bagfile_information:\n  version: 9\n  storage_identifier: mcap\n",
    ],
)
def test_replay_of_a_bag_with_broken_metadata_is_one_line_and_exit_2(demo_bag, caplog, capsys, metadata):
    (demo_bag / "metadata.yaml").write_text(metadata)
    assert replay.main([str(demo_bag), "--offline"]) == 2
    err = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(err) == 1 and ("metadata.yaml" in err[0] or "cannot open bag" in err[0]), err
    assert "Traceback" not in caplog.text and capsys.readouterr().out == ""


# --- metrics ------------------------------------------------------------------------------------
def test_confusion_miou_conventions():
    gt = np.array([[0, 0, 1, 255]], np.uint8)
    pred = np.array([[0, 2, 1, 1]], np.uint8)
    cm = replay.confusion(gt, pred, 4)
    assert cm.sum() == 3, "255 is ignored"
    iou = iou_per_class(cm)
    assert iou[0] == pytest.approx(0.5) and iou[1] == 1.0 and iou[2] == 0.0, "a false alarm class counts 0"
    assert np.isnan(iou[3]), "absent everywhere: undefined, left out of the mean"
    assert replay.miou(cm) == pytest.approx(0.5)
    assert replay.miou(np.zeros((3, 3), np.int64)) is None


# --- offline replay: known mIoU --------------------------------------------------------------------
def _direct_miou(model: str, frames, num_classes: int) -> float:
    seg = make_segmenter(NodeConfig(backend="onnx", model_path=model))
    cm = sum(replay.confusion(gt, seg.run(rgb).labels, num_classes) for rgb, gt in frames)
    return replay.miou(cm)


@pytest.mark.parametrize("storage", STORAGES)
def test_offline_replay_matches_segmenter(tmp_path, capsys, colour_model, storage):
    bag = tmp_path / "demo"
    _make(["--demo", "4", "--size", "320x240", "--out", bag, "--storage", storage], capsys)
    out_bag = tmp_path / "labels"
    report = tmp_path / "report.png"
    rc = replay.main(
        [
            str(bag),
            "--offline",
            "--backend",
            "onnx",
            "--model-path",
            colour_model,
            "--out-bag",
            str(out_bag),
            "--report",
            str(report),
        ]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    classes = load_classes("full")
    frames = []
    for seed in range(4):
        scene = render_scene(seed, (240, 320))
        frames.append((scene.rgb, classes.remap_full(scene.labels)))
    expected = _direct_miou(colour_model, frames, classes.num_classes)
    assert summary["mode"] == "offline" and summary["frames_processed"] == 4
    assert summary["accuracy"]["frames_evaluated"] == 4
    assert summary["accuracy"]["miou"] == pytest.approx(expected, abs=1e-12)
    assert set(summary["accuracy"]["per_class_iou"]) == set(classes.names)
    # the output bag: labels and instances with the input stamps, same storage as the input
    assert bags.storage_of(out_bag) == storage
    in_stamps = bags.stamps_of(bag, bags.CAMERA_TOPIC)
    assert bags.stamps_of(out_bag, bags.LABELS_TOPIC) == in_stamps
    assert bags.stamps_of(out_bag, bags.INSTANCES_TOPIC) == in_stamps
    seg = make_segmenter(NodeConfig(backend="onnx", model_path=colour_model))
    first = next(m for _, m in bags.read_topic(out_bag, bags.LABELS_TOPIC))
    np.testing.assert_array_equal(bags.gt_to_array(first), seg.run(frames[0][0]).labels)
    assert report.stat().st_size > 10_000 and report.read_bytes()[:4] == b"\x89PNG"


def test_offline_replay_on_palette_scenes_is_near_perfect(tmp_path, capsys, colour_model):
    """Frames in palette colours: the colour model's answer is known, so the score must be high."""
    from colour_model import render_scene

    bag = tmp_path / "scenes"
    frames = [render_scene(seed=s) for s in range(3)]
    with bags.BagWriter(bag, "mcap") as w:
        for i, (rgb, gt) in enumerate(frames):
            stamp = (START + i, 0)
            t = stamp_to_ns(stamp)
            w.write(bags.COMPRESSED_TOPIC, bags.COMPRESSED_TYPE, t, bags.compressed_message(rgb, stamp, "cam", 100))
            w.write(bags.GT_TOPIC, bags.IMAGE_TYPE, t, bags.image_message(gt, "mono8", stamp, "cam"))
    assert replay.main([str(bag), "--offline", "--backend", "onnx", "--model-path", colour_model]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["msgtype"] == bags.COMPRESSED_TYPE
    names = load_classes("full").names
    per_class = summary["accuracy"]["per_class_iou"]
    for cls in (0, 3, 7, 14):  # the classes in the scenes; blended edge pixels add a few false alarms
        assert per_class[names[cls]] > 0.85, (names[cls], per_class)


def test_atwork_split_matches_the_training_split(tmp_path):
    """--split val/train take exactly the photos training validates / trains on."""
    from seg_perception.atwork import list_samples, split_samples

    _atwork_tree(tmp_path / "atwork")
    train, val = split_samples(list_samples(tmp_path / "atwork"))
    for split, want in (("train", train), ("val", val)):
        got = make_bag.atwork_pairs(tmp_path / "atwork", split)
        assert got == [(s.image_path, s.label_path) for s in want]
    assert len(make_bag.atwork_pairs(tmp_path / "atwork")) == len(train) + len(val) == 4
    with pytest.raises(UsageError, match="not one of"):
        make_bag.atwork_pairs(tmp_path / "atwork", "test")


def test_replay_params_parse_booleans_by_word():
    from seg_perception.tools.replay.node_config import parse_params

    assert parse_params(["autostart=false", "overlay_alpha=1", "num_threads=2.0"]) == {
        "autostart": False,
        "overlay_alpha": 1.0,
        "num_threads": 2,
    }
    assert parse_params(["autostart=True"]) == {"autostart": True}
    with pytest.raises(UsageError, match="autostart needs a bool"):
        parse_params(["autostart=maybe"])


def test_replay_waits_for_node_counters_that_count_every_output():
    """The node counts a frame after publishing it: a status read in between trails the outputs by one."""
    from types import SimpleNamespace

    from seg_perception.tools.replay.live import LiveReplay

    statuses = iter([{"frames_processed": "4"}, {"frames_processed": "4"}, {"frames_processed": "5"}])
    latest = {"frames_processed": "0"}

    def diag_values() -> dict:
        latest.update(next(statuses, latest))
        return dict(latest)

    live = SimpleNamespace(
        client=SimpleNamespace(diag_values=diag_values),
        state=SimpleNamespace(done={i: None for i in range(5)}),
        cfg=SimpleNamespace(diagnostics_period_s=0.2),
    )
    assert LiveReplay.node_counters(live, {"frames_processed": "0"})["frames_processed"] == 5
    # a node that never catches up: after a few periods the tool reports what it has
    live.state.done[5] = None
    assert LiveReplay.node_counters(live, {"frames_processed": "0"})["frames_processed"] == 5
