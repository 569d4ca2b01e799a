import numpy as np

from seg_perception.postprocess import extract_objects, label_instances, overlay, resize_nearest, scores_to_labels

NAMES = tuple(f"c{i}" for i in range(19))


def _labels():
    lab = np.zeros((20, 30), np.uint8)
    lab[2:6, 3:9] = 4  # object A: 4x6 = 24 px, class 4
    lab[10:12, 3:5] = 4  # object B: 2x2 = 4 px, class 4 (separate component)
    lab[8:18, 20:28] = 7  # object C: 10x8 = 80 px, class 7
    lab[8:18, 28:30] = 2  # object D touches C but is another class: 10x2 = 20 px
    return lab


def test_instances_split_by_class_and_component():
    inst = label_instances(_labels(), min_area=0)
    lab = _labels()
    ids = sorted(set(np.unique(inst)) - {0})
    assert ids == [1, 2, 3, 4]
    for k in ids:  # every instance has exactly one class
        assert len(np.unique(lab[inst == k])) == 1
    assert ((inst > 0) == (lab > 0)).all()
    # ids ordered by class, then top-to-bottom: class 2 first, then class 4 (A, B), then class 7
    assert lab[inst == 1][0] == 2 and lab[inst == 2][0] == 4 and lab[inst == 4][0] == 7
    assert (inst == 2).sum() == 24 and (inst == 3).sum() == 4


def test_min_area_filters_small_components():
    inst = label_instances(_labels(), min_area=10)
    assert sorted(set(np.unique(inst)) - {0}) == [1, 2, 3]
    assert inst[10, 3] == 0  # the 4-pixel object lost its instance
    inst_scaled = label_instances(_labels(), min_area=10, area_scale=4.0)  # 4 px * 4 >= 10
    assert inst_scaled[10, 3] > 0


def test_extract_objects_boxes_centroids_areas():
    lab = _labels()
    inst = label_instances(lab)
    conf = np.full(lab.shape, 0.5, np.float32)
    conf[2:6, 3:9] = 0.9
    objs = {o.instance_id: o for o in extract_objects(lab, inst, NAMES, conf)}
    a = objs[2]
    assert (a.class_id, a.class_name, a.bbox, a.area) == (4, "c4", (3, 2, 6, 4), 24)
    assert a.centroid == (5.5, 3.5)
    assert abs(a.score - 0.9) < 1e-6
    c = objs[4]
    assert (c.class_id, c.bbox, c.area) == (7, (20, 8, 8, 10), 80)
    assert c.centroid == (23.5, 12.5)
    assert c.mask.sum() == 80 and abs(c.score - 0.5) < 1e-6
    assert extract_objects(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint16), NAMES) == []


def test_scores_to_labels_and_confidence():
    s = np.zeros((2, 2, 3), np.float32)
    s[0, 0, 2] = 10
    s[1, 1, 1] = np.log(2.0)  # probs (1, 2, 1)/4 -> max 0.5
    lab, conf = scores_to_labels(s, want_confidence=True)
    assert lab.tolist() == [[2, 0], [0, 1]]
    assert abs(conf[1, 1] - 0.5) < 1e-6 and abs(conf[0, 1] - 1 / 3) < 1e-6
    q = np.round(s / 0.1).astype(np.int8)  # quantised with scale 0.1, zero point 0
    lab_q, conf_q = scores_to_labels(q, quant=(0.1, 0), want_confidence=True)
    assert (lab_q == lab).all() and abs(conf_q[0, 1] - 1 / 3) < 1e-6


def test_overlay_keeps_background_pixels():
    rgb = np.full((4, 4, 3), 100, np.uint8)
    lab = np.zeros((4, 4), np.uint8)
    lab[0, 0] = 1
    pal = np.array([[0, 0, 0], [200, 0, 0]], np.uint8)
    out = overlay(rgb, lab, pal, 0.5)
    assert out[1, 1].tolist() == [100, 100, 100]
    assert out[0, 0].tolist() == [150, 50, 50]


def _ramp_scores(dtype=np.float32):
    """Three coarse cells in a row: class 2 strongly (3.0), then class 1 weakly (1.0) twice."""
    s = np.zeros((1, 3, 3), dtype)
    s[0, 0, 2], s[0, 1, 1], s[0, 2, 1] = 3, 1, 1
    return s


def test_bilinear_upsampling_moves_the_boundary_where_the_scores_cross() -> None:
    from seg_perception.postprocess import upsample_bilinear

    low = np.array([[2, 1, 1]], np.uint8)
    inst = np.array([[1, 2, 2]], np.uint16)
    # 3 -> 12 pixels: output x samples source fx = (x + 0.5) / 4 - 0.5; class 1 wins where
    # fx > 0.75 (its weight t beats 3 (1 - t)), i.e. from x = 5; nearest switches at x = 4
    labels, instances = upsample_bilinear(_ramp_scores(), low, inst, (1, 12))
    assert labels.tolist() == [[2] * 5 + [1] * 7]
    assert instances.tolist() == [[1] * 5 + [2] * 7]  # pixel 4 moved to object 1 with its class
    assert resize_nearest(low, (1, 12)).tolist() == [[2] * 4 + [1] * 8]


def test_bilinear_upsampling_of_quantised_scores_matches_float() -> None:
    from seg_perception.postprocess import upsample_bilinear

    low = np.array([[2, 1, 1]], np.uint8)
    inst = np.array([[1, 2, 2]], np.uint16)
    q = (_ramp_scores() * 40 - 60).astype(np.int8)  # affine quantisation, zero point -60
    assert upsample_bilinear(q, low, inst, (1, 12))[0].tolist() == [[2] * 5 + [1] * 7]


def test_bilinear_upsampling_keeps_uniform_maps_and_same_size() -> None:
    from seg_perception.postprocess import upsample_bilinear

    low = np.zeros((4, 5), np.uint8)
    scores = np.random.default_rng(0).normal(size=(4, 5, 3)).astype(np.float32)
    labels, inst = upsample_bilinear(scores, low, np.zeros((4, 5), np.uint16), (8, 10))
    assert not labels.any() and not inst.any()  # one class present: nothing to decide
    same = np.array([[0, 1], [1, 0]], np.uint8)
    out, _ = upsample_bilinear(np.zeros((2, 2, 2), np.float32), same, same.astype(np.uint16), (2, 2))
    assert np.array_equal(out, same)
