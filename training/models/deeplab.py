"""DeepLabV3+ with a MobileNetV2 encoder.

The encoder reproduces the TF-slim MobileNetV2 used by TF DeepLab (no final
1x1 1280 conv; dilation instead of striding past the output stride), so the
official TFLite DeepLab v3 models (the reference models) can initialise it
exactly: see :mod:`training.models.tflite_import`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from .layers import ConvBNAct, init_weights, make_divisible, resize_to

# MobileNetV2 stages: (expansion t, base channels c, repeats n, first stride s).
_MBV2_STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: optional 1x1 expand, 3x3 depthwise (maybe dilated), 1x1 linear project."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, dilation: int, hidden_ch: int) -> None:
        super().__init__()
        self.use_residual = stride == 1 and in_ch == out_ch
        self.expand: ConvBNAct | None = ConvBNAct(in_ch, hidden_ch, 1, act="relu6") if hidden_ch != in_ch else None
        self.depthwise = ConvBNAct(
            hidden_ch, hidden_ch, 3, stride=stride, dilation=dilation, groups=hidden_ch, act="relu6"
        )
        self.project = ConvBNAct(hidden_ch, out_ch, 1, act=None)

    def forward(self, x: Tensor) -> Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.project(self.depthwise(y))
        return x + y if self.use_residual else y


class MobileNetV2Encoder(nn.Module):
    """MobileNetV2 feature extractor returning (stride-4 features, final features).

    ``channel_divisor=None`` picks 8 (standard rounding) except at width 0.5,
    where it picks 1 to reproduce TF DeepLab's MobileNetV2-0.5 widths
    (16 | 8, 12,12, 16,16,16, 32x4, 48x3, 80x3, 160) and hence the reference model.
    """

    def __init__(
        self,
        width_mult: float = 0.5,
        output_stride: int = 16,
        channel_divisor: int | None = None,
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        if channel_divisor is None:
            channel_divisor = 1 if width_mult == 0.5 else 8
        self.channel_divisor = channel_divisor

        def ch(c: int) -> int:
            return make_divisible(c * width_mult, channel_divisor, min_value=8)

        stem_ch = ch(32)
        self.stem = ConvBNAct(3, stem_ch, 3, stride=2, act="relu6")
        blocks: list[InvertedResidual] = []
        current_stride, rate = 2, 1
        in_ch = stem_ch
        self.low_level_index = -1
        self.low_level_channels = 0
        for t, c, n, s in _MBV2_STAGES:
            out_ch = ch(c)
            for i in range(n):
                stride = s if i == 0 else 1
                # TF-slim rule: once the output stride is reached, the striding
                # layer keeps the current rate and later layers dilate more.
                if stride > 1 and current_stride == output_stride:
                    layer_stride, layer_rate = 1, rate
                    rate *= stride
                else:
                    layer_stride, layer_rate = stride, rate
                    current_stride *= stride
                hidden = in_ch if t == 1 else make_divisible(in_ch * t, channel_divisor, min_value=8)
                blocks.append(InvertedResidual(in_ch, out_ch, layer_stride, layer_rate, hidden))
                in_ch = out_ch
                if current_stride == 4:
                    self.low_level_index = len(blocks) - 1
                    self.low_level_channels = out_ch
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = in_ch

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.stem(x)
        low = x
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == self.low_level_index:
                low = x
        return low, x


class SeparableConvBNReLU(nn.Sequential):
    """Depthwise 3x3 (BN, ReLU) then pointwise 1x1 (BN, ReLU), as in DeepLabV3+."""

    def __init__(self, in_ch: int, out_ch: int, dilation: int = 1) -> None:
        super().__init__(
            ConvBNAct(in_ch, in_ch, 3, dilation=dilation, groups=in_ch, act="relu"),
            ConvBNAct(in_ch, out_ch, 1, act="relu"),
        )


def _conv3x3_block(in_ch: int, out_ch: int, dilation: int, separable: bool) -> nn.Module:
    if separable:
        return SeparableConvBNReLU(in_ch, out_ch, dilation)
    return ConvBNAct(in_ch, out_ch, 3, dilation=dilation, act="relu")


class ImagePooling(nn.Module):
    """Global-average-pool branch of ASPP.

    Conv with bias and no BatchNorm: BN over a 1x1 map breaks with batch size
    1 in training mode, and the reference model has no BN here either.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=True)
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        y = self.act(self.conv(x.mean((2, 3), keepdim=True)))
        return resize_to(y, x)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling; branch order [pool, 1x1, atrous...] matches TF DeepLab."""

    def __init__(self, in_ch: int, out_ch: int, rates: Sequence[int], separable: bool, dropout: float) -> None:
        super().__init__()
        self.pool = ImagePooling(in_ch, out_ch)
        self.conv1x1 = ConvBNAct(in_ch, out_ch, 1, act="relu")
        self.atrous = nn.ModuleList([_conv3x3_block(in_ch, out_ch, r, separable) for r in rates])
        self.project = ConvBNAct(out_ch * (2 + len(rates)), out_ch, 1, act="relu")
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        branches = [self.pool(x), self.conv1x1(x)]
        for branch in self.atrous:
            branches.append(branch(x))
        return self.dropout(self.project(torch.cat(branches, 1)))


class DeepLabV3PlusMobileNetV2(nn.Module):
    """DeepLabV3+ (ASPP + low-level decoder) on a MobileNetV2 encoder.

    Output: logits with ``num_classes`` channels at the input's H x W.
    """

    def __init__(
        self,
        num_classes: int,
        width_mult: float = 0.5,
        output_stride: int = 16,
        aspp_rates: Sequence[int] | None = None,
        aspp_channels: int = 128,
        decoder_channels: int | None = None,
        low_level_channels: int = 32,
        separable: bool = True,
        dropout: float = 0.1,
        channel_divisor: int | None = None,
    ) -> None:
        super().__init__()
        if aspp_rates is None:
            aspp_rates = tuple(r * 16 // output_stride for r in (6, 12, 18))
        aspp_rates = tuple(int(r) for r in aspp_rates)
        if decoder_channels is None:
            decoder_channels = aspp_channels
        self.encoder = MobileNetV2Encoder(width_mult, output_stride, channel_divisor)
        self.aspp = ASPP(self.encoder.out_channels, aspp_channels, aspp_rates, separable, dropout)
        self.low_proj = ConvBNAct(self.encoder.low_level_channels, low_level_channels, 1, act="relu")
        self.decoder = nn.Sequential(
            _conv3x3_block(aspp_channels + low_level_channels, decoder_channels, 1, separable),
            _conv3x3_block(decoder_channels, decoder_channels, 1, separable),
        )
        self.classifier = nn.Conv2d(decoder_channels, num_classes, 1)
        # False: logits at the decoder's stride-4 grid (export: the runtime upsamples only where labels change)
        self.full_resolution_logits = True
        init_weights(self)
        self.config: dict[str, Any] = {
            "name": "deeplabv3plus_mobilenetv2",
            "num_classes": int(num_classes),
            "width_mult": float(width_mult),
            "output_stride": int(output_stride),
            "aspp_rates": list(aspp_rates),
            "aspp_channels": int(aspp_channels),
            "decoder_channels": int(decoder_channels),
            "low_level_channels": int(low_level_channels),
            "separable": bool(separable),
            "dropout": float(dropout),
            "channel_divisor": int(self.encoder.channel_divisor),
        }

    def classifier_layers(self) -> list[nn.Module]:
        """Layers whose output channels are classes (to be left unpruned)."""
        return [self.classifier]

    def forward(self, x: Tensor) -> Tensor:
        low, high = self.encoder(x)
        y = self.aspp(high)
        low = self.low_proj(low)
        y = self.decoder(torch.cat([resize_to(y, low), low], 1))
        logits = self.classifier(y)
        return resize_to(logits, x) if self.full_resolution_logits else logits
