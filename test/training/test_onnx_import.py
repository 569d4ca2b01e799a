"""Rebuilding a float model from an exported ONNX file (training.models.onnx_import)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from training.checkpoint import apply_width_spec, load_pruned, save_pruned, width_spec
from training.export.checks import torch_logits
from training.export.formats import NHWCExportWrapper, export_onnx_fp32
from training.export.images import synthetic_scenes
from training.models import create_model
from training.models.onnx_import import (
    calibrate_batch_norms,
    import_onnx,
    load_onnx_weights,
    match_convs,
    parity,
    read_onnx_convs,
    trace_torch_convs,
)
from training.quantize.onnx_int8 import onnx_static_int8

H, W = 32, 40
NUM_CLASSES = 3
CONFIG = {"name": "fcn8s", "num_classes": NUM_CLASSES, "width_mult": 0.0625, "dropout": 0.0}
SHIPPED_FCN = Path(__file__).resolve().parents[2] / "models" / "fcn8s_w0125_pruned_onnx_int8.onnx"


def _pruned_fcn() -> nn.Module:
    """A tiny FCN8s with stage 2 pruned to 6 filters, random weights and batch-norm statistics."""
    torch.manual_seed(0)
    config = dict(CONFIG)
    model = create_model(config.pop("name"), config.pop("num_classes"), **config)
    spec = width_spec(model)
    spec["stage2.0"]["out_channels"] = spec["stage2.1"]["num_features"] = spec["stage2.3"]["in_channels"] = 6
    apply_width_spec(model, spec)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
            if isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.uniform_(-0.3, 0.3)
                nn.init.normal_(m.weight, std=0.3)  # the skip scorers start at zero
    return model.eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx_import")
    model = _pruned_fcn()
    wrapper = NHWCExportWrapper(model)
    fp32 = out / "tiny_fp32.onnx"
    export_onnx_fp32(wrapper, torch.zeros(1, H, W, 3), fp32)
    images, _ = synthetic_scenes(16, H, W, NUM_CLASSES, seed=3)
    int8 = out / "tiny_int8.onnx"
    onnx_static_int8(fp32, int8, [img[None].astype(np.float32) for img in images])
    return model, fp32, int8, images


def test_an_fp32_file_gives_back_the_model_it_was_exported_from(files) -> None:
    model, fp32, _, images = files
    imported, report = import_onnx(fp32, CONFIG, images)
    assert report["convs"] == 18 and report["calibration_images"] == 16
    assert width_spec(imported) == width_spec(model)  # the pruned widths come from the file
    want = torch_logits(NHWCExportWrapper(model), images)
    got = torch_logits(NHWCExportWrapper(imported), images)
    assert np.abs(got - want).max() < 1e-4 * max(1.0, np.abs(want).max())
    assert report["parity"]["argmax_agreement"] == 1.0
    # measuring parity (a train-mode pass among others) leaves the model as it was
    parity(imported, fp32, images)
    assert np.array_equal(torch_logits(NHWCExportWrapper(imported), images), got)


def test_an_int8_file_gives_a_float_model_that_follows_it(files) -> None:
    model, _, int8, images = files
    imported, report = import_onnx(int8, CONFIG, images)
    assert width_spec(imported) == width_spec(model)
    assert report["parity"]["argmax_agreement"] > 0.95
    # int8 weights are the float ones to within a step of their per-channel scale
    w0 = model.get_submodule("score_fr").weight
    w1 = imported.get_submodule("score_fr").weight
    assert torch.allclose(w0, w1, atol=float(w0.abs().max()) / 60)


def test_batch_norm_statistics_keep_eval_mode_and_bring_train_mode_to_it(files) -> None:
    """Calibrated on one batch, train mode (that batch's own statistics) computes what eval mode does."""
    _, fp32, _, images = files
    config = dict(CONFIG)
    model = create_model(config.pop("name"), config.pop("num_classes"), **config)
    model, convs = load_onnx_weights(model, fp32, torch.zeros(1, 3, H, W))
    x = (torch.from_numpy(images).float().permute(0, 3, 1, 2) - 127.5) / 127.5
    with torch.no_grad():
        before_eval = model.eval()(x)
        before_train = copy.deepcopy(model).train()(x)  # a copy: train mode moves the running statistics
        calibrate_batch_norms(model, convs, [x])
        after_eval = model.eval()(x)
        after_train = copy.deepcopy(model).train()(x)
    assert torch.allclose(after_eval, before_eval, atol=1e-4)
    assert (before_train - before_eval).abs().max() > 0.1  # placeholders: batch statistics change the output
    assert torch.allclose(after_train, after_eval, atol=1e-3)
    # the statistics are the conv outputs' own: the first conv's per-channel mean over the batch
    conv1 = model.get_submodule("stage1.0")
    with torch.no_grad():
        mean = conv1(x).mean(dim=(0, 2, 3))
    assert torch.allclose(model.get_submodule("stage1.1").running_mean, mean, atol=1e-5)


def test_convs_are_matched_by_what_feeds_them_not_by_order(files) -> None:
    """The int8 graph lists the skip scorers before the convs they follow in the model."""
    _, _, int8, _ = files
    config = dict(CONFIG)
    model = create_model(config.pop("name"), config.pop("num_classes"), **config)
    torch_convs = trace_torch_convs(model, torch.zeros(1, 3, H, W))
    onnx_convs = read_onnx_convs(int8)
    pairs = match_convs(model, torch_convs, onnx_convs)
    order = list(onnx_convs)
    assert order.index(pairs["score_pool3"]) < order.index(pairs["stage5.0"])
    assert onnx_convs[pairs["score_pool3"]].producer == pairs["stage3.6"]
    assert onnx_convs[pairs["fc.4"]].weight.shape[2:] == (1, 1) and onnx_convs[pairs["fc.0"]].weight.shape[2:] == (7, 7)


def test_a_file_of_another_architecture_is_refused(files) -> None:
    _, fp32, _, images = files
    with pytest.raises(ValueError, match="the model has 1 convs, the file 2"):  # 16s: no pool3 scorer
        import_onnx(fp32, {**CONFIG, "name": "fcn16s"}, images)


def test_a_parameter_layer_between_convs_is_refused(files) -> None:
    _, fp32, _, _ = files
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.PReLU(4), nn.Conv2d(4, 3, 1))
    with pytest.raises(ValueError, match=r"1 \(PReLU\) lies between two convs"):
        load_onnx_weights(model, fp32, torch.zeros(1, 3, H, W))


def test_the_imported_model_saves_and_loads_as_a_pruned_checkpoint(files, tmp_path) -> None:
    model, fp32, _, images = files
    imported, _ = import_onnx(fp32, CONFIG, images)
    path = save_pruned(imported, tmp_path / "start.pt")
    again = load_pruned(path)
    assert width_spec(again) == width_spec(model)
    assert np.array_equal(
        torch_logits(NHWCExportWrapper(again), images), torch_logits(NHWCExportWrapper(imported), images)
    )


def test_the_shipped_fcn8s_file_imports_and_follows_its_int8_graph() -> None:
    """No dataset needed: the shipped file's own record gives the architecture; blob scenes calibrate."""
    import yaml

    record = yaml.safe_load(SHIPPED_FCN.with_name(SHIPPED_FCN.name + ".config.yaml").read_text())
    images, _ = synthetic_scenes(8, 256, 320, 19, seed=0)
    imported, report = import_onnx(SHIPPED_FCN, record["model_config"], images)
    assert report["convs"] == 18
    assert sum(p.numel() for p in imported.parameters()) == record["num_params"]
    assert report["parity"]["argmax_agreement"] > 0.98
