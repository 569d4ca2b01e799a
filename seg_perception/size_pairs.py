"""Nominal object sizes and size twins from ``config/classes.yaml`` (no rclpy).

Some atWork objects differ only in size (f20_20 / s40_40 profiles, m20 / m30 nuts, the two
bearing boxes); an image model sees them at unknown distance and confuses them. With depth
the box of an object is measured in metres: when it is closer to the twin's nominal size than
to its own class's, :meth:`SizePairs.resolve` names the twin.

Sizes are compared orientation-free (each sorted, largest first) on a log scale, so a profile
standing on end or a nut on its edge still compares, and a 10 % error counts the same on a
20 mm and on a 100 mm side.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from .classes import default_class_file

LOG = logging.getLogger(__name__)
Size = tuple[float, float, float]


@dataclass(frozen=True)
class ObjectFacts:
    """What the class file says about the physical objects (full-set class names)."""

    size_m: dict[str, Size]  # nominal [length, width, height] in metres
    estimated: frozenset[str]  # sizes no source gives
    symmetric: frozenset[str]  # round in top view: yaw 0
    round_section: frozenset[str]  # cylinders lying on their side: width = height
    pairs: tuple[tuple[str, str], ...]


def load_object_facts(path: os.PathLike | None = None) -> ObjectFacts:
    with open(path or default_class_file(), encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    names = {c["name"] for c in doc["classes"]}
    size: dict[str, Size] = {}
    estimated = set()
    for c in doc["classes"]:
        if "size_mm" in c:
            v = [float(x) / 1000.0 for x in c["size_mm"]]
            if len(v) != 3 or min(v) <= 0:
                raise ValueError(f"classes.yaml: {c['name']}: size_mm must be 3 positive numbers, got {c['size_mm']}")
            size[c["name"]] = (v[0], v[1], v[2])
            if c.get("size_estimated"):
                estimated.add(c["name"])
    symmetric = frozenset(doc.get("symmetric_classes") or ())
    round_section = frozenset(doc.get("round_section_classes") or ())
    pairs = tuple(tuple(p) for p in (doc.get("size_pairs") or ()))
    for name in list(symmetric) + list(round_section) + [n for p in pairs for n in p]:
        if name not in names:
            raise ValueError(
                f"classes.yaml: unknown class {name!r} in symmetric_classes / round_section_classes / size_pairs"
            )
    for p in pairs:
        if len(p) != 2 or any(n not in size for n in p):
            raise ValueError(f"classes.yaml: size pair {list(p)} needs two classes with size_mm")
    return ObjectFacts(size, frozenset(estimated), symmetric, round_section, pairs)  # type: ignore[arg-type]


def size_distance(measured: Sequence[float], nominal: Sequence[float]) -> float:
    """Mean absolute log ratio of the sorted sides (0 = same size; 0.1 ~ 10 % off per side)."""
    m = sorted((max(float(v), 1e-4) for v in measured), reverse=True)
    n = sorted((float(v) for v in nominal), reverse=True)
    return sum(abs(math.log(a / b)) for a, b in zip(m, n, strict=False)) / 3.0


class SizePairs:
    """Twin lookup and resolution for the classes of one class set.

    ``class_names``: the model's class names; a pair is used only when both twins are classes of
    it (a size-merged variant has nothing to resolve) and neither size is an estimate.
    ``margin``: the twin must be closer by this much (log units) so noise does not flip classes.
    """

    def __init__(self, facts: ObjectFacts, class_names: Sequence[str], margin: float = 0.05):
        self.facts = facts
        self.margin = margin
        index = {n: i for i, n in enumerate(class_names)}
        self.twin: dict[str, str] = {}
        self.skipped: list[tuple[str, str]] = []
        for a, b in facts.pairs:
            if a not in index or b not in index:
                continue
            if a in facts.estimated or b in facts.estimated:
                self.skipped.append((a, b))
                continue
            self.twin[a], self.twin[b] = b, a
        self.class_id = index
        if self.skipped:
            LOG.info("size pairs not resolved (a size is an estimate in classes.yaml): %s", self.skipped)

    def resolve(self, class_name: str, dims_m: Sequence[float]) -> tuple[str, int] | None:
        """The twin's (name, id) when ``dims_m`` fits the twin better; ``None`` to keep the class."""
        twin = self.twin.get(class_name)
        if twin is None:
            return None
        own = size_distance(dims_m, self.facts.size_m[class_name])
        other = size_distance(dims_m, self.facts.size_m[twin])
        if other + self.margin < own:
            return twin, self.class_id[twin]
        return None

    def apply(self, objects: list[Any]) -> int:
        """Resolve measured objects in place (``Object3D``-like); returns how many changed class.

        Only objects whose up direction came from the table are used: without it the height is the
        visible thickness, not the size.
        """
        changed = 0
        for obj in objects:
            if not obj.table_fit:
                continue
            twin = self.resolve(obj.class_name, obj.dims)
            if twin is None:
                continue
            obj.resolved_from, obj.original_class_id = obj.class_name, obj.class_id
            obj.class_name, obj.class_id = twin
            changed += 1
        return changed
