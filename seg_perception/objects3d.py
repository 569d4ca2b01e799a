"""One colour frame's segmentation + its depth -> 3D objects: what the node calls (no rclpy).

Decodes the depth message, fits depth and camera info to the frame, measures every object's
box (:mod:`seg_perception.geometry`) and, when enabled, settles size twins
(:mod:`seg_perception.size_pairs`). Bad depth or camera info raises
:class:`~seg_perception.depth_sync.DepthError` with a reason the node counts; the 2D outputs
never depend on it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from .depth_sync import camera_from_info, decode_depth, depth_for_frame
from .geometry import GeometryConfig, Object3D, measure_objects
from .size_pairs import ObjectFacts, SizePairs, load_object_facts


@dataclass
class Objects3D:
    objects: List[Object3D]  # measured, in instance-id order
    no_pose: List[Tuple[int, str]] = field(default_factory=list)  # (instance id, reason)
    resolved: int = 0  # objects whose class a size pair changed
    ms: float = 0.0


class ObjectGeometry:
    """Measures the objects of a frame; holds the class facts and the size-pair table."""

    def __init__(self, class_names: Sequence[str], facts: Optional[ObjectFacts] = None,
                 cfg: Optional[GeometryConfig] = None):
        self.facts = facts or load_object_facts()
        self.cfg = cfg or GeometryConfig(symmetric_classes=self.facts.symmetric)
        self.pairs = SizePairs(self.facts, class_names)

    def run(self, depth_msg: Any, info_msg: Any, labels: np.ndarray, instances: np.ndarray,
            objects: Sequence[Any], resolve_pairs: bool = True) -> Objects3D:
        """``objects``: the frame's ``SegObject`` list. Raises DepthError (reason) on unusable input."""
        t0 = time.perf_counter()
        depth = decode_depth(depth_msg)
        depth, cam = depth_for_frame(depth, camera_from_info(info_msg), labels.shape)
        found, failed = measure_objects(depth, labels, instances, objects, cam, self.cfg)
        resolved = self.pairs.apply(found) if resolve_pairs else 0
        return Objects3D(found, failed, resolved, (time.perf_counter() - t0) * 1e3)
