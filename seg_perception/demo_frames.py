"""Procedurally rendered table-top frames for the demo and tests: no dataset pixels.

Crude look-alikes of some atWork objects (profiles, bolts, nuts, containers, motor) on a
noisy table texture, with their ground-truth label map. Deterministic by seed.
"""

from __future__ import annotations

import cv2
import numpy as np

from .classes import load_classes


def _table(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = rng.integers(120, 200, 3)
    noise = cv2.GaussianBlur(rng.normal(0, 18, (h, w)).astype(np.float32), (0, 0), 3)
    grain = np.sin(np.linspace(0, rng.uniform(20, 60), w))[None, :] * 8
    img = base[None, None, :] + (noise + grain)[:, :, None]
    return np.clip(img, 0, 255).astype(np.uint8)


def render_table(seed: int, hw: tuple[int, int] = (480, 640)) -> np.ndarray:
    """The table texture alone, no objects (rgb uint8 HxWx3): every pixel is background."""
    return _table(np.random.default_rng(seed), *hw)


def render_frame(seed: int, hw: tuple[int, int] = (480, 640), max_objects: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Return (rgb uint8 HxWx3, labels uint8 HxW with full-set class ids)."""
    names = load_classes("full").names
    rng = np.random.default_rng(seed)
    h, w = hw
    img = _table(rng, h, w)
    lab = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(2, max_objects + 1))):
        kind = rng.choice(["profile_B", "profile_G", "bolt", "nut", "container_blue", "container_red", "motor"])
        cx, cy = int(rng.integers(80, w - 80)), int(rng.integers(80, h - 80))
        ang = float(rng.uniform(0, 180))
        mask = np.zeros((h, w), np.uint8)
        if kind.startswith("profile"):
            box = cv2.boxPoints(((cx, cy), (int(rng.integers(120, 220)), int(rng.integers(22, 40))), ang))
            cv2.fillPoly(mask, [box.astype(np.int32)], 1)
            colour, cls = ((40, 40, 45), "f20_20_B") if kind.endswith("B") else ((150, 150, 155), "f20_20_G")
        elif kind == "bolt":
            box = cv2.boxPoints(((cx, cy), (int(rng.integers(110, 160)), 14), ang))
            cv2.fillPoly(mask, [box.astype(np.int32)], 1)
            colour, cls = (170, 170, 175), "m20_100"
        elif kind == "nut":
            r = int(rng.integers(18, 30))
            pts = np.array([[cx + r * np.cos(a), cy + r * np.sin(a)] for a in np.linspace(0, 2 * np.pi, 7)[:-1]])
            cv2.fillPoly(mask, [pts.astype(np.int32)], 1)
            cv2.circle(mask, (cx, cy), r // 2, 0, -1)
            colour, cls = (185, 185, 190), "m20" if r < 24 else "m30"
        elif kind.startswith("container"):
            box = cv2.boxPoints(((cx, cy), (int(rng.integers(110, 150)), int(rng.integers(70, 100))), ang))
            cv2.fillPoly(mask, [box.astype(np.int32)], 1)
            colour = (30, 70, 200) if kind.endswith("blue") else (200, 30, 35)
            cls = "container_box_blue" if kind.endswith("blue") else "container_box_red"
        else:
            cv2.circle(mask, (cx, cy), int(rng.integers(30, 45)), 1, -1)
            colour, cls = (60, 60, 60), "motor"
        shade = cv2.GaussianBlur(rng.normal(0, 10, (h, w)).astype(np.float32), (0, 0), 2)
        obj = np.clip(np.asarray(colour, np.float32)[None, None, :] + shade[:, :, None], 0, 255).astype(np.uint8)
        m = mask.astype(bool)
        img[m] = obj[m]
        lab[m] = names.index(cls)
    return img, lab
