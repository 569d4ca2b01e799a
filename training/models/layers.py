"""Small building blocks shared by the model families.

Kept deliberately plain (Conv2d + BatchNorm2d + activation, no fused or
in-place ops) so that every model stays traceable by ``torch.export``,
exportable to ONNX, convertible by litert-torch and prunable by
torch-pruning's dependency graph.
"""

from __future__ import annotations

from collections import OrderedDict

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


def make_divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor`` (MobileNet convention).

    Never goes below ``min_value`` (default ``divisor``) and never rounds down
    by more than 10 %, as in the TF-slim / torchvision MobileNet code.
    """
    if min_value is None:
        min_value = divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


def _activation(kind: str | None, channels: int) -> nn.Module:
    if kind is None:
        return nn.Identity()
    if kind == "relu":
        return nn.ReLU()
    if kind == "relu6":
        return nn.ReLU6()
    if kind == "prelu":
        return nn.PReLU(channels)
    raise ValueError(f"unknown activation {kind!r}")


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> activation, with 'same' padding.

    Padding is symmetric ``dilation * (k - 1) // 2``; for stride-2 3x3 convs
    this equals TF 'SAME' padding on odd input sizes (e.g. 257) and differs
    by a one-pixel shift on even sizes.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        act: str | None = "relu",
        bn_eps: float = 1e-5,
    ) -> None:
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            OrderedDict(
                conv=nn.Conv2d(
                    in_channels,
                    out_channels,
                    kernel_size,
                    stride=stride,
                    padding=padding,
                    dilation=dilation,
                    groups=groups,
                    bias=False,
                ),
                bn=nn.BatchNorm2d(out_channels, eps=bn_eps),
                act=_activation(act, out_channels),
            )
        )


def resize_to(x: Tensor, ref: Tensor) -> Tensor:
    """Bilinearly resize ``x`` to the spatial size of ``ref`` (align_corners=False)."""
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal convs, unit BatchNorm, zero biases: a sane from-scratch start."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
