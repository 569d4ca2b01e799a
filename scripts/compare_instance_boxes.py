"""Instance boxes for the 3D step: from the grid's instance map (what the node uses) against every
second row and column of the frame's map (the fallback), on rendered scenes through the default model.

    python scripts/compare_instance_boxes.py

Prints the time of the boxes alone (4 scenes) and of the whole 3D step (8 scenes: 4 seeds x 0/45
degrees, both paths in turn), how many objects' boxes moved by more than 1 mm, and the accuracy
against the rendered truth of both (40 scenes at 0/25/45 degrees).
"""

from __future__ import annotations

import json
import time

import numpy as np

from seg_perception.config import NodeConfig
from seg_perception.demo_scene3d import render_scene
from seg_perception.geometry_eval import GeometryScore, box_of
from seg_perception.objects3d import ObjectGeometry, instance_boxes
from seg_perception.pipeline import make_segmenter
from seg_perception.tools.geom_eval import _truth_box
from seg_perception.tools.rosio import camera_info_msg, image_msg


def _case(seg, sc):
    return image_msg(sc.depth_mm, (1, 2), "b", "16UC1"), camera_info_msg(sc.camera, (1, 2), "b"), seg.run(sc.rgb)


def _run(geo, case, coarse: bool):
    d, info, res = case
    grid = res.coarse_instances if coarse else None
    return geo.run(d, info, res.labels, res.instances, None, True, res.scores, res.scores_quant, coarse=grid)


def main() -> None:
    seg = make_segmenter(NodeConfig(backend="tflite_int8", num_threads=2))
    geo = ObjectGeometry(seg.classes.names)
    names = seg.classes.names
    out = {}
    results = [seg.run(render_scene(s).rgb) for s in range(4)]
    box_ms: dict[str, list[float]] = {"step": [], "coarse": []}
    for i in range(1600):  # both paths in turn, 200 calls each time
        mode = "coarse" if (i // 200) % 2 else "step"
        r = results[i % 4]
        grid = r.coarse_instances if mode == "coarse" else None
        t = time.perf_counter()
        instance_boxes(r.labels, r.instances, names, scores=r.scores, quant=r.scores_quant, coarse=grid)
        box_ms[mode].append(time.perf_counter() - t)
    out.update({f"boxes_ms_{k}": round(1e3 * float(np.median(v)), 3) for k, v in box_ms.items()})
    cases = [_case(seg, render_scene(s, tilt_deg=t)) for s in range(4) for t in (0, 45)]
    ts = {"step": [], "coarse": []}
    for i in range(1600):
        mode = "coarse" if (i // len(cases)) % 2 else "step"
        t = time.perf_counter()
        _run(geo, cases[i % len(cases)], mode == "coarse")
        ts[mode].append(time.perf_counter() - t)
    out.update({f"step3d_ms_{k}": round(1e3 * float(np.median(v)), 3) for k, v in ts.items()})
    moved = total = 0
    for tilt in (0, 25, 45):
        scores = {"step": GeometryScore(), "coarse": GeometryScore()}
        for seed in range(40):
            sc = render_scene(seed, (480, 640), tilt_deg=tilt)
            case = _case(seg, sc)
            truths = [_truth_box(t) for t in sc.truths]
            a, b = _run(geo, case, False).objects, _run(geo, case, True).objects
            for x, y in zip(a, b, strict=False):
                total += 1
                moved += max(np.abs(x.center - y.center).max(), np.abs(x.dims - y.dims).max()) > 1e-3
            scores["step"].add([box_of(o) for o in a], truths)
            scores["coarse"].add([box_of(o) for o in b], truths)
        for k, s in scores.items():
            summ = s.summary()
            out[f"tilt{tilt}_{k}"] = {
                "matched": summ["matched"],
                "position_mm_median": summ["position_error_mm"]["median"],
                "dimension_rel_median": summ["dimension_error_rel"]["median"],
                "yaw_deg_median": summ["yaw_error_deg_elongated"]["median"],
            }
    out["objects_moved_over_1mm"] = f"{moved} of {total}"
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
