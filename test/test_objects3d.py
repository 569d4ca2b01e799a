"""The node's 3D step without ROS: instance boxes and scores, then boxes from depth (seg_perception.objects3d)."""

from types import SimpleNamespace

import numpy as np

from seg_perception.classes import load_classes
from seg_perception.demo_scene3d import render_scene
from seg_perception.geometry import measure_objects
from seg_perception.objects3d import ObjectGeometry, instance_boxes
from seg_perception.postprocess import extract_objects, scores_to_labels

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
