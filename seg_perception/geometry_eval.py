"""Scoring measured 3D boxes against rendered truth (no rclpy).

Per frame, measured boxes (from :class:`~seg_perception.geometry.Object3D`, or from the CUBE
markers the node publishes) are matched to true ones greedily by centre distance (at most
``max_match_m`` apart, class not required: a size twin or a confused class still has a
position). Over all matched pairs: position error (mm), dimension error (relative, per side;
a rotationally symmetric truth has length = width = its largest side, as the node reports it),
yaw error (degrees, elongated non-symmetric truths only, in the true table plane), and how
often the class agrees. Unmatched truths are ``missed``, unmatched boxes ``extra``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .geometry import Object3D, yaw_error, yaw_in_table

ELONGATED_RATIO = 1.5  # length / width from which a yaw is scored


@dataclass
class Box:
    class_name: str
    center: np.ndarray  # (3,) optical frame, metres
    axis: np.ndarray  # (3,) length axis
    up: np.ndarray  # (3,) up axis
    dims: np.ndarray  # (3,) length, width, height
    symmetric: bool = False
    elongated: bool = False


def box_of(obj: Object3D) -> Box:
    return Box(
        obj.class_name,
        np.asarray(obj.center, float),
        obj.rotation[:, 0],
        obj.rotation[:, 2],
        np.asarray(obj.dims, float),
    )


def _quat_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def boxes_from_markers(markers: Iterable[Any], cube_type: int = 1) -> list[Box]:
    """CUBE markers (rclpy or rosbags visualization_msgs/Marker) -> boxes; ns is the class."""
    out = []
    for m in markers:
        if int(m.type) != cube_type or int(m.action) != 0:
            continue
        p, q, s = m.pose.position, m.pose.orientation, m.scale
        r = _quat_matrix(float(q.x), float(q.y), float(q.z), float(q.w))
        out.append(Box(str(m.ns), np.array([p.x, p.y, p.z], float), r[:, 0], r[:, 2], np.array([s.x, s.y, s.z], float)))
    return out


def truth_to_json(truths: Sequence[Any], stamp: Sequence[int], frame_id: str) -> str:
    """Rendered truths (``demo_scene3d.Truth``) -> the JSON seg-make-bag writes on /camera/objects_gt."""

    def r6(v: Any) -> list[float]:
        return [round(float(x), 6) for x in v]

    objs = [
        {
            "class_name": t.class_name,
            "center": r6(t.center),
            "axis": r6(t.rotation[:, 0]),
            "up": r6(t.rotation[:, 2]),
            "dims": r6(t.dims),
            "symmetric": bool(t.symmetric),
        }
        for t in truths
    ]
    return json.dumps({"stamp": [int(stamp[0]), int(stamp[1])], "frame_id": frame_id, "objects": objs})


def truths_from_json(text: str) -> list[Box]:
    doc = json.loads(text)
    out = []
    for o in doc["objects"]:
        dims = np.array(o["dims"], float)
        out.append(
            Box(
                o["class_name"],
                np.array(o["center"], float),
                np.array(o["axis"], float),
                np.array(o["up"], float),
                dims,
                bool(o.get("symmetric")),
                bool(dims[0] >= ELONGATED_RATIO * dims[1]),
            )
        )
    return out


def match(pred: Sequence[Box], truth: Sequence[Box], max_match_m: float = 0.05) -> list[tuple]:
    """Greedy nearest-centre pairs (pred, truth) at most ``max_match_m`` apart."""
    cand = sorted(
        (float(np.linalg.norm(p.center - t.center)), i, j) for i, p in enumerate(pred) for j, t in enumerate(truth)
    )
    used_p, used_t, pairs = set(), set(), []
    for dist, i, j in cand:
        if dist > max_match_m:
            break
        if i in used_p or j in used_t:
            continue
        used_p.add(i)
        used_t.add(j)
        pairs.append((pred[i], truth[j]))
    return pairs


def _stats(values: list[float], digits: int = 3) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "median": None, "p90": None, "max": None}
    a = np.asarray(values, float)
    return {
        "n": int(a.size),
        "median": round(float(np.median(a)), digits),
        "p90": round(float(np.percentile(a, 90)), digits),
        "max": round(float(a.max()), digits),
    }


class GeometryScore:
    """Accumulates matched errors over frames."""

    def __init__(self, max_match_m: float = 0.05):
        self.max_match_m = max_match_m
        self.frames = 0
        self.truths = self.matched = self.extra = self.class_agrees = 0
        self.pos_mm: list[float] = []
        self.dim_rel: list[float] = []
        self.yaw_deg: list[float] = []

    def add(self, pred: Sequence[Box], truth: Sequence[Box]) -> None:
        pairs = match(pred, truth, self.max_match_m)
        self.frames += 1
        self.truths += len(truth)
        self.matched += len(pairs)
        self.extra += len(pred) - len(pairs)
        for p, t in pairs:
            self.class_agrees += int(p.class_name == t.class_name)
            self.pos_mm.append(float(np.linalg.norm(p.center - t.center)) * 1000.0)
            want = t.dims.copy()
            if t.symmetric:
                want[:2] = want[:2].max()
            got = p.dims.copy()
            if got[1] > got[0]:
                got[:2] = got[1::-1]
            self.dim_rel.extend((np.abs(got - want) / want).tolist())
            if t.elongated and not t.symmetric:
                err = yaw_error(yaw_in_table(p.axis, t.up), yaw_in_table(t.axis, t.up))
                self.yaw_deg.append(math.degrees(err))

    def summary(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "objects_true": self.truths,
            "matched": self.matched,
            "missed": self.truths - self.matched,
            "extra": self.extra,
            "class_agrees": self.class_agrees,
            "position_error_mm": _stats(self.pos_mm, 2),
            "dimension_error_rel": _stats(self.dim_rel, 4),
            "yaw_error_deg_elongated": _stats(self.yaw_deg, 2),
            "definition": "boxes matched to rendered truth by nearest centre (<= "
            f"{self.max_match_m * 1000:.0f} mm); dimension error per side, relative",
        }
