"""The node's 3D step without ROS: instance boxes and scores, then boxes from depth (seg_perception.objects3d)."""

from types import SimpleNamespace

import numpy as np
import pytest

from seg_perception.classes import load_classes
from seg_perception.demo_scene3d import render_scene
from seg_perception.geometry import measure_objects
from seg_perception.objects3d import ObjectGeometry, instance_boxes
from seg_perception.postprocess import (
    extract_objects,
    label_instances,
    resize_nearest,
    scores_to_labels,
    upsample_bilinear,
)

NAMES = load_classes("full").names


def test_instance_boxes_cover_the_exact_boxes_and_give_the_same_boxes_3d():
    for seed in range(4):
        sc = render_scene(seed, (240, 320))
        exact = extract_objects(sc.labels, sc.instances, NAMES)
        fast = instance_boxes(sc.labels, sc.instances, NAMES)
        assert [(o.instance_id, o.class_id, o.class_name) for o in fast] == [
            (o.instance_id, o.class_id, o.class_name) for o in exact
        ]
        for f, e in zip(fast, exact, strict=False):
            (fx, fy, fw, fh), (ex, ey, ew, eh) = f.bbox, e.bbox
            assert fx <= ex and fy <= ey and fx + fw >= ex + ew and fy + fh >= ey + eh  # covers it ...
            assert ex - fx <= 2 and ey - fy <= 2 and fx + fw - ex - ew <= 4 and fy + fh - ey - eh <= 4  # ... closely
            assert f.score == 1.0
        geo = ObjectGeometry(NAMES)
        a, _ = measure_objects(sc.depth_mm, sc.labels, sc.instances, exact, sc.camera, geo.cfg)
        b, _ = measure_objects(sc.depth_mm, sc.labels, sc.instances, fast, sc.camera, geo.cfg)
        for x, y in zip(a, b, strict=False):
            assert np.allclose(x.center, y.center, atol=5e-4) and np.allclose(x.dims, y.dims, atol=1e-3)  # other crop
    assert instance_boxes(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint16), NAMES) == []


def test_object_scores_sampled_from_the_model_output():
    rng = np.random.default_rng(0)
    h, w, c = 12, 16, 19
    logits = rng.normal(0, 2, (h, w, c)).astype(np.float32)
    labels, conf = scores_to_labels(logits, want_confidence=True)
    big_labels = np.repeat(np.repeat(labels, 4, 0), 4, 1)
    inst = np.zeros((48, 64), np.uint16)
    inst[8:24, 16:40] = 1  # object 1: model pixels rows 2..5, cols 4..9
    (box,) = instance_boxes(big_labels, inst, NAMES, scores=logits, samples=64)
    assert abs(box.score - conf[2:6, 4:10].mean()) < 1e-5
    q_scale, q_zero = 0.05, -3
    q = np.clip(np.round(logits / q_scale) + q_zero, -128, 127).astype(np.int8)
    (qbox,) = instance_boxes(big_labels, inst, NAMES, scores=q, quant=(q_scale, q_zero), samples=64)
    assert abs(qbox.score - box.score) < 0.02
    # several objects: each gets the mean over its own pixels (the samples of all are scored together)
    inst[28:40, 44:64] = 2  # model rows 7..9, cols 11..15
    inst[40:48, 0:8] = 3  # model rows 10..11, cols 0..1
    boxes = instance_boxes(big_labels, inst, NAMES, scores=logits, samples=64)
    assert [b.instance_id for b in boxes] == [1, 2, 3]
    want = [conf[2:6, 4:10].mean(), conf[7:10, 11:16].mean(), conf[10:12, 0:2].mean()]
    assert np.allclose([b.score for b in boxes], want, atol=1e-5)


def test_run_finds_objects_itself():
    sc = render_scene(2, (240, 320))
    depth = SimpleNamespace(
        encoding="16UC1", height=240, width=320, step=640, is_bigendian=0, data=sc.depth_mm.tobytes()
    )
    info = SimpleNamespace(k=sc.camera.k().reshape(-1).tolist(), width=320, height=240)
    out = ObjectGeometry(NAMES).run(depth, info, sc.labels, sc.instances)
    assert [o.instance_id for o in out.objects] == [t.instance_id for t in sc.truths] and out.no_pose == []
    assert out.ms > 0


def _segment(scores: np.ndarray, hw: tuple[int, int], upsampling: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What Segmenter.run does after the backend: labels and instances on the grid, then at the frame."""
    low_labels, _ = scores_to_labels(scores)
    low_inst = label_instances(low_labels)
    if upsampling == "bilinear":
        labels, inst = upsample_bilinear(scores, low_labels, low_inst, hw)
    else:
        labels, inst = resize_nearest(low_labels, hw), resize_nearest(low_inst, hw)
    return labels, inst, low_inst


def test_instance_boxes_from_the_grid_map_are_the_exact_boxes():
    """From the instance map on the scores' grid the boxes are exact (as extract_objects finds them over
    the whole frame) for both upsamplings, grids that do not divide the frame, odd frame sizes, objects
    at the image border and instances the upsampling leaves without a frame pixel (none, as there)."""
    rng = np.random.default_rng(3)
    checked = 0
    for grid, frame in (((64, 80), (480, 640)), ((17, 23), (481, 641)), ((32, 40), (100, 130)), ((9, 7), (64, 50))):
        for upsampling in ("bilinear", "nearest"):
            for _ in range(3):
                logits = rng.normal(0, 1, (*grid, 6)).astype(np.float32)
                logits[..., 0] += 1.0  # mostly background, many small objects of five classes
                labels, inst, coarse = _segment(logits, frame, upsampling)
                exact = extract_objects(labels, inst, NAMES)
                got = instance_boxes(labels, inst, NAMES, coarse=coarse)
                assert [(o.instance_id, o.class_id, o.bbox) for o in got] == [
                    (o.instance_id, o.class_id, o.bbox) for o in exact
                ]
                checked += len(exact)
    assert checked > 300


def test_instance_scores_from_the_grid_map_are_the_mean_over_the_instances_cells():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (12, 16, 19)).astype(np.float32)
    _, conf = scores_to_labels(logits, want_confidence=True)
    coarse = np.zeros((12, 16), np.uint16)
    coarse[2:6, 4:10] = 1  # 24 cells
    coarse[7:10, 11:16] = 2  # 15 cells
    inst = resize_nearest(coarse, (48, 64))
    labels = np.where(inst > 0, 3, 0).astype(np.uint8)
    boxes = instance_boxes(labels, inst, NAMES, scores=logits, coarse=coarse)  # up to 64 cells each: all
    assert [(b.instance_id, b.class_id, b.bbox) for b in boxes] == [(1, 3, (16, 8, 24, 16)), (2, 3, (44, 28, 20, 12))]
    assert np.allclose([b.score for b in boxes], [conf[2:6, 4:10].mean(), conf[7:10, 11:16].mean()], atol=1e-5)
    # at most samples^2 cells, spread evenly over the instance's cells in raster order
    (one, two) = instance_boxes(labels, inst, NAMES, scores=logits, coarse=coarse, samples=2)
    cells_1 = np.argwhere(coarse == 1)[[0, 7, 15, 23]]  # 4 of 24: positions 0, 23/3, 46/3, 23 floored
    assert abs(one.score - conf[cells_1[:, 0], cells_1[:, 1]].mean()) < 1e-5
    q_scale, q_zero = 0.05, -3
    q = np.clip(np.round(logits / q_scale) + q_zero, -128, 127).astype(np.int8)
    qboxes = instance_boxes(labels, inst, NAMES, scores=q, quant=(q_scale, q_zero), coarse=coarse)
    assert np.allclose([b.score for b in qboxes], [b.score for b in boxes], atol=0.02)
    with pytest.raises(ValueError, match="grid"):
        instance_boxes(labels, inst, NAMES, scores=logits[:6], coarse=coarse)
    assert instance_boxes(labels, np.zeros_like(inst), NAMES, coarse=np.zeros_like(coarse)) == []
