"""Nominal sizes from classes.yaml and size-twin resolution (seg_perception.size_pairs)."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from seg_perception.classes import load_classes
from seg_perception.demo_scene3d import Placement, render_objects
from seg_perception.objects3d import ObjectGeometry
from seg_perception.postprocess import extract_objects
from seg_perception.size_pairs import SizePairs, load_object_facts, size_distance

FACTS = load_object_facts()
FULL = load_classes("full").names


def test_every_object_has_a_size_and_sources_are_marked():
    assert set(FACTS.size_m) == set(FULL) - {"background"}
    assert FACTS.size_m["f20_20_B"] == pytest.approx((0.1, 0.02, 0.02))
    assert FACTS.size_m["s40_40_G"] == pytest.approx((0.1, 0.04, 0.04))
    assert FACTS.size_m["m30"] == pytest.approx((0.051, 0.046, 0.0256))
    assert {"container_box_blue", "container_box_red", "bearing_box_ax16", "em_01", "em_02"} == set(FACTS.estimated)
    assert {"m20", "m30", "bearing", "distance_tube"} == set(FACTS.symmetric)
    assert {"m20_100", "r20", "axis", "motor"} == set(FACTS.round_section)
    assert ("m20", "m30") in FACTS.pairs


def test_size_distance_is_orientation_free():
    assert size_distance([0.02, 0.1, 0.02], [0.1, 0.02, 0.02]) == 0.0
    assert size_distance([0.11, 0.022, 0.022], [0.1, 0.02, 0.02]) == pytest.approx(math.log(1.1))


def test_resolution_picks_the_closer_twin_only_when_clearly_closer():
    pairs = SizePairs(FACTS, FULL)
    assert pairs.resolve("f20_20_B", [0.1, 0.041, 0.039]) == ("s40_40_B", FULL.index("s40_40_B"))
    assert pairs.resolve("s40_40_G", [0.098, 0.021, 0.02]) == ("f20_20_G", FULL.index("f20_20_G"))
    assert pairs.resolve("m30", [0.034, 0.034, 0.018]) == ("m20", 6)
    assert pairs.resolve("f20_20_B", [0.1, 0.021, 0.02]) is None  # its own size
    assert pairs.resolve("f20_20_B", [0.1, 0.029, 0.028]) is None  # half way: within the margin, keep
    assert pairs.resolve("motor", [0.2, 0.2, 0.2]) is None  # no twin
    # a pair with an estimated size is not resolved; a size-merged variant has no pairs
    assert pairs.resolve("bearing_box_ax01", [0.06, 0.05, 0.03]) is None
    assert ("bearing_box_ax01", "bearing_box_ax16") in pairs.skipped
    merged = SizePairs(FACTS, load_classes("size_invariant").names)
    assert merged.twin == {}


def test_apply_changes_class_and_says_so_only_with_a_table():
    pairs = SizePairs(FACTS, FULL)
    objs = [
        SimpleNamespace(
            class_name="m20",
            class_id=6,
            dims=np.array([0.05, 0.046, 0.026]),
            table_fit=True,
            resolved_from=None,
            original_class_id=None,
        ),
        SimpleNamespace(
            class_name="m20",
            class_id=6,
            dims=np.array([0.05, 0.046, 0.026]),
            table_fit=False,
            resolved_from=None,
            original_class_id=None,
        ),
    ]
    assert pairs.apply(objs) == 1
    assert (objs[0].class_name, objs[0].class_id, objs[0].resolved_from, objs[0].original_class_id) == (
        "m30",
        7,
        "m20",
        6,
    )
    assert objs[1].class_name == "m20" and objs[1].resolved_from is None


def test_depth_settles_a_profile_the_model_got_wrong():
    """End to end through ObjectGeometry: a 40 mm profile labelled as the 20 mm one comes out as s40_40_B."""
    scene = render_objects(
        [Placement("s40_40_B", 0.0, 0.0, 0.7), Placement("f20_20_B", 0.1, 0.03, -0.4)], tilt_deg=45.0
    )
    labels = scene.labels.copy()
    labels[scene.instances == 1] = FULL.index("f20_20_B")  # the model confused the twins
    objs = extract_objects(labels, scene.instances, FULL)
    depth = SimpleNamespace(
        encoding="16UC1",
        height=scene.depth_mm.shape[0],
        width=scene.depth_mm.shape[1],
        step=scene.depth_mm.shape[1] * 2,
        is_bigendian=0,
        data=scene.depth_mm.tobytes(),
    )
    k = scene.camera.k()
    info = SimpleNamespace(k=k.reshape(-1).tolist(), width=scene.camera.width, height=scene.camera.height)
    geo = ObjectGeometry(FULL, FACTS)
    out = geo.run(depth, info, labels, scene.instances, objs)
    assert out.resolved == 1 and out.no_pose == []
    a, b = out.objects
    assert (a.class_name, a.resolved_from, a.original_class_id) == ("s40_40_B", "f20_20_B", FULL.index("f20_20_B"))
    assert b.class_name == "f20_20_B" and b.resolved_from is None
    off = geo.run(depth, info, labels, scene.instances, objs, resolve_pairs=False)
    assert off.resolved == 0 and off.objects[0].class_name == "f20_20_B"
