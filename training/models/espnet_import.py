"""Initialise our ESPNet from the ESPNet authors' released weights (``../shared/peers/espnet/*.pth``).

The released files are plain state dicts of the authors' modules: ``decoder_espnet_p_2_q_8.pth`` the
whole ESPNet (p=2, q=8, Cityscapes, 20 classes: 189 tensors, 368,341 numbers),
``encoder_espnet_p_2_q_8.pth`` ESPNet-C alone. :func:`released_to_ours` names, for every released
tensor, the tensor of :class:`training.models.espnet.ESPNet` that holds the same function; shapes
are equal except the last transposed convolution, whose class outputs are cut to our classes (the
decoder keeps its 20 channels: ``decoder_channels=20``).

Input: the authors feed BGR images as ``(pixel - mean) / std / 255`` with Cityscapes statistics;
our models read RGB in [-1, 1]. :func:`fold_input_normalisation` rewrites the first convolution
and the batch norms of the image channels that input reinforcement concatenates, so the imported
network computes on our input what the released one computed on theirs (exactly, away from the
zero padding at the image border).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

LOGGER = logging.getLogger(__name__)

RELEASED_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "peers" / "espnet"
DEFAULT_RELEASED_ESPNET = RELEASED_DIR / "decoder_espnet_p_2_q_8.pth"

#: The authors' input statistics (BGR order, pixels 0..255), then a division by 255.
RELEASED_MEAN_BGR = (72.3923111, 82.90893555, 73.15840149)
RELEASED_STD_BGR = (45.3192215, 46.15289307, 44.91483307)

_BRANCH = {"1": 0, "2": 1, "4": 2, "8": 3, "16": 4}

# (released pattern, our replacement), applied in order to the name without the "encoder." prefix
_ENCODER_RULES: tuple[tuple[str, str], ...] = (
    (r"^(level[23]_0|level[23]\.\d+)\.c1\.conv\.weight$", r"\1.reduce.weight"),
    (r"^(level[23]_0)\.(bn|act)\.", r"\1.post.\2."),  # strided ESP module: its own BN and PReLU
    (r"^(level[23]\.\d+)\.bn\.(bn|act)\.", r"\1.post.\2."),  # ESP module: a 'BR' named bn
    (r"^classifier\.conv\.weight$", "classifier.weight"),
)
_DECODER_RULES: tuple[tuple[str, str], ...] = (
    (r"^level3_C\.conv\.weight$", "level2_classifier.weight"),
    (r"^br\.", "scores_bn."),
    (r"^conv\.(conv|bn|act)\.", r"fuse_l1.\1."),
    (r"^up_l3\.0\.weight$", "up_l3.weight"),
    (r"^combine_l2_l3\.0\.(bn|act)\.", r"combine_bn.\1."),
    (r"^combine_l2_l3\.1\.c1\.conv\.weight$", "combine.reduce.weight"),
    (r"^combine_l2_l3\.1\.bn\.(bn|act)\.", r"combine.post.\1."),
    (r"^up_l2\.0\.weight$", "up_l2.weight"),
    (r"^up_l2\.1\.(bn|act)\.", r"up_l2_bn.\1."),
    (r"^classifier\.weight$", "classifier.weight"),
)


def _branch(name: str) -> str:
    return re.sub(r"\.d(1|2|4|8|16)\.conv\.weight$", lambda m: f".branches.{_BRANCH[m.group(1)]}.weight", name)


def released_to_ours(name: str) -> str:
    """Our state-dict key for a released key (of the whole ESPNet, or of ESPNet-C with ``encoder.``
    prepended). Raises KeyError for a name no rule knows."""
    if name.startswith("encoder."):
        rest = _branch(name[len("encoder.") :])
        for pattern, repl in _ENCODER_RULES:
            rest = re.sub(pattern, repl, rest)
        return "encoder." + rest
    out = _branch(name)
    for pattern, repl in _DECODER_RULES:
        if re.search(pattern, out):
            return re.sub(pattern, repl, out)
    if out.startswith("combine_l2_l3.1.branches."):
        return out.replace("combine_l2_l3.1.", "combine.")
    raise KeyError(f"no rule maps released tensor {name!r}")


def load_released(path: Path | str = DEFAULT_RELEASED_ESPNET) -> dict[str, torch.Tensor]:
    """The released state dict (``weights_only``: the file is data, never code), keys of the whole
    ESPNet (an ESPNet-C file gets ``encoder.`` prepended)."""
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: not a state dict of tensors")
    state = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}
    if not any(k.startswith("encoder.") for k in state):
        state = {f"encoder.{k}": v for k, v in state.items()}
    return dict(state)


def fold_input_normalisation(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Released tensors rewritten for RGB input in [-1, 1] (see the module docstring).

    Their input channel ``c`` (BGR) is ``x_c = a_c * ours_(2-c) + b_c`` with ``a_c = 0.5 / std_c``
    and ``b_c = (127.5 - mean_c) / (255 std_c)``. The first convolution takes ``a`` into its
    weights (channels reversed) and the constant into its batch norm's running mean; the batch
    norms over the concatenated downsampled image channels get ``mean' = (mean - b) / a`` and
    ``var' = (var + eps) / a^2 - eps`` (eps = 1e-3, the authors'), and those channels, now RGB, are
    reversed in the batch norms and in the convolutions that read them.
    """
    eps = 1e-3
    std = torch.tensor(RELEASED_STD_BGR, dtype=torch.float64)
    a = 0.5 / std
    b = (127.5 - torch.tensor(RELEASED_MEAN_BGR, dtype=torch.float64)) / (255.0 * std)
    out = dict(state)
    w = state["encoder.level1.conv.weight"].double()  # (16, 3 BGR, 3, 3)
    out["encoder.level1.conv.weight"] = (w * a.view(1, 3, 1, 1)).flip(1).float()
    constant = (w * b.view(1, 3, 1, 1)).sum((1, 2, 3))
    out["encoder.level1.bn.running_mean"] = (state["encoder.level1.bn.running_mean"].double() - constant).float()
    for bn, first in (("encoder.b1.bn", 16), ("encoder.b2.bn", 128)):
        idx = slice(first, first + 3)
        mean = state[f"{bn}.running_mean"].double().clone()
        var = state[f"{bn}.running_var"].double().clone()
        new_mean = ((mean[idx] - b) / a).flip(0)
        new_var = ((var[idx] + eps) / a**2 - eps).flip(0)
        mean[idx], var[idx] = new_mean, new_var
        out[f"{bn}.running_mean"], out[f"{bn}.running_var"] = mean.float(), var.float()
        for key in (f"{bn}.weight", f"{bn}.bias", bn.replace(".bn", ".act") + ".weight"):
            t = state[key].clone()
            t[idx] = state[key][idx].flip(0)
            out[key] = t
    # the convolutions that read those concatenations read the image channels in RGB order now
    for key, first in (
        ("encoder.level2_0.c1.conv.weight", 16),
        ("encoder.level3_0.c1.conv.weight", 128),
        ("level3_C.conv.weight", 128),
    ):
        if key in state:
            t = state[key].clone()
            t[:, first : first + 3] = state[key][:, first : first + 3].flip(1)
            out[key] = t
    return out


def load_released_espnet(model: nn.Module, path: Path | str = DEFAULT_RELEASED_ESPNET) -> list[str]:
    """Copy every released tensor into ``model`` (an ESPNet with ``decoder_channels`` equal to the
    file's classes, or an ESPNet-C for an encoder file); returns our keys that were loaded.

    Every released tensor must find its tensor of the same shape (the last transposed convolution
    may have fewer class outputs: the first ones are taken); a missing or mis-shaped one raises
    ValueError naming it. Batch-norm step counters (absent from the released files) stay as they are.
    """
    released = fold_input_normalisation(load_released(path))
    own = model.state_dict()
    prefix = "" if any(k.startswith("encoder.") for k in own) else None
    new_state: dict[str, torch.Tensor] = {}
    for name, tensor in released.items():
        key = released_to_ours(name)
        if prefix is None:  # an ESPNet-C model takes only the encoder part
            if not key.startswith("encoder."):
                continue
            key = key[len("encoder.") :]
        if key not in own:
            raise ValueError(f"{path}: released tensor {name!r} has no counterpart {key!r} in the model")
        target = own[key]
        if key == "classifier.weight" and tensor.dim() == 4 and tensor.shape[1] >= target.shape[1]:
            tensor = tensor[:, : target.shape[1]]  # transposed conv: (in, out classes, kh, kw)
        elif (
            key.endswith("classifier.weight")
            and tensor.shape[0] > target.shape[0]
            and tensor.shape[1:] == target.shape[1:]
        ):
            tensor = tensor[: target.shape[0]]  # ESPNet-C's 1x1 classifier: first classes
        if tuple(tensor.shape) != tuple(target.shape):
            raise ValueError(f"{path}: {name!r} {tuple(tensor.shape)} does not fit {key!r} {tuple(target.shape)}")
        if key in new_state:
            raise ValueError(f"{path}: two released tensors map to {key!r}")
        new_state[key] = tensor.to(target.dtype)
    missing = sorted(k for k in own if k not in new_state and not k.endswith("num_batches_tracked"))
    if missing:
        raise ValueError(f"{path}: the model has tensors the file lacks: {missing[:6]}")
    model.load_state_dict(new_state, strict=False)
    LOGGER.info(
        "loaded %d released ESPNet tensors (%d numbers) from %s",
        len(new_state),
        sum(int(np.prod(t.shape)) for t in new_state.values()),
        path,
    )
    return sorted(new_state)
