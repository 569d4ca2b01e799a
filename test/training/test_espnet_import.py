"""The ESPNet authors' released Cityscapes weights load into our ESPNet tensor for tensor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.models import count_parameters, create_model
from training.models import espnet_import as ei

pytestmark = pytest.mark.shared


def _released() -> dict:
    if not ei.DEFAULT_RELEASED_ESPNET.is_file():
        pytest.skip(f"released ESPNet weights not present at {ei.DEFAULT_RELEASED_ESPNET}")
    return ei.load_released(ei.DEFAULT_RELEASED_ESPNET)


def test_every_released_tensor_has_one_counterpart_of_the_same_shape() -> None:
    released = _released()
    assert len(released) == 189 and sum(t.numel() for t in released.values()) == 368_341
    model = create_model("espnet", 20, p=2, q=8)  # the released model's own classes
    own = model.state_dict()
    mapped = {ei.released_to_ours(k): v for k, v in released.items()}
    assert len(mapped) == len(released)  # no two released tensors on one of ours
    for key, tensor in mapped.items():
        assert key in own and own[key].shape == tensor.shape, key
    # ours has exactly the released tensors plus the batch-norm step counters
    assert set(own) - set(mapped) == {k for k in own if k.endswith("num_batches_tracked")}
    assert count_parameters(model) == sum(v.numel() for k, v in released.items() if "running" not in k)


def test_load_into_atwork_classes_takes_the_first_class_outputs() -> None:
    released = _released()
    model = create_model("espnet", 19, p=2, q=8, decoder_channels=20)
    loaded = ei.load_released_espnet(model)
    assert len(loaded) == 189
    assert torch.equal(model.classifier.weight, released["classifier.weight"][:, :19])
    assert torch.equal(model.encoder.level3[7].branches[4].weight, released["encoder.level3.7.d16.conv.weight"])


def test_load_refuses_a_model_of_another_shape() -> None:
    _released()
    with pytest.raises(ValueError, match="does not fit"):
        ei.load_released_espnet(create_model("espnet", 19, p=2, q=8))  # 19-channel decoder


@pytest.mark.slow
def test_folded_normalisation_computes_what_the_released_model_computes() -> None:
    """Our RGB [-1, 1] input through the folded weights == the authors' BGR (x - mean) / std / 255
    input through the raw weights, away from the border (where zero padding differs)."""
    released = _released()
    ours = create_model("espnet", 19, p=2, q=8, decoder_channels=20).eval()
    ei.load_released_espnet(ours)
    raw = create_model("espnet", 19, p=2, q=8, decoder_channels=20).eval()
    state = {ei.released_to_ours(k): v for k, v in released.items()}
    state["classifier.weight"] = state["classifier.weight"][:, :19]
    raw.load_state_dict(state, strict=False)
    rgb = np.random.default_rng(0).integers(0, 256, (1, 16, 32, 3)).astype(np.float32)
    rgb = np.repeat(np.repeat(rgb, 16, 1), 16, 2)  # 256 x 512, blocks like objects
    x_ours = torch.from_numpy(((rgb - 127.5) / 127.5).transpose(0, 3, 1, 2).copy())
    bgr = rgb[..., ::-1]
    x_theirs = (bgr - np.array(ei.RELEASED_MEAN_BGR)) / np.array(ei.RELEASED_STD_BGR) / 255.0
    x_theirs = torch.from_numpy(x_theirs.astype(np.float32).transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        a, b = ours(x_ours), raw(x_theirs)
    inner = (..., slice(64, -64), slice(64, -64))
    assert float((a - b)[inner].abs().mean()) < 0.01 * float(b.abs().mean())
    assert float((a.argmax(1) == b.argmax(1))[:, 64:-64, 64:-64].float().mean()) > 0.99
