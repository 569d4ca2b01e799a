"""ESPNet-C and ESPNet (Mehta et al., ECCV 2018), written for export and pruning.

Same topology, channel widths and tensors as the paper and the authors' released
Cityscapes model (level widths 16+3, 64, 128+3, 256; ESP modules with K=5
branches, dilations 1,2,4,8,16 and hierarchical feature fusion; input
reinforcement with one BN+PReLU over each concatenation; the light RUM decoder,
whose last 3x3 convolution reads the 16 level-1 features and the class scores),
so the released weights load tensor for tensor (:mod:`training.models.espnet_import`).
Differences from the authors' code, none of them in the function:
* modules are held as named attributes (no plain-list ``modules`` attribute,
  which hides parameters from ``state_dict`` and breaks tracing);
* each of the K branches is its own conv (the first takes the remainder
  channels when N is not divisible by K), so nothing splits a tensor by a
  channel count fixed at init;
* the decoder's width (the paper: the number of classes) can be set apart from
  the number of classes (``decoder_channels``): the 20-channel decoder of the
  Cityscapes model then serves the 19 atWork classes, only the last transposed
  convolution changes shape;
* ESPNet-C upsamples its 1/8 logits bilinearly to the input size, and the
  ESPNet decoder resizes a transposed-conv output to its skip's size only when
  the two differ (odd input sizes), so any input size works.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from .layers import ConvBNAct, init_weights, resize_to

_BN_EPS = 1e-3  # as in the paper's code
_DILATIONS = (1, 2, 4, 8, 16)


class BNPReLU(nn.Sequential):
    """BatchNorm + PReLU (the paper's 'BR')."""

    def __init__(self, channels: int) -> None:
        super().__init__(OrderedDict(bn=nn.BatchNorm2d(channels, eps=_BN_EPS), act=nn.PReLU(channels)))


class ConcatBNPReLU(BNPReLU):
    """Concatenate the inputs, then one BN+PReLU over all channels (the paper's 'BR' after a concat)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels)

    def forward(self, *xs: Tensor) -> Tensor:  # type: ignore[override]
        return super().forward(torch.cat(xs, 1))


class ESPModule(nn.Module):
    """Efficient spatial pyramid: reduce -> K dilated 3x3 branches -> HFF -> concat (-> + input) -> BN+PReLU.

    ``stride=2`` makes the strided variant (3x3 stride-2 reduce, no residual).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, residual: bool = True) -> None:
        super().__init__()
        k = len(_DILATIONS)
        n = out_ch // k
        n1 = out_ch - (k - 1) * n
        if n < 1:
            raise ValueError(f"ESP module needs at least {k} output channels, got {out_ch}")
        reduce_kernel = 3 if stride == 2 else 1
        self.reduce = nn.Conv2d(in_ch, n, reduce_kernel, stride=stride, padding=reduce_kernel // 2, bias=False)
        self.branches = nn.ModuleList(
            [nn.Conv2d(n, n1 if i == 0 else n, 3, padding=d, dilation=d, bias=False) for i, d in enumerate(_DILATIONS)]
        )
        self.residual = residual and stride == 1 and in_ch == out_ch
        self.post = BNPReLU(out_ch)

    def forward(self, x: Tensor) -> Tensor:
        r = self.reduce(x)
        outs = [self.branches[0](r)]
        acc = self.branches[1](r)
        outs.append(acc)
        for branch in self.branches[2:]:
            acc = acc + branch(r)  # hierarchical feature fusion against gridding
            outs.append(acc)
        y = torch.cat(outs, 1)
        if self.residual:
            y = x + y
        return self.post(y)


class InputProjection(nn.Module):
    """Image downsampled ``times`` times by 3x3/2 average pooling (input reinforcement)."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.pools = nn.Sequential(*[nn.AvgPool2d(3, stride=2, padding=1) for _ in range(times)])

    def forward(self, x: Tensor) -> Tensor:
        return self.pools(x)


class ESPNetC(nn.Module):
    """ESPNet-C: the encoder, with a 1x1 classifier at 1/8 resolution upsampled to the input.

    ``p`` / ``q``: ESP modules at levels 2 / 3 (the paper's alpha_2 / alpha_3);
    the default 2 / 8 is the paper's final setting (the authors' code defaults
    to p=5, q=3 for ESPNet-C and p=2, q=3 for ESPNet).
    """

    def __init__(self, num_classes: int, p: int = 2, q: int = 8) -> None:
        super().__init__()
        self.level1 = ConvBNAct(3, 16, 3, stride=2, act="prelu", bn_eps=_BN_EPS)
        self.sample1 = InputProjection(1)
        self.sample2 = InputProjection(2)
        self.b1 = ConcatBNPReLU(16 + 3)
        self.level2_0 = ESPModule(16 + 3, 64, stride=2)
        self.level2 = nn.Sequential(*[ESPModule(64, 64) for _ in range(p)])
        self.b2 = ConcatBNPReLU(64 + 64 + 3)
        self.level3_0 = ESPModule(128 + 3, 128, stride=2)
        self.level3 = nn.Sequential(*[ESPModule(128, 128) for _ in range(q)])
        self.b3 = ConcatBNPReLU(128 + 128)
        self.classifier = nn.Conv2d(256, num_classes, 1, bias=False)
        self.p, self.q = p, q
        init_weights(self)
        self.config: dict[str, Any] = {"name": "espnet_c", "num_classes": int(num_classes), "p": int(p), "q": int(q)}

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        """Level-1 features (``f1``, 16 ch) and with the image (``l1``) at 1/2, ``l2`` at 1/4, the 1/8
        class scores (``scores``)."""
        f1 = self.level1(x)
        l1 = self.b1(f1, self.sample1(x))
        down2 = self.level2_0(l1)
        l2 = self.b2(self.level2(down2), down2, self.sample2(x))
        down3 = self.level3_0(l2)
        l3 = self.b3(down3, self.level3(down3))
        return {"f1": f1, "l1": l1, "l2": l2, "scores": self.classifier(l3)}

    def classifier_layers(self) -> list[nn.Module]:
        return [self.classifier]

    def forward(self, x: Tensor) -> Tensor:
        return resize_to(self.encode(x)["scores"], x)


class ESPNet(nn.Module):
    """ESPNet: ESPNet-C plus the paper's light decoder (project to classes, RUM, fuse, upsample).

    ``decoder_channels`` (default: ``num_classes``, as in the paper) is the width of the class-space
    decoder; only the final transposed convolution maps it to ``num_classes``.
    """

    def __init__(self, num_classes: int, p: int = 2, q: int = 8, decoder_channels: int | None = None) -> None:
        super().__init__()
        c = int(decoder_channels or num_classes)
        if c < 5:
            raise ValueError(f"decoder_channels must be >= 5 (an ESP module), got {c}")
        self.encoder = ESPNetC(c, p, q)
        self.level2_classifier = nn.Conv2d(128 + 3, c, 1, bias=False)
        self.scores_bn = nn.BatchNorm2d(c, eps=_BN_EPS)
        self.up_l3 = nn.ConvTranspose2d(c, c, 2, stride=2, bias=False)
        self.combine_bn = BNPReLU(2 * c)
        self.combine = ESPModule(2 * c, c, residual=False)
        self.up_l2 = nn.ConvTranspose2d(c, c, 2, stride=2, bias=False)
        self.up_l2_bn = BNPReLU(c)
        self.fuse_l1 = ConvBNAct(16 + c, c, 3, act="prelu", bn_eps=_BN_EPS)
        self.classifier = nn.ConvTranspose2d(c, num_classes, 2, stride=2, bias=False)
        init_weights(self)
        self.config: dict[str, Any] = {"name": "espnet", "num_classes": int(num_classes), "p": int(p), "q": int(q)}
        if c != num_classes:
            self.config["decoder_channels"] = c

    def classifier_layers(self) -> list[nn.Module]:
        """Every conv whose output lives in class space (the encoder's and the whole decoder's)."""
        layers: list[nn.Module] = [self.encoder.classifier, self.level2_classifier, self.up_l3]
        layers += [m for m in self.combine.modules() if isinstance(m, nn.Conv2d)]
        layers += [self.up_l2, self.fuse_l1.conv, self.classifier]
        return layers

    @staticmethod
    def _match(x: Tensor, ref: Tensor) -> Tensor:
        # Shape check is static under tracing; only odd input sizes pay for a resize.
        if x.shape[-2:] != ref.shape[-2:]:
            return resize_to(x, ref)
        return x

    def forward(self, x: Tensor) -> Tensor:
        feats = self.encoder.encode(x)
        f1, l2 = feats["f1"], feats["l2"]
        up3 = self._match(self.up_l3(self.scores_bn(feats["scores"])), l2)
        y = self.combine(self.combine_bn(torch.cat([self.level2_classifier(l2), up3], 1)))
        y = self._match(self.up_l2_bn(self.up_l2(y)), f1)
        y = self.fuse_l1(torch.cat([y, f1], 1))
        return self._match(self.classifier(y), x)
