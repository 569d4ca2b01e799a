"""Segmentation model families and their registry.

Shared conventions (relied upon by training, export and the ROS node):
* input: float32 NCHW RGB normalised as ``(pixel - NORM_MEAN) / NORM_STD``,
  i.e. [-1, 1];
* output: logits NCHW with ``num_classes`` channels at the input's H x W
  (bilinear resize inside the model, align_corners=False); models with a
  ``full_resolution_logits`` attribute return their own coarser grid when it is
  False (export: the node's runtime then upsamples, bilinear where labels change);
* every model has ``model.config`` (``create_model(**model.config)`` rebuilds
  the same architecture) and ``model.classifier_layers()`` (class-scoring
  layers a pruner must leave alone).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from .deeplab import DeepLabV3PlusMobileNetV2, MobileNetV2Encoder
from .espnet import ESPNet, ESPNetC
from .fcn import FCN
from .tflite_import import (
    DEFAULT_REFERENCE_TFLITE,
    REFERENCE_TFLITE_MNV2_1_0,
    aspp_matches_reference,
    calibrate_folded_batchnorm,
    load_reference_weights,
)

NORM_MEAN: tuple[float, float, float] = (127.5, 127.5, 127.5)
NORM_STD: tuple[float, float, float] = (127.5, 127.5, 127.5)

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "deeplabv3plus_mobilenetv2": DeepLabV3PlusMobileNetV2,
    "fcn32s": lambda num_classes, **kw: FCN(num_classes, variant="32s", **kw),
    "fcn16s": lambda num_classes, **kw: FCN(num_classes, variant="16s", **kw),
    "fcn8s": lambda num_classes, **kw: FCN(num_classes, variant="8s", **kw),
    "espnet_c": ESPNetC,
    "espnet": ESPNet,
}

MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def create_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build a model by registry name; extra kwargs go to its constructor."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    return _BUILDERS[name](num_classes=num_classes, **kwargs)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_hw: tuple[int, int]) -> int:
    """Multiply-accumulates of one forward pass at batch 1 and ``input_hw`` (H, W).

    Counts Conv2d (out elements x in_ch/groups x kh x kw), ConvTranspose2d
    (input elements x out_ch/groups x kh x kw: every input pixel is scattered
    through the kernel) and Linear layers; pooling, BN, activations and resizes
    are ignored as negligible.
    """
    total = [0]

    def conv_hook(m: nn.Conv2d, _inp: Any, out: torch.Tensor) -> None:
        kh, kw = m.kernel_size
        total[0] += out.numel() * (m.in_channels // m.groups) * kh * kw

    def deconv_hook(m: nn.ConvTranspose2d, inp: Any, _out: torch.Tensor) -> None:
        kh, kw = m.kernel_size
        total[0] += inp[0].numel() * (m.out_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, _inp: Any, out: torch.Tensor) -> None:
        total[0] += out.numel() * m.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.ConvTranspose2d):
            handles.append(m.register_forward_hook(deconv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, int(input_hw[0]), int(input_hw[1]), device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return int(total[0])


__all__ = [
    "DEFAULT_REFERENCE_TFLITE",
    "REFERENCE_TFLITE_MNV2_1_0",
    "aspp_matches_reference",
    "calibrate_folded_batchnorm",
    "load_reference_weights",
    "DeepLabV3PlusMobileNetV2",
    "ESPNet",
    "ESPNetC",
    "FCN",
    "MODEL_NAMES",
    "MobileNetV2Encoder",
    "NORM_MEAN",
    "NORM_STD",
    "count_macs",
    "count_parameters",
    "create_model",
]
