"""Tests for training/models: shapes, registry, parameter counts, export, pruning, reference-model init."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from training.models import (  # noqa: E402  (after importorskip)
    DEFAULT_REFERENCE_TFLITE,
    MODEL_NAMES,
    NORM_MEAN,
    NORM_STD,
    calibrate_folded_batchnorm,
    count_macs,
    count_parameters,
    create_model,
    load_reference_weights,
)
from training.models.espnet import ESPModule  # noqa: E402

# Small variants of every model: (name, kwargs), quick enough for CPU tests.
SMALL: list[tuple[str, dict[str, Any]]] = [
    ("deeplabv3plus_mobilenetv2", {"width_mult": 0.25}),
    ("deeplabv3plus_mobilenetv2", {"width_mult": 0.5, "output_stride": 8, "aspp_rates": (), "separable": False}),
    ("fcn32s", {"width_mult": 0.0625}),
    ("fcn16s", {"width_mult": 0.0625}),
    ("fcn8s", {"width_mult": 0.0625, "batch_norm": False}),
    ("espnet_c", {"p": 1, "q": 2}),
    ("espnet", {"p": 1, "q": 2}),
]
IDS = [f"{n}-{i}" for i, (n, _) in enumerate(SMALL)]
NUM_CLASSES = 19


# One representative small config per family for the heavier checks (train step, export).
PER_FAMILY = [SMALL[0], SMALL[4], SMALL[6]]
PER_FAMILY_IDS = ["deeplab", "fcn8s", "espnet"]


def _small(name: str, kwargs: dict[str, Any]) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, NUM_CLASSES, **kwargs)


def test_registry_names_and_norm_constants() -> None:
    assert set(MODEL_NAMES) == {
        "deeplabv3plus_mobilenetv2",
        "fcn32s",
        "fcn16s",
        "fcn8s",
        "espnet_c",
        "espnet",
    }
    assert NORM_MEAN == (127.5, 127.5, 127.5) and NORM_STD == (127.5, 127.5, 127.5)


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError) as err:
        create_model("unet", 19)
    for name in MODEL_NAMES:
        assert name in str(err.value)


@pytest.mark.parametrize("name,kwargs", SMALL, ids=IDS)
@pytest.mark.parametrize("hw", [(64, 96), (65, 67)])
def test_output_shape(name: str, kwargs: dict[str, Any], hw: tuple[int, int]) -> None:
    model = _small(name, kwargs).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *hw))
    assert out.shape == (1, NUM_CLASSES, *hw)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name,kwargs", PER_FAMILY, ids=PER_FAMILY_IDS)
def test_train_step_batch2(name: str, kwargs: dict[str, Any]) -> None:
    model = _small(name, kwargs).train()
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, NUM_CLASSES, 64, 64)
    out.mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_batch1_train_mode_works() -> None:
    # The ASPP image-pooling branch has no BN, so batch 1 training does not crash.
    model = create_model("deeplabv3plus_mobilenetv2", 5, width_mult=0.25).train()
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5, 64, 64)


@pytest.mark.parametrize("name,kwargs", SMALL, ids=IDS)
def test_config_round_trip(name: str, kwargs: dict[str, Any]) -> None:
    model = _small(name, kwargs)
    cfg = model.config
    assert cfg["name"] == name and cfg["num_classes"] == NUM_CLASSES
    cfg = json.loads(json.dumps(cfg))  # must survive a JSON checkpoint/manifest
    rebuilt = create_model(**cfg)
    assert rebuilt.config == model.config
    a, b = model.state_dict(), rebuilt.state_dict()
    assert list(a) == list(b)
    assert all(a[k].shape == b[k].shape for k in a)
    rebuilt.load_state_dict(a)


@pytest.mark.parametrize("name,kwargs", SMALL, ids=IDS)
def test_classifier_layers(name: str, kwargs: dict[str, Any]) -> None:
    model = _small(name, kwargs)
    layers = model.classifier_layers()
    assert layers and all(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in layers)
    owned = {id(m) for m in model.modules()}
    assert all(id(m) in owned for m in layers)
    assert any(m.out_channels == NUM_CLASSES for m in layers)
    n_score = {"fcn32s": 1, "fcn16s": 2, "fcn8s": 3}.get(name)
    if n_score is not None:
        assert len(layers) == n_score


def test_mobilenetv2_half_width_matches_tf_layout() -> None:
    model = create_model("deeplabv3plus_mobilenetv2", 21)
    enc = model.encoder
    assert enc.stem.conv.out_channels == 16
    widths = [b.project.conv.out_channels for b in enc.blocks]
    assert widths == [8, 12, 12, 16, 16, 16, 32, 32, 32, 32, 48, 48, 48, 80, 80, 80, 160]
    assert enc.low_level_index == 2 and enc.low_level_channels == 12
    # OS16: only the last stride-2 block stops striding; later blocks dilate by 2.
    assert [b.depthwise.conv.stride[0] for b in enc.blocks].count(2) == 3
    assert [b.depthwise.conv.dilation[0] for b in enc.blocks][-3:] == [2, 2, 2]
    assert model.config["aspp_rates"] == [6, 12, 18]
    assert create_model("deeplabv3plus_mobilenetv2", 21, output_stride=8).config["aspp_rates"] == [12, 24, 36]


def test_parameter_counts() -> None:
    # FCN-8s at width 1 / 21 classes / no BN, built on the meta device (no 540 MB allocation).
    with torch.device("meta"):
        fcn8s = create_model("fcn8s", 21, batch_norm=False)
    n = count_parameters(fcn8s)
    vgg_convs = 14_714_688
    fc6 = 7 * 7 * 512 * 4096 + 4096
    fc7 = 4096 * 4096 + 4096
    scores = (4096 + 1) * 21 + (512 + 1) * 21 + (256 + 1) * 21
    assert n == vgg_convs + fc6 + fc7 + scores == 134_362_751
    # The paper's ~134.5M also holds its 3 bilinear deconvs (127k), replaced here by interpolation.
    assert abs(n - 134.5e6) / 134.5e6 < 0.005

    espnet = create_model("espnet", 20, p=2, q=8)
    assert abs(count_parameters(espnet) - 0.365e6) / 0.365e6 < 0.03

    dl = create_model("deeplabv3plus_mobilenetv2", 21, width_mult=1.0, aspp_channels=256)
    assert 2.0e6 < count_parameters(dl) < 3.0e6


def test_count_macs_and_trainable() -> None:
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=8))
    assert count_macs(conv, (10, 12)) == 8 * 10 * 12 * 3 * 9 + 8 * 10 * 12 * 1 * 9
    # ConvTranspose2d counts input elements x out_ch x k x k (each input pixel is scattered).
    deconv = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.ConvTranspose2d(4, 6, 2, stride=2))
    assert count_macs(deconv, (5, 5)) == 4 * 5 * 5 * 3 + 4 * 5 * 5 * 6 * 4
    model = create_model("espnet_c", 5, p=1, q=1)
    for p in model.level1.parameters():
        p.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) < count_parameters(model)
    assert model.training  # count_macs restores the mode
    count_macs(model, (32, 32))
    assert model.training


@pytest.mark.parametrize("name,kwargs", SMALL, ids=IDS)
def test_torch_export(name: str, kwargs: dict[str, Any]) -> None:
    model = _small(name, kwargs).eval()
    x = torch.randn(1, 3, 64, 96)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        ref = model(x)
        out = exported.module()(x)
    assert torch.allclose(out, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))


@pytest.mark.parametrize("name,kwargs", PER_FAMILY, ids=PER_FAMILY_IDS)
def test_onnx_export(name: str, kwargs: dict[str, Any], tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = _small(name, kwargs).eval()
    x = torch.randn(1, 3, 64, 96)
    path = tmp_path / "model.onnx"
    torch.onnx.export(model, (x,), str(path), opset_version=17, dynamo=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        ref = model(x).numpy()
    scale = float(abs(ref).max())
    assert out.shape == ref.shape
    assert float(abs(out - ref).max()) <= 1e-4 * scale + 1e-6


@pytest.mark.parametrize("name,kwargs", SMALL, ids=IDS)
def test_prunable_with_torch_pruning(name: str, kwargs: dict[str, Any]) -> None:
    """Half of the filters come off through the project's pruner (torch-pruning plus its guard against
    groups whose index mapping breaks: ESPNet concatenates the raw downsampled image before one batch
    norm, which torch-pruning cannot map) and the model still runs at any input size."""
    pytest.importorskip("torch_pruning")
    from training.prune import PruneSettings, build_pruner, pruning_step

    model = _small(name, kwargs).eval()
    x = torch.randn(1, 3, 64, 96)
    before = count_parameters(model)
    settings = PruneSettings(steps=1, filters_per_step=0.5, protect_class_width_layers=False)
    pruner = build_pruner(model, x, settings, NUM_CLASSES)
    pruning_step(pruner, model, x, NUM_CLASSES)
    after = count_parameters(model)
    assert after < 0.6 * before
    with torch.no_grad():
        out = model(x)
        out_odd = model(torch.randn(1, 3, 65, 67))
    assert out.shape == (1, NUM_CLASSES, 64, 96)
    assert out_odd.shape == (1, NUM_CLASSES, 65, 67)


def test_esp_pruning_keeps_hff_channels_aligned() -> None:
    """Pruning one channel of a fused branch removes exactly its 4 HFF copies, nothing else."""
    tp = pytest.importorskip("torch_pruning")
    torch.manual_seed(0)
    module = ESPModule(16, 23, residual=False).eval()  # n=4, first branch n1=7
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(1, 16, 20, 20)
    with torch.no_grad():
        ref = module(x)
    graph = tp.DependencyGraph().build_dependency(module, example_inputs=x)
    graph.get_pruning_group(module.branches[1], tp.prune_conv_out_channels, idxs=[1]).prune()
    keep = [c for c in range(23) if c not in (8, 12, 16, 20)]
    with torch.no_grad():
        out = module(x)
    assert torch.allclose(out, ref[:, keep], atol=1e-5)


# ----------------------------------------------------------------------------- reference-model init


def _reference_path() -> Path:
    if not DEFAULT_REFERENCE_TFLITE.is_file():
        pytest.skip(f"reference model not present at {DEFAULT_REFERENCE_TFLITE}")
    pytest.importorskip("ai_edge_litert")
    return DEFAULT_REFERENCE_TFLITE


def test_reference_init_matches_tflite_activations() -> None:
    np = pytest.importorskip("numpy")
    path = _reference_path()
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    x = np.random.default_rng(0).uniform(-1.0, 1.0, size=(1, 257, 257, 3)).astype(np.float32)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    index = {d["name"]: d["index"] for d in interpreter.get_tensor_details()}

    # Same layout as the reference model: width 0.5, output stride 8, 1x1-only ASPP with 256 channels.
    model = create_model("deeplabv3plus_mobilenetv2", 21, output_stride=8, aspp_rates=(), aspp_channels=256).eval()
    loaded = load_reference_weights(model, path, include_aspp=True)
    assert len(loaded) == 1 + 16 * 3 + 2 + 3  # convolutions: stem, 17 blocks (first has no expand), aspp

    acts: dict[str, Any] = {}
    with torch.no_grad():
        h = model.encoder.stem(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
        for i, block in enumerate(model.encoder.blocks):
            h = block(h)
            acts[i] = h
        aspp = model.aspp
        acts["aspp"] = aspp.project(torch.cat([aspp.pool(h), aspp.conv1x1(h)], 1))
    checks = {
        # before any dilation (stride 8 reached here)
        "MobilenetV2/expanded_conv_3/project/BatchNorm/FusedBatchNorm": acts[3],
        # dilated blocks (rate 2, then rate 4)
        "MobilenetV2/expanded_conv_12/add": acts[12],
        "MobilenetV2/expanded_conv_16/project/BatchNorm/FusedBatchNorm": acts[16],
        "concat_projection/Relu": acts["aspp"],
    }
    for name, ours in checks.items():
        ref = interpreter.get_tensor(index[name])
        diff = float(np.abs(ours.numpy().transpose(0, 2, 3, 1) - ref).max())
        assert diff < 1e-3, (name, diff)


def test_reference_1_0_quant_import_matches_tflite_activations() -> None:
    """The uint8 VOC MobileNetV2 1.0 model: dequantised weights reproduce its own (quantised)
    activations up to its quantisation noise, at the stem of the encoder, deep in the dilated
    blocks and after the ASPP."""
    np = pytest.importorskip("numpy")
    pytest.importorskip("ai_edge_litert")
    from ai_edge_litert.interpreter import Interpreter

    from training.models import REFERENCE_TFLITE_MNV2_1_0 as path
    from training.models import load_reference_weights

    if not path.is_file():
        pytest.skip(f"reference model not present at {path}")
    interpreter = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    xq = np.random.default_rng(0).integers(0, 256, size=(1, 513, 513, 3)).astype(np.uint8)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], xq)
    interpreter.invoke()
    x = (xq.astype(np.float32) - 128.0) / 128.0  # the file's input quantisation: [-1, 1]

    model = create_model(
        "deeplabv3plus_mobilenetv2", 21, width_mult=1.0, output_stride=16, aspp_rates=(), aspp_channels=256
    ).eval()
    loaded = load_reference_weights(model, path, include_aspp=True)
    assert len(loaded) == 1 + 16 * 3 + 2 + 3  # stem, 17 blocks (first has no expand), aspp
    acts: dict[str, Any] = {}
    with torch.no_grad():
        h = model.encoder.stem(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
        for i, block in enumerate(model.encoder.blocks):
            h = block(h)
            acts[f"block{i}"] = h
        aspp = model.aspp
        acts["aspp"] = aspp.project(torch.cat([aspp.pool(h), aspp.conv1x1(h)], 1))
    wanted = {
        "MobilenetV2/expanded_conv_3/project/add_fold": "block3",
        "MobilenetV2/expanded_conv_12/add": "block12",  # dilated (output stride 16 reached)
        "MobilenetV2/expanded_conv_16/project/add_fold": "block16",
        "concat_projection/Relu": "aspp",
    }
    checked = set()
    for d in interpreter.get_tensor_details():
        key = wanted.get(d["name"].split(";")[0])
        if key is None or len(d["shape"]) != 4:
            continue
        q = d["quantization_parameters"]
        ref = (interpreter.get_tensor(d["index"]).astype(np.float32) - q["zero_points"][0]) * q["scales"][0]
        ours = acts[key].numpy().transpose(0, 2, 3, 1)
        assert ours.shape == ref.shape, key
        mean_err_steps = float(np.abs(ours - ref).mean()) / float(q["scales"][0])
        corr = float(np.corrcoef(ours.ravel(), ref.ravel())[0, 1])
        assert mean_err_steps < 2.0 and corr > 0.98, (key, mean_err_steps, corr)
        checked.add(key)
    assert checked == set(wanted.values())


def test_reference_init_rejects_wrong_width() -> None:
    path = _reference_path()
    with pytest.raises(ValueError):
        load_reference_weights(create_model("deeplabv3plus_mobilenetv2", 21, width_mult=1.0), path)
    with pytest.raises(ValueError):
        load_reference_weights(create_model("deeplabv3plus_mobilenetv2", 21), path, include_aspp=True)


def test_reference_bn_is_identity_in_eval() -> None:
    path = _reference_path()
    model = create_model("deeplabv3plus_mobilenetv2", 21).eval()
    load_reference_weights(model, path)
    bn = model.encoder.blocks[5].project.bn
    y = torch.randn(1, bn.num_features, 4, 4)
    with torch.no_grad():
        assert torch.equal(bn(y), y + bn.bias.view(1, -1, 1, 1))


def test_reference_bn_calibration_keeps_eval_and_fixes_train_mode() -> None:
    path = _reference_path()
    model = create_model("deeplabv3plus_mobilenetv2", 21).eval()
    load_reference_weights(model, path)
    torch.manual_seed(0)
    batch = torch.rand(2, 3, 64, 64) * 2.0 - 1.0
    with torch.no_grad():
        _, before = model.encoder(batch)
    assert calibrate_folded_batchnorm(model, [batch]) == 1 + 16 * 3 + 2
    assert calibrate_folded_batchnorm(model, [batch]) == 0  # no identity BN left
    with torch.no_grad():
        _, after_eval = model.encoder(batch)
        model.train()
        _, after_train = model.encoder(batch)  # batch statistics == calibration statistics
    scale = float(before.abs().max())
    assert float((after_eval - before).abs().max()) < 1e-4 * scale
    assert float((after_train - before).abs().max()) < 1e-3 * scale
