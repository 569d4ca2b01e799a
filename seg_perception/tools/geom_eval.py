"""seg-geom-eval: 3D box accuracy and cost on rendered scenes with exact depth (no ROS).

For each camera tilt, ``--scenes`` scenes of :mod:`seg_perception.demo_scene3d` (seeds 0..N-1)
are measured twice:

* ``exact_masks``: geometry given the rendered labels and instances (the measurement alone);
* ``backend`` (with ``--backend``): the node's own pipeline (``make_segmenter``) segments the
  rendered colour image, then the same geometry runs on its masks (end to end).

Boxes are scored against the rendered truth (:mod:`seg_perception.geometry_eval`): position
error (mm), dimension error (relative, per side), yaw error (degrees, elongated objects).
``measure_ms`` is the median time of the geometry for one frame (all its objects).

    python -m seg_perception.tools.geom_eval --scenes 50 --tilts 0,25,45 --backend tflite_int8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np


def evaluate(
    scenes: int, tilt: float, backend: str | None = None, size: tuple = (480, 640), threads: int = 2
) -> dict[str, Any]:
    from ..classes import load_classes
    from ..demo_scene3d import render_scene
    from ..geometry import measure_objects
    from ..geometry_eval import GeometryScore, box_of
    from ..objects3d import ObjectGeometry
    from ..postprocess import extract_objects

    names = load_classes("full").names
    geo = ObjectGeometry(names)
    exact, e2e = GeometryScore(), GeometryScore()
    ms: list[float] = []
    seg = None
    if backend:
        from ..config import NodeConfig
        from ..pipeline import make_segmenter

        seg = make_segmenter(NodeConfig(backend=backend, num_threads=threads))
    for seed in range(scenes):
        sc = render_scene(seed, size, tilt_deg=tilt)
        truths = [_truth_box(t) for t in sc.truths]
        objs = extract_objects(sc.labels, sc.instances, names)
        t0 = time.perf_counter()
        found, _ = measure_objects(sc.depth_mm, sc.labels, sc.instances, objs, sc.camera, geo.cfg)
        ms.append((time.perf_counter() - t0) * 1e3)
        exact.add([box_of(o) for o in found], truths)
        if seg is not None:
            res = seg.run(sc.rgb)
            found, _ = measure_objects(sc.depth_mm, res.labels, res.instances, seg.objects(res), sc.camera, geo.cfg)
            geo.pairs.apply(found)
            e2e.add([box_of(o) for o in found], truths)
    out: dict[str, Any] = {
        "tilt_deg": tilt,
        "scenes": scenes,
        "exact_masks": exact.summary(),
        "measure_ms_median": round(float(np.median(ms)), 3),
    }
    if seg is not None:
        out["backend"] = {"name": backend, **e2e.summary()}
    return out


def _truth_box(t: Any) -> Any:
    from ..geometry_eval import ELONGATED_RATIO, Box

    return Box(
        t.class_name,
        t.center,
        t.rotation[:, 0],
        t.rotation[:, 2],
        t.dims,
        t.symmetric,
        bool(t.dims[0] >= ELONGATED_RATIO * t.dims[1]),
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="seg-geom-eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scenes", type=int, default=30)
    ap.add_argument("--tilts", default="0,25,45", help="camera tilts in degrees from straight down")
    ap.add_argument("--backend", default="", help="also segment with this backend (end to end)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    tilts = [float(t) for t in args.tilts.split(",") if t]
    print(json.dumps([evaluate(args.scenes, t, args.backend or None, threads=args.threads) for t in tilts], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
