"""Another version of ``seg_perception/geometry.py`` against this one: the same boxes? how fast?

    git show bd55141:seg_perception/geometry.py > /tmp/geometry_old.py
    python scripts/compare_geometry.py /tmp/geometry_old.py [--scenes 40]

Renders ``--scenes`` scenes at 0 / 25 / 45 degrees, segments them with the default model and
measures every object with both modules, from 16UC1 millimetres and from 32FC1 metres with holes
(NaN every 7th row and 11th column). Prints the number of objects, the largest difference of any
centre, dimension, rotation entry or yaw, and each module's median ``measure_objects`` time per
frame, the two run in turn.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time

import numpy as np

from seg_perception import geometry as this
from seg_perception.config import NodeConfig
from seg_perception.demo_scene3d import render_scene
from seg_perception.objects3d import instance_boxes
from seg_perception.pipeline import make_segmenter
from seg_perception.size_pairs import load_object_facts


def _load(path: str):
    spec = importlib.util.spec_from_file_location("geometry_other", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["geometry_other"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("other", help="the other geometry.py")
    ap.add_argument("--scenes", type=int, default=40)
    ap.add_argument("--calls", type=int, default=4000, help="timed calls, both modules together")
    args = ap.parse_args()
    other = _load(args.other)
    seg = make_segmenter(NodeConfig(backend="tflite_int8", num_threads=2))
    facts = load_object_facts()
    cfgs = {
        m: m.GeometryConfig(symmetric_classes=facts.symmetric, round_section_classes=facts.round_section)
        for m in (other, this)
    }
    cases = []
    for s in range(args.scenes):
        for tilt in (0, 25, 45):
            sc = render_scene(s, tilt_deg=tilt)
            res = seg.run(sc.rgb)
            objs = instance_boxes(
                res.labels, res.instances, seg.classes.names, scores=res.scores, quant=res.scores_quant,
                coarse=res.coarse_instances,
            )  # fmt: skip
            metres = sc.depth_mm.astype(np.float32) / 1000.0
            metres[::7, ::11] = np.nan
            for depth in (sc.depth_mm, metres):
                cases.append((depth, res.labels, res.instances, objs, sc.camera))
    worst, n = 0.0, 0
    for c in cases:
        a, fa = other.measure_objects(*c, cfgs[other])
        b, fb = this.measure_objects(*c, cfgs[this])
        if fa != fb or [o.instance_id for o in a] != [o.instance_id for o in b]:
            raise SystemExit(f"different objects measured: {fa} / {fb}")
        for oa, ob in zip(a, b, strict=True):
            n += 1
            for k in ("center", "dims", "rotation"):
                worst = max(worst, float(np.abs(np.asarray(getattr(oa, k)) - np.asarray(getattr(ob, k))).max()))
            worst = max(worst, abs(oa.yaw - ob.yaw))
    ms: dict[str, list[float]] = {"other": [], "this": []}
    for i in range(args.calls):
        name, mod = ("this", this) if (i // len(cases)) % 2 else ("other", other)
        c = cases[i % len(cases)]
        t = time.perf_counter()
        mod.measure_objects(*c, cfgs[mod])
        ms[name].append(time.perf_counter() - t)
    out = {"cases": len(cases), "objects": n, "worst_difference": worst}
    out.update({f"measure_objects_ms_{k}": round(1e3 * float(np.median(v)), 3) for k, v in ms.items()})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
