"""Synthetic atWork scenes by copy-paste: real object cut-outs pasted onto background photos.

Why: the dataset has one object per photo (~26 photos a class), while the robot sees several
objects, partly occluded, on varied surfaces. Pasting cut-outs (cropped to their mask's
bounding box) onto background photos gives unlimited multi-object scenes with exact labels.

How it is done well:

* the split is respected: ``train`` scenes only use train-split photos and
  ``backgrounds/training`` + ``white_backgrounds/training``; ``val`` scenes only the val split
  and the ``validation`` backgrounds (see :func:`training.data.atwork.split_samples`);
* cut-outs are resized/rotated as premultiplied colour + alpha, so no halo of the source
  photo's background comes along, and downscaling uses area interpolation;
* the label is ``alpha >= 0.5`` of each pasted object, later pastes overwrite earlier ones,
  so the label map is exactly what is visible; with ``soft_edges`` the image blends the
  anti-aliased alpha (pixels labelled background are < 50 % object);
* placement respects a minimum gap between bounding boxes (negative: boxes may overlap by
  that many pixels, giving occlusion), a minimum visible fraction for every object (nothing
  is buried), a maximum occupied area and an optional truncation at the image border;
* every image has its own random stream ``SeedSequence([seed, index, split])``: the same seed gives
  byte-identical label PNGs, also with ``--workers N`` or chunks via ``--start-index``.

Output (``OUT/``): ``images/NNNNNN.jpg``, ``labels/NNNNNN.png`` (full-set ids 0..18,
background 0), ``boxes/NNNNNN.json`` (per visible object: class, visible bbox x,y,w,h and
area, source photo), ``generator_config.yaml``, ``meta.json``, ``README.md``, and with
``--preview`` ``preview/NNNNNN.png`` overlays.

CLI::

    python -m training.data.synth --root ../shared/datasets/atwork --out OUT \\
        --num-images N --split train --seed 0 [--config training/configs/synth.yaml] \\
        [--preview] [--workers 2] [--max-objects 5 ...any config key]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import multiprocessing as mp
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from tqdm import tqdm

from seg_perception.atwork import (
    PathLike,
    Sample,
    SplitSpec,
    list_backgrounds,
    list_samples,
    read_label,
    read_rgb,
    split_samples,
)
from seg_perception.classes import load_classes

log = logging.getLogger("training.data.synth")  # not "__main__" under -m

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO_ROOT / "training" / "configs" / "synth.yaml"
DEFAULT_ROOT = REPO_ROOT.parent / "shared" / "datasets" / "atwork"  # CLI default only
GENERATOR_VERSION = 1
_SPLIT_CODE = {"train": 0, "val": 1}  # train and val scenes of one seed differ


@dataclass
class SynthConfig:
    """Generator parameters (``training/configs/synth.yaml`` documents each one)."""

    height: int = 480
    width: int = 640
    min_objects: int = 1
    max_objects: int = 6
    min_object_area: float = 0.004
    max_object_area: float = 0.08
    max_upscale: float = 1.5
    num_scales: int = 0
    # "area": mask area log-uniform in [min_object_area, max_object_area]; "source": the size it has
    # in its photo times a factor log-uniform in source_scale (apparent size stays a cue)
    scale_mode: str = "area"
    source_scale: tuple[float, float] = (0.8, 1.25)
    min_distance: int = -30
    min_visible_fraction: float = 0.5
    max_occupied_fraction: float = 0.5
    max_truncation: float = 0.0
    placement_attempts: int = 30
    object_retries: int = 3
    rotation: bool = True
    max_rotation: float = 180.0
    hflip_prob: float = 0.5
    vflip_prob: float = 0.0
    blur_prob: float = 0.15
    blur_sigma: tuple[float, float] = (0.5, 1.5)
    color_jitter_prob: float = 0.8
    brightness: float = 0.25
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 4.0
    soft_edges: bool = True
    class_balanced: bool = True
    classes: list[str] | None = None
    skip_border_objects: bool = True
    white_background_prob: float = 0.4
    background_min_crop: float = 0.6
    background_hflip_prob: float = 0.5
    jpeg_quality: int = 95
    photo_split: str = "run"  # photo split (seg_perception.atwork.SplitSpec): train scenes use train photos only
    folds: int = 5
    val_fold: int = -1
    val_fraction: float = 0.2  # photo_split "random" only
    split_seed: int = 0  # photo_split "random" only

    def split_spec(self) -> SplitSpec:
        return SplitSpec(
            kind=self.photo_split,
            folds=self.folds,
            val_fold=self.val_fold,
            val_fraction=self.val_fraction,
            seed=self.split_seed,
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> SynthConfig:
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown synth config keys: {sorted(unknown)}")
        for key in ("blur_sigma", "source_scale"):
            if d.get(key) is not None:
                d[key] = tuple(float(v) for v in d[key])
        cfg = cls(**d)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["blur_sigma"] = list(self.blur_sigma)
        d["source_scale"] = list(self.source_scale)
        return d

    def validate(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"synth config: {msg}")

        need(self.height > 0 and self.width > 0, "height/width must be positive")
        need(1 <= self.min_objects <= self.max_objects <= 254, "need 1 <= min_objects <= max_objects <= 254")
        need(0 < self.min_object_area <= self.max_object_area < 1, "need 0 < min_object_area <= max_object_area < 1")
        need(self.max_upscale > 0, "max_upscale must be > 0")
        need(self.num_scales >= 0, "num_scales must be >= 0 (0 = continuous)")
        need(self.scale_mode in ("area", "source"), f"scale_mode must be 'area' or 'source', got {self.scale_mode!r}")
        need(0 < self.source_scale[0] <= self.source_scale[1], "source_scale must be 0 < lo <= hi")
        need(0 <= self.min_visible_fraction <= 1, "min_visible_fraction must be in [0, 1]")
        need(0 < self.max_occupied_fraction <= 1, "max_occupied_fraction must be in (0, 1]")
        need(0 <= self.max_truncation < 0.5, "max_truncation must be in [0, 0.5)")
        need(self.placement_attempts >= 1 and self.object_retries >= 1, "attempts/retries must be >= 1")
        need(0 < self.blur_sigma[0] <= self.blur_sigma[1], "blur_sigma must be 0 < lo <= hi")
        need(0 < self.background_min_crop <= 1, "background_min_crop must be in (0, 1]")
        need(1 <= self.jpeg_quality <= 100, "jpeg_quality must be in [1, 100]")
        try:
            self.split_spec()
        except ValueError as e:
            need(False, str(e))
        for p in (
            "hflip_prob",
            "vflip_prob",
            "blur_prob",
            "color_jitter_prob",
            "white_background_prob",
            "background_hflip_prob",
        ):
            need(0 <= getattr(self, p) <= 1, f"{p} must be in [0, 1]")


def load_config(path: PathLike | None = None, overrides: Mapping[str, Any] | None = None) -> SynthConfig:
    """YAML file (a flat mapping of :class:`SynthConfig` keys) plus overrides; no file = defaults."""
    d: dict[str, Any] = {}
    if path is not None:
        with open(path, encoding="utf-8") as f:
            d = yaml.safe_load(f) or {}
    d.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return SynthConfig.from_dict(d)


@dataclass
class Cutout:
    """An object cropped to its mask's bounding box, loaded once."""

    class_id: int
    class_name: str
    source: str  # path relative to the dataset root, e.g. objects/image/axis/axis_003.jpg
    photo: str  # photo stem, e.g. axis_003
    rgb: np.ndarray  # h x w x 3 uint8
    alpha: np.ndarray  # h x w float32, 0/1
    area: int  # mask pixels


@dataclass
class PlacedObject:
    """One pasted object: full hard mask at (y0, x0) (may reach outside the image)."""

    cutout: Cutout
    y0: int
    x0: int
    mask: np.ndarray  # bool, the object's label footprint before occlusion/clipping
    area: int  # mask pixels, whole object
    visible: int  # visible pixels after later pastes
    box: tuple[int, int, int, int]  # in-image x0, y0, x1, y1 (exclusive) of the pasted mask
    scale: float
    rotation: float
    hflip: bool
    vflip: bool


@dataclass
class Scene:
    image: np.ndarray  # H x W x 3 uint8 RGB
    label: np.ndarray  # H x W uint8 full-set ids, background 0
    instances: np.ndarray  # H x W uint8, k + 1 = objects[k], 0 = background
    objects: list[PlacedObject]
    background: str
    requested: int


def load_cutouts(samples: Sequence[Sample], root: PathLike, skip_border_objects: bool = True) -> list[Cutout]:
    """Crop every photo to its mask's bounding box (objects touching the photo border are cut
    off in the photo; pasting them mid-scene would show a straight cut, so they are skipped)."""
    root = Path(root)
    full = load_classes("full")
    cutouts: list[Cutout] = []
    skipped: list[str] = []
    for s in samples:
        label = full.remap_dataset_mask(read_label(s.label_path))
        cid = full.names.index(s.class_name)
        mask = label == cid
        if not mask.any():
            log.warning("%s: mask holds no pixel of %s; skipped", s.label_path, s.class_name)
            continue
        if skip_border_objects and (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()):
            skipped.append(s.stem)
            continue
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        rgb = read_rgb(s.image_path)
        if rgb.shape[:2] != mask.shape:
            raise ValueError(f"{s.image_path}: image {rgb.shape[:2]} and mask {mask.shape} differ")
        m = mask[y0:y1, x0:x1]
        cutouts.append(
            Cutout(
                cid,
                s.class_name,
                s.image_path.relative_to(root).as_posix(),
                s.stem,
                np.ascontiguousarray(rgb[y0:y1, x0:x1]),
                m.astype(np.float32),
                int(m.sum()),
            )
        )
    if skipped:
        log.info("skipped %d object photos whose mask touches the photo border: %s", len(skipped), skipped)
    return cutouts


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _box_gap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    """Pixels between two boxes along the axis where they are furthest apart (< 0: overlap)."""
    return max(b[0] - a[2], a[0] - b[2], b[1] - a[3], a[1] - b[3])


class SceneGenerator:
    """Renders scene ``index`` of one split, deterministically from ``(seed, index)``."""

    def __init__(
        self, config: SynthConfig, root: PathLike, split: str, seed: int, samples: Sequence[Sample] | None = None
    ) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if seed < 0:
            raise ValueError("seed must be >= 0")
        self.cfg = config
        self.root = Path(root)
        self.split = split
        self.seed = int(seed)
        all_samples = list(samples) if samples is not None else list_samples(self.root, config.classes)
        train, val = split_samples(all_samples, config.split_spec())
        self.samples = train if split == "train" else val
        if not self.samples:
            raise ValueError(f"no {split} photos (split {config.split_spec().describe()})")
        t0 = time.perf_counter()
        self.cutouts = load_cutouts(self.samples, self.root, config.skip_border_objects)
        if not self.cutouts:
            raise ValueError("no usable object cut-outs")
        log.info(
            "%s split: %d photos, %d cut-outs loaded in %.1f s",
            split,
            len(self.samples),
            len(self.cutouts),
            time.perf_counter() - t0,
        )
        by_class: dict[int, list[int]] = {}
        for i, c in enumerate(self.cutouts):
            by_class.setdefault(c.class_id, []).append(i)
        self._class_ids = sorted(by_class)
        self._by_class = [by_class[c] for c in self._class_ids]
        bgs = list_backgrounds(self.root, split)
        self.backgrounds = {k: v for k, v in bgs.items() if v}
        if not self.backgrounds:
            raise FileNotFoundError(f"no {split} background photos under {self.root}")
        log.info("backgrounds: %s", {k: len(v) for k, v in self.backgrounds.items()})

    # -- random pieces -------------------------------------------------------------------
    def _background(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        cfg = self.cfg
        kinds = sorted(self.backgrounds)
        if len(kinds) == 2:
            kind = "white_backgrounds" if rng.random() < cfg.white_background_prob else "backgrounds"
        else:
            kind = kinds[0]
        pool = self.backgrounds[kind]
        path = pool[int(rng.integers(len(pool)))]
        img = read_rgb(path)
        ih, iw = img.shape[:2]
        H, W = cfg.height, cfg.width
        # largest crop with the output's aspect ratio, scaled by c, at a random position
        if iw * H > ih * W:
            ch, cw = ih, ih * W / H
        else:
            ch, cw = iw * H / W, iw
        c = rng.uniform(cfg.background_min_crop, 1.0)
        ch, cw = max(1, min(ih, int(round(ch * c)))), max(1, min(iw, int(round(cw * c))))
        y = int(rng.integers(0, ih - ch + 1))
        x = int(rng.integers(0, iw - cw + 1))
        crop = img[y : y + ch, x : x + cw]
        interp = cv2.INTER_AREA if ch > H else cv2.INTER_LINEAR
        out = cv2.resize(crop, (W, H), interpolation=interp)
        if rng.random() < cfg.background_hflip_prob:
            out = out[:, ::-1]
        return out.astype(np.float32), path.relative_to(self.root).as_posix()

    def _pick(self, rng: np.random.Generator) -> Cutout:
        if self.cfg.class_balanced:
            members = self._by_class[int(rng.integers(len(self._by_class)))]
            return self.cutouts[members[int(rng.integers(len(members)))]]
        return self.cutouts[int(rng.integers(len(self.cutouts)))]

    def _jitter(self, rgb: np.ndarray, alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Per-object brightness/contrast/saturation/hue, in float32 [0, 1]. Hue stays small:
        blue vs green profiles and red vs blue containers differ only by hue."""
        cfg = self.cfg
        x = rgb.astype(np.float32) * (1.0 / 255.0)
        x *= rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)
        luma = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        mean = float((luma * alpha).sum() / max(alpha.sum(), 1.0))
        c = rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)
        x = (x - mean) * c + mean
        luma = (luma - mean) * c + mean
        s = rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)
        x = luma[..., None] + (x - luma[..., None]) * s
        np.clip(x, 0.0, 1.0, out=x)
        dh = rng.uniform(-cfg.hue, cfg.hue)
        if dh != 0.0:
            hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)  # float input: hue in degrees
            hsv[..., 0] = np.mod(hsv[..., 0] + dh, 360.0)
            x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        return np.clip(x * 255.0, 0.0, 255.0)

    def _transform(self, cut: Cutout, rng: np.random.Generator, shrink: float) -> dict[str, Any] | None:
        """Flip, jitter, scale, rotate, blur one cut-out; returns premultiplied colour, alpha,
        hard mask (alpha >= 0.5) cropped to the hard mask's box, and the parameters."""
        cfg = self.cfg
        H, W = cfg.height, cfg.width
        rgb, alpha = cut.rgb, cut.alpha
        hflip = bool(rng.random() < cfg.hflip_prob)
        vflip = bool(rng.random() < cfg.vflip_prob)
        if hflip:
            rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
        if vflip:
            rgb, alpha = rgb[::-1], alpha[::-1]
        if rng.random() < cfg.color_jitter_prob:
            color = self._jitter(rgb, alpha, rng)
        else:
            color = rgb.astype(np.float32)
        premult = np.ascontiguousarray(color * alpha[..., None])
        alpha = np.ascontiguousarray(alpha)
        angle = float(rng.uniform(-cfg.max_rotation, cfg.max_rotation)) if cfg.rotation else 0.0

        h, w = alpha.shape
        ca, sa = abs(math.cos(math.radians(angle))), abs(math.sin(math.radians(angle)))
        s_fit = min(W / (w * ca + h * sa), H / (w * sa + h * ca))
        if cfg.scale_mode == "source":  # the photo's own scale (same 640x480 camera), jittered
            s_hi = min(cfg.source_scale[1], s_fit)
            s_lo = min(cfg.source_scale[0], s_hi)
        else:
            s_hi = min(math.sqrt(cfg.max_object_area * H * W / cut.area), cfg.max_upscale, s_fit)
            s_lo = min(math.sqrt(cfg.min_object_area * H * W / cut.area), s_hi)
        if cfg.num_scales == 0:
            scale = math.exp(rng.uniform(math.log(s_lo), math.log(s_hi)))
        else:
            scale = float(np.geomspace(s_lo, s_hi, cfg.num_scales)[int(rng.integers(cfg.num_scales))])
        scale *= shrink

        nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
        interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
        premult = cv2.resize(premult, (nw, nh), interpolation=interp)
        alpha = cv2.resize(alpha, (nw, nh), interpolation=interp)
        if angle != 0.0:
            rw = int(math.ceil(nw * ca + nh * sa)) + 2
            rh = int(math.ceil(nw * sa + nh * ca)) + 2
            m = cv2.getRotationMatrix2D(((nw - 1) / 2.0, (nh - 1) / 2.0), angle, 1.0)
            m[0, 2] += (rw - 1) / 2.0 - (nw - 1) / 2.0
            m[1, 2] += (rh - 1) / 2.0 - (nh - 1) / 2.0
            premult = cv2.warpAffine(
                premult, m, (rw, rh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
            )
            alpha = cv2.warpAffine(
                alpha, m, (rw, rh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
            )
        if rng.random() < cfg.blur_prob:
            sigma = float(rng.uniform(*cfg.blur_sigma))
            pad = int(math.ceil(3 * sigma))
            premult = cv2.copyMakeBorder(premult, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
            alpha = cv2.copyMakeBorder(alpha, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
            premult = cv2.GaussianBlur(premult, (0, 0), sigma)
            alpha = cv2.GaussianBlur(alpha, (0, 0), sigma)
        np.clip(alpha, 0.0, 1.0, out=alpha)
        hard = alpha >= 0.5
        if not hard.any():
            return None
        # crop to where alpha is visible at all (>= 1/255): keeps the soft rim of blurred edges
        sx0, sy0, sx1, sy1 = _bbox(alpha >= 1.0 / 255.0)  # type: ignore[misc]
        return {
            "premult": premult[sy0:sy1, sx0:sx1],
            "alpha": alpha[sy0:sy1, sx0:sx1],
            "hard": hard[sy0:sy1, sx0:sx1],
            "area": int(hard.sum()),
            "scale": scale,
            "rotation": angle,
            "hflip": hflip,
            "vflip": vflip,
        }

    # -- scene ---------------------------------------------------------------------------
    def render(self, index: int) -> Scene:
        """Scene ``index``: background, then objects pasted one by one (later ones on top)."""
        cfg = self.cfg
        H, W = cfg.height, cfg.width
        # per-image stream from (seed, index, split): reproducible in any order / process
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, int(index), _SPLIT_CODE[self.split]]))
        image, bg_name = self._background(rng)
        label = np.zeros((H, W), np.uint8)
        inst = np.zeros((H, W), np.uint8)
        placed: list[PlacedObject] = []
        occupied = 0
        max_occupied = cfg.max_occupied_fraction * H * W
        requested = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
        for _ in range(requested):
            for _retry in range(cfg.object_retries):
                cut = self._pick(rng)
                obj = None
                for attempt in range(cfg.placement_attempts):
                    if attempt % 10 == 0:  # new pose every 10 positions, smaller each time
                        obj = self._transform(cut, rng, shrink=0.8 ** (attempt // 10))
                    if obj is None:
                        continue
                    hard = obj["hard"]
                    h, w = hard.shape
                    ty, tx = int(h * cfg.max_truncation), int(w * cfg.max_truncation)
                    if W - w + tx < -tx or H - h + ty < -ty:
                        continue
                    y0 = int(rng.integers(-ty, H - h + ty + 1))
                    x0 = int(rng.integers(-tx, W - w + tx + 1))
                    iy0, ix0, iy1, ix1 = max(y0, 0), max(x0, 0), min(y0 + h, H), min(x0 + w, W)
                    hard_c = hard[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
                    b = _bbox(hard_c)
                    if b is None:
                        continue
                    box = (b[0] + ix0, b[1] + iy0, b[2] + ix0, b[3] + iy0)
                    in_frame = int(hard_c.sum())
                    if in_frame < cfg.min_visible_fraction * obj["area"]:
                        continue
                    if any(_box_gap(box, p.box) < cfg.min_distance for p in placed):
                        continue
                    inst_reg = inst[iy0:iy1, ix0:ix1]
                    counts = np.bincount(inst_reg[hard_c], minlength=len(placed) + 1)
                    if occupied + counts[0] > max_occupied:
                        continue
                    if any(p.visible - counts[j + 1] < cfg.min_visible_fraction * p.area for j, p in enumerate(placed)):
                        continue
                    # commit
                    region = image[iy0:iy1, ix0:ix1]
                    pm = obj["premult"][iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
                    a = obj["alpha"][iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
                    if cfg.soft_edges:  # image = alpha * colour + (1 - alpha) * image
                        region *= (1.0 - a)[..., None]
                        region += pm
                    else:  # colour = premultiplied / alpha, only where labelled
                        region[hard_c] = pm[hard_c] / a[hard_c][:, None]
                    label[iy0:iy1, ix0:ix1][hard_c] = cut.class_id
                    inst_reg[hard_c] = len(placed) + 1
                    for j, p in enumerate(placed):
                        p.visible -= int(counts[j + 1])
                    occupied += int(counts[0])
                    placed.append(
                        PlacedObject(
                            cut,
                            y0,
                            x0,
                            hard,
                            obj["area"],
                            in_frame,
                            box,
                            obj["scale"],
                            obj["rotation"],
                            obj["hflip"],
                            obj["vflip"],
                        )
                    )
                    break
                else:
                    continue  # no position found: try another cut-out
                break
        out = cv2.convertScaleAbs(image)  # round + saturate to uint8 (values are >= 0), fast
        return Scene(out, label, inst, placed, bg_name, requested)

    def annotations(self, scene: Scene, name: str) -> dict[str, Any]:
        """The ``boxes/NNNNNN.json`` content: visible objects in paste order (later on top)."""
        H, W = scene.label.shape
        objects = []
        for k, p in enumerate(scene.objects):
            h, w = p.mask.shape
            iy0, ix0, iy1, ix1 = max(p.y0, 0), max(p.x0, 0), min(p.y0 + h, H), min(p.x0 + w, W)
            vis = scene.instances[iy0:iy1, ix0:ix1] == k + 1
            b = _bbox(vis)
            if b is None:
                continue
            objects.append(
                {
                    "class_id": p.cutout.class_id,
                    "class_name": p.cutout.class_name,
                    "bbox": [b[0] + ix0, b[1] + iy0, b[2] - b[0], b[3] - b[1]],
                    "area": int(vis.sum()),
                    "pasted_area": p.area,
                    "z": k,
                    "source": p.cutout.source,
                    "source_photo": p.cutout.photo,
                    "scale": round(p.scale, 4),
                    "rotation": round(p.rotation, 2),
                    "hflip": p.hflip,
                    "vflip": p.vflip,
                }
            )
        return {
            "image": f"{name}.jpg",
            "label": f"{name}.png",
            "height": H,
            "width": W,
            "split": self.split,
            "background": scene.background,
            "objects": objects,
        }


def preview_image(image: np.ndarray, label: np.ndarray, annotations: Mapping[str, Any]) -> np.ndarray:
    """Side by side: the scene | class colours (class-file palette) over it, with boxes. RGB."""
    palette = load_classes("full").palette()
    colour = palette[np.minimum(label, len(palette) - 1)].astype(np.float32)
    fg = (label > 0)[..., None]
    over = np.where(fg, 0.4 * image + 0.6 * colour, image.astype(np.float32)).astype(np.uint8)
    over = np.ascontiguousarray(over)
    for o in annotations["objects"]:
        x, y, w, h = o["bbox"]
        c = tuple(int(v) for v in palette[o["class_id"]])
        cv2.rectangle(over, (x, y), (x + w - 1, y + h - 1), c, 1)
        cv2.putText(
            over, o["class_name"], (x, max(y - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 2, cv2.LINE_AA
        )
        cv2.putText(over, o["class_name"], (x, max(y - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, c, 1, cv2.LINE_AA)
    return np.concatenate([image, over], axis=1)


def _write(out: Path, index: int, gen: SceneGenerator, preview: bool) -> dict[str, Any]:
    name = f"{index:06d}"
    scene = gen.render(index)
    ann = gen.annotations(scene, name)
    bgr = cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(out / "images" / f"{name}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, gen.cfg.jpeg_quality]):
        raise OSError(f"cannot write {out / 'images' / name}.jpg")
    if not cv2.imwrite(str(out / "labels" / f"{name}.png"), scene.label):
        raise OSError(f"cannot write {out / 'labels' / name}.png")
    with open(out / "boxes" / f"{name}.json", "w", encoding="utf-8") as f:
        json.dump(ann, f, indent=1)
    if preview:
        cv2.imwrite(
            str(out / "preview" / f"{name}.png"),
            cv2.cvtColor(preview_image(scene.image, scene.label, ann), cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_PNG_COMPRESSION, 1],
        )  # previews: speed over size
    return {"requested": scene.requested, "classes": [o["class_id"] for o in ann["objects"]]}


_WORKER: dict[str, Any] = {}


def _init_worker(gen: SceneGenerator, out: Path, preview: bool) -> None:
    cv2.setNumThreads(1)
    _WORKER.update(gen=gen, out=out, preview=preview)


def _work(indices: Sequence[int]) -> list[dict[str, Any]]:
    return [_write(_WORKER["out"], i, _WORKER["gen"], _WORKER["preview"]) for i in indices]


_README = """# Synthetic atWork scenes (generated; not for the repository)

Made by `python -m training.data.synth` from the atWork photos (licence unknown: keep out of git).

- images/NNNNNN.jpg   RGB scene
- labels/NNNNNN.png   8-bit label: full-set class ids 0..18 of config/classes.yaml, background 0
                      (not the dataset's 19). Read with training.data.SyntheticSegmentation.
- boxes/NNNNNN.json   visible objects in paste order: class_id, class_name, bbox [x, y, w, h]
                      of the visible part, area (visible pixels), source photo
- generator_config.yaml  resolved config, seed, split
- preview/NNNNNN.png  (with --preview) scene | class-colour overlay
"""


def generate(
    config: SynthConfig,
    root: PathLike,
    out: PathLike,
    num_images: int,
    split: str,
    seed: int,
    preview: bool = False,
    workers: int = 1,
    start_index: int = 0,
    samples: Sequence[Sample] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Write ``num_images`` scenes with indices ``start_index..`` to ``out``; returns stats.

    Each image depends only on ``(seed, index)`` and the split's photos, so chunks made by
    separate calls or ``workers > 1`` are identical to one sequential run.
    """
    out = Path(out)
    for sub in ("images", "labels", "boxes") + (("preview",) if preview else ()):
        (out / sub).mkdir(parents=True, exist_ok=True)
    gen = SceneGenerator(config, root, split, seed, samples)
    full = load_classes("full")
    resolved = {
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "split": split,
        "num_images": int(num_images),
        "start_index": int(start_index),
        "root": str(root),
        "photos": len(gen.samples),
        "cutouts": len(gen.cutouts),
        "backgrounds": {k: len(v) for k, v in gen.backgrounds.items()},
        "config": config.to_dict(),
    }
    with open(out / "generator_config.yaml", "w", encoding="utf-8") as f:
        yaml.safe_dump(resolved, f, sort_keys=False)
    with open(out / "meta.json", "w", encoding="utf-8") as f:
        json.dump(
            {
                "label_ids": "full",
                "background_id": 0,
                "ignore_index": 255,
                "class_names": list(full.names),
                "split": split,
                "seed": int(seed),
            },
            f,
            indent=1,
        )
    (out / "README.md").write_text(_README, encoding="utf-8")

    indices = list(range(start_index, start_index + num_images))
    results: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    bar = tqdm(total=num_images, desc=f"synth {split}", unit="img", disable=not progress)
    if workers <= 1:
        for i in indices:
            results.append(_write(out, i, gen, preview))
            bar.update(1)
    else:
        chunk = 8
        chunks = [indices[i : i + chunk] for i in range(0, len(indices), chunk)]
        # spawn, not fork: forking a parent whose cv2/OpenMP thread pools are live can deadlock
        # (seen intermittently); the generator (pre-cropped cut-outs) is pickled to each worker
        with mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(gen, out, preview)) as pool:
            for res in pool.imap(_work, chunks):
                results.extend(res)
                bar.update(len(res))
    bar.close()
    seconds = time.perf_counter() - t0
    per_class = np.bincount([c for r in results for c in r["classes"]], minlength=full.num_classes)
    placed = sum(len(r["classes"]) for r in results)
    stats = {
        "num_images": num_images,
        "seconds": round(seconds, 3),
        "images_per_s": round(num_images / seconds, 2) if seconds > 0 else float("inf"),
        "objects_placed": placed,
        "objects_requested": sum(r["requested"] for r in results),
        "objects_per_image": round(placed / max(num_images, 1), 3),
        "per_class": {full.names[i]: int(n) for i, n in enumerate(per_class) if i > 0},
    }
    log.info(
        "generated %d %s scenes in %.1f s (%.1f images/s), %.2f objects/image",
        num_images,
        split,
        seconds,
        stats["images_per_s"],
        stats["objects_per_image"],
    )
    return stats


def _add_override_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("config overrides (any key of the config file)")
    for f in dataclasses.fields(SynthConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        if isinstance(default, bool):
            g.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        elif isinstance(default, tuple):
            g.add_argument(flag, dest=f.name, type=float, nargs=2, default=None, metavar=("LO", "HI"))
        elif f.name == "classes":
            g.add_argument(flag, dest=f.name, nargs="+", default=None, metavar="NAME")
        else:
            g.add_argument(flag, dest=f.name, type=type(default), default=None)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.data.synth",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--root",
        default=str(DEFAULT_ROOT),
        help="atWork dataset root (default: ../shared/datasets/atwork next to the repository)",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--num-images", type=int, required=True)
    p.add_argument("--split", choices=("train", "val"), required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="generator config YAML")
    p.add_argument("--preview", action="store_true", help="also write preview/NNNNNN.png overlays")
    p.add_argument("--workers", type=int, default=1, help="processes (output is identical for any value)")
    p.add_argument("--start-index", type=int, default=0, help="first image index (for chunked runs)")
    _add_override_args(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    names = {f.name for f in dataclasses.fields(SynthConfig)}
    cfg = load_config(args.config, {k: v for k, v in vars(args).items() if k in names})
    stats = generate(
        cfg,
        args.root,
        args.out,
        args.num_images,
        args.split,
        args.seed,
        preview=args.preview,
        workers=args.workers,
        start_index=args.start_index,
    )
    print(json.dumps(stats, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
