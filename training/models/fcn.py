"""FCN-32s / 16s / 8s (Long et al. 2015) on a VGG16 trunk with a width multiplier.

Design changes from the Caffe original, for export and pruning:
* no 100-pixel input padding and crop: every 3x3 conv uses padding 1 and fc6
  (7x7) padding 3, so the score maps line up with the pooled features;
* upsampling is bilinear ``F.interpolate`` (align_corners=False) instead of
  learnable transposed convs initialised to bilinear: exact size for any input
  (also odd sizes), no channel coupling for the pruner and a single resize op
  after export. The 3 upsampling deconvs of FCN-8s (~127k params at 21
  classes) are therefore absent from the parameter count;
* optional BatchNorm after every conv incl. fc6/fc7 (default on) so the net
  can be trained from scratch; no 0.01 / 0.0001 skip scaling is needed then.
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn
from torch import Tensor

from .layers import init_weights, resize_to

_VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
_VARIANTS = ("32s", "16s", "8s")


def _conv_block(in_ch: int, out_ch: int, kernel: int, batch_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_ch))
    layers.append(nn.ReLU())
    return layers


class FCN(nn.Module):
    """VGG16 FCN; ``variant`` picks the skip layout (32s: none, 16s: pool4, 8s: pool4+pool3)."""

    def __init__(
        self,
        num_classes: int,
        variant: str = "8s",
        width_mult: float = 1.0,
        batch_norm: bool = True,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if variant not in _VARIANTS:
            raise ValueError(f"variant must be one of {_VARIANTS}, got {variant!r}")
        self.variant = variant
        stages: list[nn.Sequential] = []
        in_ch = 3
        stage_channels: list[int] = []
        for base, repeats in _VGG16_BLOCKS:
            out_ch = max(1, int(round(base * width_mult)))
            layers: list[nn.Module] = []
            for _ in range(repeats):
                layers += _conv_block(in_ch, out_ch, 3, batch_norm)
                in_ch = out_ch
            layers.append(nn.MaxPool2d(2, 2))
            stages.append(nn.Sequential(*layers))
            stage_channels.append(out_ch)
        self.stage1, self.stage2, self.stage3, self.stage4, self.stage5 = stages
        fc_ch = max(1, int(round(4096 * width_mult)))
        self.fc = nn.Sequential(
            *_conv_block(in_ch, fc_ch, 7, batch_norm),
            nn.Dropout(dropout),
            *_conv_block(fc_ch, fc_ch, 1, batch_norm),
            nn.Dropout(dropout),
        )
        self.score_fr = nn.Conv2d(fc_ch, num_classes, 1)
        self.score_pool4 = nn.Conv2d(stage_channels[3], num_classes, 1) if variant in ("16s", "8s") else None
        self.score_pool3 = nn.Conv2d(stage_channels[2], num_classes, 1) if variant == "8s" else None
        # False: logits at the stride-8 score grid (export: the runtime upsamples only where labels change)
        self.full_resolution_logits = True
        init_weights(self)
        # Skip scorers start at zero, as in the paper, so training starts from the coarser net.
        for layer in (self.score_pool4, self.score_pool3):
            if layer is not None:
                nn.init.zeros_(layer.weight)
        self.config: dict[str, Any] = {
            "name": f"fcn{variant}",
            "num_classes": int(num_classes),
            "width_mult": float(width_mult),
            "batch_norm": bool(batch_norm),
            "dropout": float(dropout),
        }

    def classifier_layers(self) -> list[nn.Module]:
        """All score layers (score_fr and the skip scorers); there are no deconvs."""
        return [m for m in (self.score_fr, self.score_pool4, self.score_pool3) if m is not None]

    def forward(self, x: Tensor) -> Tensor:
        pool3 = self.stage3(self.stage2(self.stage1(x)))
        pool4 = self.stage4(pool3)
        score = self.score_fr(self.fc(self.stage5(pool4)))
        if self.score_pool4 is not None:
            skip = self.score_pool4(pool4)
            score = resize_to(score, skip) + skip
        if self.score_pool3 is not None:
            skip = self.score_pool3(pool3)
            score = resize_to(score, skip) + skip
        return resize_to(score, x) if self.full_resolution_logits else score
