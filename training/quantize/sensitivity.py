"""Which convs an int8 model keeps in float, and how those layers are named in exported graphs.

:func:`weight_sensitivity` int8-rounds the BN-folded weights of one small-fan-in conv at a time
in PyTorch and measures the argmax agreement lost; :func:`pick_float_layers` keeps the worst few.
Weight rounding, not activation ranges, dominated the int8 loss of the CPU-trained DeepLabV3+
MobileNetV2 (docs/architecture.md has the numbers). :func:`fused_scope` and
:func:`exporter_path` turn a conv's module name into the scope the exporters record, so the ONNX
and LiteRT quantisers can find its ops.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _following_bn(model: Any, conv_name: str) -> Any:
    """The BatchNorm2d right after ``conv_name`` in its parent (what the converters fold into it)."""
    import torch.nn as nn

    parent_name, _, child = conv_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    names = list(parent._modules)
    i = names.index(child)
    nxt = parent._modules[names[i + 1]] if i + 1 < len(names) else None
    conv = parent._modules[child]
    if isinstance(nxt, nn.BatchNorm2d) and nxt.num_features == conv.out_channels:
        return nxt
    return None


def _fake_quant_folded(conv: Any, bn: Any, bits: int = 8) -> Any:
    """Conv weight after BN folding, per-output-channel symmetric rounding, and unfolding."""
    import torch

    w = conv.weight.detach()
    if bn is not None:
        s = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().abs().clamp_min(1e-12)
    else:
        s = torch.ones(w.shape[0])
    shape = (-1,) + (1,) * (w.ndim - 1)
    wf = w * s.view(shape)
    qmax = 2 ** (bits - 1) - 1
    scale = wf.abs().amax(dim=tuple(range(1, w.ndim)), keepdim=True).clamp_min(1e-12) / qmax
    return torch.round(wf / scale) * scale / s.view(shape)


def weight_sensitivity(
    model: Any, images: np.ndarray, max_images: int = 8, bits: int = 8, max_fan_in: int = 64
) -> list[tuple[str, float]]:
    """``[(conv name, argmax agreement lost)]``, most sensitive first, from int8-rounding the
    (BN-folded, per-channel) weights of one conv at a time in PyTorch.

    Only convs with at most ``max_fan_in`` weights per output channel are probed: with more, the
    rounding errors average out.
    """
    import torch
    import torch.nn as nn

    idx = np.linspace(0, len(images) - 1, min(max_images, len(images))).round().astype(int)
    x = (torch.from_numpy(np.ascontiguousarray(images[idx])).permute(0, 3, 1, 2).float() - 127.5) / 127.5
    model.eval()
    with torch.no_grad():
        ref = model(x).argmax(1)
    out: list[tuple[str, float]] = []
    for name, conv in model.named_modules():
        if type(conv) is not nn.Conv2d:
            continue
        if conv.weight[0].numel() > max_fan_in:
            continue
        orig = conv.weight.data
        conv.weight.data = _fake_quant_folded(conv, _following_bn(model, name), bits)
        with torch.no_grad():
            agree = float((model(x).argmax(1) == ref).float().mean())
        conv.weight.data = orig
        out.append((name, 1.0 - agree))
    out.sort(key=lambda t: -t[1])
    return out


def pick_float_layers(
    sensitivity: Sequence[tuple[str, float]], max_layers: int = 3, min_loss: float = 0.002
) -> list[str]:
    """The ``max_layers`` most sensitive convs that each cost at least ``min_loss`` agreement."""
    return [n for n, loss in sensitivity[:max_layers] if loss >= min_loss]


def fused_scope(model: Any, conv_name: str) -> str:
    """The module path that names a conv's fused op: its Conv+BN(+act) block when it has one."""
    import torch.nn as nn

    parent_name = conv_name.rpartition(".")[0]
    if parent_name and _following_bn(model, conv_name) is not None:
        parent = model.get_submodule(parent_name)
        if sum(isinstance(m, nn.Conv2d) for m in parent.modules()) == 1:
            return parent_name
    return conv_name


def exporter_path(model: Any, name: str) -> list[str]:
    """Path components as the exporters' module stacks show them (ModuleList/Dict levels vanish:
    they are never called, so ``encoder.blocks.1.expand`` appears as ``encoder/1/expand``)."""
    import torch.nn as nn

    parts, chain = name.split("."), []
    for i, p in enumerate(parts):
        mod = model.get_submodule(".".join(parts[: i + 1]))
        if not isinstance(mod, (nn.ModuleList, nn.ModuleDict)):
            chain.append(p)
    return chain
