"""Training-time augmentation, applied to image and label together.

Why albumentations: it is well kept, mask-aware (every geometric transform moves ``mask``
with the image, nearest-neighbour by default, with its own fill value) and runs on fast
cv2 kernels, so a two-core CPU box keeps up with the data loader.

Label fill: pixels that come from outside the image (rotation corners, zoom-out padding) get
label 255 = ignore, not background: they are black padding, not a real surface, and
teaching "black border = background" would be wrong. The loss must use ``ignore_index=255``.

Label resizing uses ``cv2.INTER_NEAREST_EXACT``: plain ``INTER_NEAREST`` samples pixel
corners, not centres, and shifts the label by up to a source pixel against the linearly
resized image (the alignment test catches it). Warps (Affine) use nearest on the same
mapping as the image and are aligned.

Randomness: a ``Compose`` draws its generator once (``seed`` key, default: OS entropy); the
datasets of :mod:`training.data.atwork` reseed it once per DataLoader worker from torch's
worker seed, so workers do not replay the same augmentations.

Transforms take and return ``transform(image=HxWx3 uint8 RGB, mask=HxW uint8)`` dicts, the
convention :class:`training.data.atwork.AtWorkSegmentation` expects.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check at import

import albumentations as A  # noqa: E402
import cv2  # noqa: E402

from seg_perception.classes import IGNORE_INDEX  # noqa: E402

#: Defaults of :func:`build_train_transform`; a cfg overrides any of them.
DEFAULT_TRAIN_CFG: dict[str, Any] = {
    # RandomResizedCrop: area fraction of the source kept, aspect jitter around H x W
    "crop_scale": (0.4, 1.0),
    "aspect_jitter": 1.25,
    # Affine (before the crop): rotation in degrees, zoom (< 1 zooms out, padding is ignore)
    "affine_prob": 0.5,
    "rotate": 20.0,
    "affine_scale": (0.75, 1.25),
    "hflip_prob": 0.5,
    "vflip_prob": 0.0,
    # photometric; hue stays small (B/G profiles, red/blue containers differ by hue only)
    "color_prob": 0.8,
    "brightness": 0.25,
    "contrast": 0.25,
    "saturation": 0.25,
    "hue": 0.015,
    "blur_prob": 0.2,
    "noise_prob": 0.2,
    "jpeg_prob": 0.2,
    # new light and cameras: white balance (per-channel gain), gamma; both off by default
    "white_balance_prob": 0.0,
    "channel_gain": (0.85, 1.15),
    "gamma_prob": 0.0,
    "gamma": (70, 150),
    # occlusion: up to occlusion_holes random boxes (fraction of the side each) painted over with noise;
    # their pixels are labelled background (what covers an object is not the object); off by default
    "occlusion_prob": 0.0,
    "occlusion_holes": 3,
    "occlusion_size": (0.05, 0.2),
    "seed": None,
}


def _merged(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    c = dict(DEFAULT_TRAIN_CFG)
    unknown = set(cfg or {}) - set(c)
    if unknown:
        raise ValueError(f"unknown augmentation keys: {sorted(unknown)}; valid: {sorted(c)}")
    c.update(cfg or {})
    return c


def build_train_transform(height: int, width: int, cfg: Mapping[str, Any] | None = None) -> A.Compose:
    """Random affine (rotate/zoom), random resized crop to ``height x width``, flips, colour
    jitter, white balance, gamma, occlusion, blur, noise and JPEG artefacts. ``cfg`` overrides keys of
    :data:`DEFAULT_TRAIN_CFG`."""
    c = _merged(cfg)
    aspect = width / height
    transforms = [
        A.Affine(
            scale=tuple(c["affine_scale"]),
            rotate=(-c["rotate"], c["rotate"]),
            interpolation=cv2.INTER_LINEAR,
            mask_interpolation=cv2.INTER_NEAREST,
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            fill_mask=IGNORE_INDEX,
            p=c["affine_prob"],
        ),
        A.RandomResizedCrop(
            size=(height, width),
            scale=tuple(c["crop_scale"]),
            ratio=(aspect / c["aspect_jitter"], aspect * c["aspect_jitter"]),
            interpolation=cv2.INTER_LINEAR,
            mask_interpolation=cv2.INTER_NEAREST_EXACT,
            area_for_downscale="image",
        ),
        A.HorizontalFlip(p=c["hflip_prob"]),
        A.VerticalFlip(p=c["vflip_prob"]),
        A.ColorJitter(
            brightness=c["brightness"],
            contrast=c["contrast"],
            saturation=c["saturation"],
            hue=c["hue"],
            p=c["color_prob"],
        ),
        A.MultiplicativeNoise(
            multiplier=tuple(c["channel_gain"]), per_channel=True, elementwise=False, p=c["white_balance_prob"]
        ),
        A.RandomGamma(gamma_limit=tuple(c["gamma"]), p=c["gamma_prob"]),
        A.CoarseDropout(
            num_holes_range=(1, int(c["occlusion_holes"])),
            hole_height_range=tuple(c["occlusion_size"]),
            hole_width_range=tuple(c["occlusion_size"]),
            fill="random_uniform",
            fill_mask=0,
            p=c["occlusion_prob"],
        ),
        A.OneOf([A.GaussianBlur(sigma_limit=(0.3, 1.5)), A.MotionBlur(blur_limit=(3, 7))], p=c["blur_prob"]),
        A.GaussNoise(std_range=(0.01, 0.05), p=c["noise_prob"]),
        A.ImageCompression(quality_range=(50, 95), p=c["jpeg_prob"]),
    ]
    return A.Compose(transforms, seed=c["seed"])


def build_val_transform(height: int, width: int) -> A.Compose:
    """Deterministic resize to ``height x width`` (label nearest, image area-downscaled)."""
    return A.Compose(
        [
            A.Resize(
                height,
                width,
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST_EXACT,
                area_for_downscale="image",
            )
        ]
    )
