"""Initialise DeepLabV3+ MobileNetV2 from the official TFLite DeepLab v3 models (the reference models).

Two kinds of file are read, both with batch norm folded into the convolutions:

* float, e.g. ``deeplabv3_257_mv_gpu.tflite`` (VOC, MobileNetV2 0.5): tensors named
  ``<scope>/weights``, ``<scope>/Conv2D_bias``, ``<scope>/depthwise_weights``, ``<scope>/depthwise_bias``;
* quantization-aware trained uint8, e.g. ``deeplabv3_mnv2_pascal_quant.tflite`` (VOC, MobileNetV2
  1.0): weights are uint8 tensors whose name holds ``<scope>/weights_quant/...`` (dequantised as
  ``(q - zero_point) * scale``), biases int32 tensors named ``.../<scope>/BatchNorm_Fold/bias``
  (dequantised as ``q * scale``; their scale is input scale x weight scale).

Both use our input normalisation ([-1, 1]), so the weights are used as they are. Each folded bias goes
into the following BatchNorm, made an exact identity in eval mode; :func:`calibrate_folded_batchnorm`
then makes it (nearly) an identity in training mode too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from .deeplab import DeepLabV3PlusMobileNetV2
from .layers import ConvBNAct

LOGGER = logging.getLogger(__name__)

_REFERENCE_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "peers"
#: Documented default locations (``<repo>/../shared/peers/``): the float VOC MobileNetV2 0.5 model and
#: the quantised VOC MobileNetV2 1.0 model.
DEFAULT_REFERENCE_TFLITE = _REFERENCE_DIR / "deeplabv3_257_mv_gpu.tflite"
REFERENCE_TFLITE_MNV2_1_0 = _REFERENCE_DIR / "deeplabv3_mnv2_pascal_quant.tflite"

Folded = tuple[np.ndarray, np.ndarray]  # (weight as stored by TFLite, bias), float32


def _scope_of(name: str, marker: str) -> str:
    """The scope before ``marker`` in the ';'-joined name part that holds it."""
    part = next(p for p in name.split(";") if marker in p)
    return part[: part.index(marker)]


def read_folded_convolutions(tflite_path: Path | str) -> dict[str, Folded]:
    """``{scope: (weight, bias)}`` for every BN-folded convolution of a float or uint8 reference model.

    ``scope`` is the TF-slim name, e.g. ``MobilenetV2/expanded_conv_3/depthwise`` or ``aspp0``; weights
    keep the TFLite layout (OHWI, depthwise 1HWC), quantised tensors are dequantised to float32.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_path))
    interpreter.allocate_tensors()
    weights: dict[str, np.ndarray] = {}
    biases: dict[str, np.ndarray] = {}
    for d in interpreter.get_tensor_details():
        name, shape = d["name"], tuple(d["shape"])
        try:
            value = np.array(interpreter.get_tensor(d["index"]))
        except ValueError:  # activations of a quantised model hold no data before invoke
            continue
        q = d["quantization_parameters"]
        if value.dtype in (np.uint8, np.int8) and len(shape) == 4 and "weights_quant" in name:
            scale, zero = float(q["scales"][0]), int(q["zero_points"][0])
            weights[_scope_of(name, "/weights_quant")] = (value.astype(np.float32) - zero) * scale
        elif value.dtype == np.int32 and len(shape) == 1 and "BatchNorm_Fold/bias" in name:
            biases[_scope_of(name.split(";")[-1], "/BatchNorm_Fold/bias")] = value.astype(np.float32) * float(
                q["scales"][0]
            )
        elif value.dtype == np.float32 and name.endswith(("/weights", "/depthwise_weights")):
            weights[name.rsplit("/", 1)[0] + ("/depthwise" if name.endswith("depthwise_weights") else "")] = value
        elif value.dtype == np.float32 and name.endswith(("/Conv2D_bias", "/depthwise_bias")):
            biases[name.rsplit("/", 1)[0] + ("/depthwise" if name.endswith("depthwise_bias") else "")] = value
    # float depthwise weights are stored under "<block>/depthwise/depthwise_weights": drop the doubled part
    weights = {k.replace("/depthwise/depthwise", "/depthwise"): v for k, v in weights.items()}
    biases = {k.replace("/depthwise/depthwise", "/depthwise"): v for k, v in biases.items()}
    return {k: (weights[k], biases[k]) for k in weights if k in biases}


def _fold_into(cba: ConvBNAct, weight: np.ndarray, bias: np.ndarray) -> None:
    """Load a BN-folded conv: weight into the conv, bias into an identity BatchNorm."""
    conv, bn = cba.conv, cba.bn
    w = torch.from_numpy(np.ascontiguousarray(weight)).to(conv.weight.dtype)
    if tuple(w.shape) != tuple(conv.weight.shape):
        raise ValueError(f"reference weight shape {tuple(w.shape)} != model {tuple(conv.weight.shape)}")
    with torch.no_grad():
        conv.weight.copy_(w)
        bn.weight.fill_(1.0)
        bn.bias.copy_(torch.from_numpy(bias.astype(np.float32)))
        bn.running_mean.zero_()
        # (x - 0) / sqrt((1 - eps) + eps) == x exactly in eval mode.
        bn.running_var.fill_(1.0 - bn.eps)


def _ohwi_to_oihw(w: np.ndarray) -> np.ndarray:
    return w.transpose(0, 3, 1, 2)


def _depthwise_to_oihw(w: np.ndarray) -> np.ndarray:
    # TFLite depthwise weights are [1, H, W, C] -> PyTorch [C, 1, H, W].
    return w.transpose(3, 0, 1, 2)


def aspp_matches_reference(model: DeepLabV3PlusMobileNetV2) -> bool:
    """True when the model's ASPP has the reference models' layout (1x1 branch + pooling, 256 ch)."""
    return len(model.aspp.atrous) == 0 and model.aspp.conv1x1.conv.out_channels == 256


def load_reference_weights(
    model: DeepLabV3PlusMobileNetV2,
    tflite_path: Path | str = DEFAULT_REFERENCE_TFLITE,
    include_aspp: bool = False,
) -> list[str]:
    """Initialise the encoder (and optionally the ASPP) from a TFLite DeepLab v3 reference model.

    ``include_aspp`` also loads ``aspp0`` / ``image_pooling`` / ``concat_projection``; that needs
    ``aspp_rates=()`` and ``aspp_channels=256``. Returns the scopes that were loaded; raises ValueError
    when the model's shapes do not match the file (e.g. width 1.0 against the 0.5 model).
    """
    convs = read_folded_convolutions(tflite_path)
    loaded: list[str] = []

    def take(scope: str) -> Folded:
        if scope not in convs:
            raise ValueError(f"{tflite_path}: no folded convolution {scope!r}")
        loaded.append(scope)
        return convs[scope]

    enc = model.encoder
    w, b = take("MobilenetV2/Conv")
    _fold_into(enc.stem, _ohwi_to_oihw(w), b)
    for i, block in enumerate(enc.blocks):
        scope = "MobilenetV2/expanded_conv" + ("" if i == 0 else f"_{i}")
        if block.expand is not None:
            w, b = take(f"{scope}/expand")
            _fold_into(block.expand, _ohwi_to_oihw(w), b)
        w, b = take(f"{scope}/depthwise")
        _fold_into(block.depthwise, _depthwise_to_oihw(w), b)
        w, b = take(f"{scope}/project")
        _fold_into(block.project, _ohwi_to_oihw(w), b)

    if include_aspp:
        aspp = model.aspp
        if not aspp_matches_reference(model):
            raise ValueError("include_aspp needs aspp_rates=() and aspp_channels=256 (the reference ASPP)")
        w, b = take("image_pooling")
        w_t = torch.from_numpy(np.ascontiguousarray(_ohwi_to_oihw(w)))
        if tuple(w_t.shape) != tuple(aspp.pool.conv.weight.shape):
            raise ValueError(f"image_pooling shape {tuple(w_t.shape)} != model {tuple(aspp.pool.conv.weight.shape)}")
        with torch.no_grad():
            aspp.pool.conv.weight.copy_(w_t)
            aspp.pool.conv.bias.copy_(torch.from_numpy(b))
        w, b = take("aspp0")
        _fold_into(aspp.conv1x1, _ohwi_to_oihw(w), b)
        w, b = take("concat_projection")
        _fold_into(aspp.project, _ohwi_to_oihw(w), b)
    LOGGER.info("loaded %d folded convolutions from %s", len(loaded), tflite_path)
    return loaded


def _is_folded_identity_bn(bn: nn.BatchNorm2d) -> bool:
    return bool(
        torch.all(bn.weight == 1.0) and torch.all(bn.running_mean == 0.0) and torch.all(bn.running_var == 1.0 - bn.eps)
    )


def calibrate_folded_batchnorm(model: nn.Module, batches: Iterable[Tensor]) -> int:
    """Make reference-loaded identity BatchNorms also (nearly) identity in *training* mode.

    After :func:`load_reference_weights` each folded BN is an exact identity only with its running
    statistics (eval mode). In training mode BN normalises by batch statistics, which would rescale
    every reference activation to unit variance at the first step. This measures each such BN's input
    mean and variance on ``batches`` (normalised NCHW images) in eval mode and sets
    ``running_mean = mean``, ``running_var = var``, ``weight = sqrt(var + eps)``,
    ``bias = mean + folded_bias``: eval mode stays exactly the reference, and training mode matches it
    as far as batch statistics match the calibration ones. Returns the number of BNs changed.
    """
    targets = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and _is_folded_identity_bn(m)]
    if not targets:
        return 0
    sums: dict[int, list[Any]] = {id(bn): [0.0, 0.0, 0] for bn in targets}

    def hook(bn: nn.BatchNorm2d, inputs: tuple[Tensor, ...]) -> None:
        x = inputs[0].detach().double()
        acc = sums[id(bn)]
        acc[0] = acc[0] + x.sum((0, 2, 3))
        acc[1] = acc[1] + (x * x).sum((0, 2, 3))
        acc[2] += x.numel() // x.shape[1]

    handles = [bn.register_forward_pre_hook(hook) for bn in targets]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            for batch in batches:
                model(batch)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    done = 0
    with torch.no_grad():
        for bn in targets:
            total, total_sq, count = sums[id(bn)]
            if count == 0:
                continue
            mean = total / count
            var = (total_sq / count - mean * mean).clamp_min(0.0)
            bn.running_mean.copy_(mean.to(bn.running_mean.dtype))
            bn.running_var.copy_(var.to(bn.running_var.dtype))
            bn.weight.copy_(torch.sqrt(var + bn.eps).to(bn.weight.dtype))
            bn.bias.add_(mean.to(bn.bias.dtype))
            done += 1
    LOGGER.info("calibrated %d folded BatchNorm layers", done)
    return done
