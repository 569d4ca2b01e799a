import json

import numpy as np
import pytest

from colour_model import make_colour_model, render_scene
from seg_perception.backends import BACKENDS, BackendError, create_backend
from seg_perception.config import ConfigError, NodeConfig
from seg_perception.launch_args import node_settings
from seg_perception.manifest import Manifest, ManifestError
from seg_perception.pipeline import Segmenter, make_segmenter
from seg_perception.classes import load_classes


def test_config_defaults_validate():
    cfg = NodeConfig().validate()
    assert cfg.backend == "tflite_int8" and cfg.transport == "raw"


@pytest.mark.parametrize("values, words", [
    ({"backend": "nope"}, ["backend", "tflite_int8", "onnx_fcn8s_pruned", "espnet"]),
    ({"transport": "udp"}, ["raw", "compressed"]),
    ({"qos_reliability": "x"}, ["best_effort", "reliable"]),
    ({"class_variant": "x"}, ["full", "binary"]),
    ({"num_threads": 0}, ["num_threads"]),
    ({"overlay_alpha": 2.0}, ["overlay_alpha"]),
    ({"num_threads": "two"}, ["num_threads", "int"]),
    ({"num_threads": 2.5}, ["num_threads", "int"]),
    ({"bogus": 1}, ["bogus", "backend"]),
])
def test_config_errors_name_the_valid_options(values, words):
    with pytest.raises(ConfigError) as e:
        NodeConfig.from_dict(values)
    for w in words:
        assert w in str(e.value)


def test_config_replace_and_backend_key():
    cfg = NodeConfig()
    assert cfg.replace(min_object_area=5).backend_key() == cfg.backend_key()
    assert cfg.replace(backend="espnet").backend_key() != cfg.backend_key()
    assert cfg.replace(overlay_alpha=1).overlay_alpha == 1.0


def test_unknown_backend_lists_valid_names():
    with pytest.raises(BackendError) as e:
        create_backend("resnet")
    for name in BACKENDS:
        assert name in str(e.value)


@pytest.fixture()
def colour_dir(tmp_path):
    make_colour_model(tmp_path)
    return tmp_path


def test_generic_onnx_backend_segments_known_scene(colour_dir):
    be = create_backend("onnx", str(colour_dir / "colour.onnx"))  # matched through the sidecar? no: generic
    assert be.num_classes == 19 and be.input_hw == (128, 160)
    seg = Segmenter(be, load_classes("full"), min_object_area=300)  # edge blends: 1-cell specks (240 px)
    rgb, truth = render_scene()
    res = seg.run(rgb, want_confidence=True)
    assert res.labels.shape == truth.shape and res.instances.shape == truth.shape
    assert res.labels.dtype == np.uint8 and res.instances.dtype == np.uint16
    assert (res.labels == truth).mean() > 0.97
    assert sorted(set(np.unique(res.instances)) - {0}) == [1, 2, 3]
    for k in (1, 2, 3):
        assert len(np.unique(res.labels[res.instances == k])) == 1
    objs = seg.objects(res)
    assert sorted(o.class_name for o in objs) == sorted(["f20_20_G", "m30", "container_box_blue"])
    assert all(0.0 < o.score <= 1.0 for o in objs)


def test_manifest_entry_is_verified(colour_dir):
    man = Manifest.load(colour_dir)
    be = create_backend("onnx", str(colour_dir / "colour.onnx"), manifest=man)
    assert be.sha256 == man.get("colour").sha256
    # corrupt the file: hash check refuses it when loaded through the manifest
    (colour_dir / "colour.onnx").write_bytes(b"not a model")
    with pytest.raises(ManifestError, match="sha256"):
        man.get("colour").verify_file(colour_dir / "colour.onnx")
    with pytest.raises(BackendError, match="cannot load model"):
        create_backend("onnx", str(colour_dir / "colour.onnx"), manifest=man)


def test_shipped_backend_refuses_wrong_hash_and_shapes(tmp_path, colour_dir):
    # pretend the colour model is the 'espnet' shipped model
    man = Manifest.load(colour_dir)
    e = man.get("colour")
    e.name = "espnet"
    man.put(e)
    man.save()
    be = create_backend("espnet", manifest=Manifest.load(colour_dir))
    assert be.name == "espnet"
    doc = json.loads((colour_dir / "manifest.json").read_text())
    doc["models"]["espnet"]["sha256"] = "0" * 64
    (colour_dir / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(BackendError, match="sha256"):
        create_backend("espnet", manifest=Manifest.load(colour_dir))
    doc["models"]["espnet"]["sha256"] = e.sha256
    doc["models"]["espnet"]["num_classes"] = 15
    (colour_dir / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(BackendError, match="15-class"):
        create_backend("espnet", manifest=Manifest.load(colour_dir))
    doc["models"]["espnet"]["num_classes"] = 19
    doc["models"]["espnet"]["input"]["height"] = 64
    (colour_dir / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(BackendError, match="input shape"):
        create_backend("espnet", manifest=Manifest.load(colour_dir))


def test_missing_model_and_missing_entry(tmp_path):
    with pytest.raises(BackendError, match="no manifest entry 'tflite_int8'"):
        create_backend("tflite_int8", manifest=Manifest.load(tmp_path))
    with pytest.raises(BackendError, match="does not exist"):
        create_backend("onnx", str(tmp_path / "missing.onnx"))
    with pytest.raises(BackendError, match="needs model_path"):
        create_backend("onnx")


def test_make_segmenter_rejects_impossible_input_size(colour_dir):
    cfg = NodeConfig(backend="onnx", model_path=str(colour_dir / "colour.onnx"), input_width=320)
    with pytest.raises(BackendError, match="fixed input of 160x128"):
        make_segmenter(cfg)
    seg = make_segmenter(cfg.replace(input_width=160, input_height=128))
    assert seg.backend.input_hw == (128, 160)


def test_launch_mapping():
    s = node_settings({"backend": "espnet", "image_topic": "/cam/rgb"}, "/share/params.yaml")
    assert s["remappings"] == [("image", "/cam/rgb")]
    assert s["parameters"] == ["/share/params.yaml", {"backend": "espnet", "transport": "raw"}]
    assert s["namespace"] == ""
    s = node_settings({"use_compressed": "true", "image_topic": "/cam/rgb", "namespace": "arm",
                       "params_file": "/my.yaml"}, "/share/params.yaml")
    assert s["remappings"] == [("image/compressed", "/cam/rgb/compressed")]
    assert s["parameters"][0] == "/my.yaml" and s["parameters"][1]["transport"] == "compressed"
    assert s["namespace"] == "arm"
    with pytest.raises(ValueError, match="valid"):
        node_settings({"backnd": "x"}, "")
    with pytest.raises(ValueError, match="true or false"):
        node_settings({"use_compressed": "maybe"}, "")
    assert node_settings({}, "/p.yaml")["parameters"][1]["backend"] == "tflite_int8"


def test_launch_file_only_forwards(repo_root):
    src = (repo_root / "launch" / "seg.launch.py").read_text()
    assert "node_settings(" in src and "LAUNCH_ARGUMENTS" in src
