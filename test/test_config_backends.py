import json

import numpy as np
import pytest
from colour_model import make_colour_model, render_scene

from seg_perception.backends import BACKENDS, BackendError, create_backend, open_backend
from seg_perception.backends.base import static_dim
from seg_perception.classes import load_classes
from seg_perception.config import ConfigError, NodeConfig
from seg_perception.manifest import Manifest, ManifestError
from seg_perception.pipeline import Segmenter, make_segmenter


def test_config_defaults_validate():
    cfg = NodeConfig().validate()
    assert cfg.backend == "tflite_int8" and cfg.transport == "raw"


@pytest.mark.parametrize(
    "values, words",
    [
        ({"backend": "nope"}, ["backend", "tflite_int8", "onnx_fcn8s_pruned", "espnet"]),
        ({"transport": "udp"}, ["raw", "compressed"]),
        ({"qos_reliability": "x"}, ["best_effort", "reliable"]),
        ({"class_variant": "x"}, ["full", "binary"]),
        ({"num_threads": 0}, ["num_threads"]),
        ({"overlay_alpha": 2.0}, ["overlay_alpha"]),
        ({"num_threads": "two"}, ["num_threads", "int"]),
        ({"num_threads": 2.5}, ["num_threads", "int"]),
        ({"bogus": 1}, ["bogus", "backend"]),
        ({"flip_average": "yes"}, ["flip_average", "auto", "on", "off"]),
    ],
)
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


@pytest.mark.parametrize(
    "declared, value",
    [(1, 1), (np.int32(320), 320), ("64", 64), (-1, -1), ("batch", None), (None, None), ("", None)],
)
def test_static_dim_reads_both_runtimes_declared_dimensions(declared, value):
    assert static_dim(declared) == value


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


def test_backend_refuses_a_manifest_output_grid_the_file_does_not_have(colour_dir):
    man = Manifest.load(colour_dir)
    be = create_backend("onnx", str(colour_dir / "colour.onnx"), manifest=man)
    doc = json.loads((colour_dir / "manifest.json").read_text())
    doc["models"]["colour"]["output"]["height"] = be.output_hw[0] // 4  # e.g. a model-grid file recorded wrong
    (colour_dir / "manifest.json").write_text(json.dumps(doc))
    entry = Manifest.load(colour_dir).get("colour")
    with pytest.raises(BackendError, match="output grid"):
        open_backend(entry, colour_dir / "colour.onnx")


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


def test_flip_average_auto_is_the_backends_and_on_off_override_it(colour_dir):
    from seg_perception.backends import flip_average_for

    assert [n for n in BACKENDS if flip_average_for("auto", n)] == ["onnx_fcn8s_pruned"]
    assert flip_average_for("on", "tflite_int8") and not flip_average_for("off", "onnx_fcn8s_pruned")
    with pytest.raises(ValueError, match="auto"):
        flip_average_for("yes", "espnet")
    cfg = NodeConfig(backend="onnx", model_path=str(colour_dir / "colour.onnx"))
    assert cfg.flip_average == "auto" and not make_segmenter(cfg).flip_average  # generic backend: off
    assert make_segmenter(cfg.replace(flip_average="on")).flip_average
    assert cfg.replace(flip_average="on").backend_key() == cfg.backend_key()  # no reload: a runtime switch
    # ROS reads -p flip_average:=off as YAML: a bool; it means off (and true on), for this choice only
    assert NodeConfig.from_dict({"flip_average": False}).flip_average == "off"
    assert NodeConfig.from_dict({"flip_average": True}).flip_average == "on"
    with pytest.raises(ConfigError, match="backend"):
        NodeConfig.from_dict({"backend": True})


# --- start-up config: each bad value alone falls back ------------------------------------------------
def test_startup_config_keeps_valid_values_and_names_each_refused_one():
    from seg_perception.config import startup_config

    cfg, faults = startup_config(
        {
            "backend": 7,
            "overlay_alpha": 1,
            "num_threads": 3.0,
            "min_object_area": 50,
            "qos_depth": 0,
            "transport": "compressed",
            "bogus": 1,
        }
    )
    assert cfg.backend == "tflite_int8" and cfg.qos_depth == 1  # refused: defaults
    assert (cfg.overlay_alpha, cfg.num_threads, cfg.min_object_area, cfg.transport) == (1.0, 3, 50, "compressed")
    assert type(cfg.overlay_alpha) is float and type(cfg.num_threads) is int
    assert sorted(faults) == ["backend", "bogus", "qos_depth"]
    assert "must be of type str" in faults["backend"] and "default 'tflite_int8'" in faults["backend"]
    assert "[1, 100]" in faults["qos_depth"]


def test_class_variant_rule():
    from seg_perception.pipeline import class_variant_for

    assert class_variant_for("binary", "full", "file") == "binary"  # a bare file: the parameter decides
    assert class_variant_for("full", "full", "manifest") == "full"
    with pytest.raises(BackendError, match="sidecar entry says class variant 'binary'"):
        class_variant_for("full", "binary", "sidecar")


# --- manifest: each entry on its own ------------------------------------------------------------------
def _manifest_with(colour_dir, **bad_entries):
    doc = json.loads((colour_dir / "manifest.json").read_text())
    doc["models"].update(bad_entries)
    (colour_dir / "manifest.json").write_text(json.dumps(doc))
    return Manifest.load(colour_dir)


@pytest.mark.parametrize(
    "bad, words",
    [
        (None, ["expected an object", "null"]),
        ({"file": "x.onnx", "format": "onnx", "num_classes": 19}, ["sha256"]),
        ({"file": "x.onnx", "format": "onnx", "num_classes": 19, "sha256": "0" * 64, "colour": "red"}, ["colour"]),
        ({"file": "x.onnx", "format": "onnx", "num_classes": "19", "sha256": "0" * 64}, ["num_classes"]),
        ({"file": "x.onnx", "format": "onnx", "num_classes": 19, "sha256": "0" * 64, "input": {"mean": 5}}, ["mean"]),
        ({"file": "x.onnx", "format": "caffe", "num_classes": 19, "sha256": "0" * 64}, ["format"]),
    ],
)
def test_a_bad_manifest_entry_is_unusable_alone(colour_dir, bad, words):
    man = _manifest_with(colour_dir, espnet=bad)
    assert "colour" in man.entries and "espnet" not in man.entries
    with pytest.raises(ManifestError) as e:
        man.get("espnet")
    msg = str(e.value)
    assert "manifest.json" in msg and "'espnet'" in msg
    for w in words:
        assert w in msg
    with pytest.raises(BackendError, match="manifest.json"):
        create_backend("espnet", manifest=man)
    # the intact entry and a plain model_path still work
    assert create_backend("onnx", str(colour_dir / "colour.onnx"), manifest=man).sha256 == man.get("colour").sha256
    # writing the manifest back keeps the bad entry as it was, for its owner to fix
    e2 = man.get("colour")
    e2.name = "colour2"
    man.put(e2)
    man.save()
    assert json.loads((colour_dir / "manifest.json").read_text())["models"]["espnet"] == bad


def test_an_unreadable_manifest_names_itself_and_model_path_still_works(colour_dir):
    (colour_dir / "manifest.json").write_text("{ not json")
    man = Manifest.load(colour_dir)
    with pytest.raises(ManifestError, match=r"manifest.json: not valid JSON"):
        man.get("colour")
    with pytest.raises(BackendError, match=r"manifest.json"):
        create_backend("espnet", manifest=man)
    assert create_backend("onnx", str(colour_dir / "colour.onnx"), manifest=man).num_classes == 19
    (colour_dir / "manifest.json").write_text('{"models": [1, 2]}')
    with pytest.raises(ManifestError, match="manifest.json"):
        Manifest.load(colour_dir).get("colour")


# --- model files: read once, hashed, size-limited -------------------------------------------------------
def test_the_loaded_model_is_the_one_hashed_while_the_file_is_replaced(tmp_path):
    """A file swapped between hashing and loading must never run under the other file's hash."""
    import hashlib
    import threading

    make_colour_model(tmp_path / "a", name="a", hw=(128, 160))
    make_colour_model(tmp_path / "b", name="b", hw=(96, 128))
    blobs = {(tmp_path / n / f"{n}.onnx").read_bytes(): hw for n, hw in (("a", (128, 160)), ("b", (96, 128)))}
    sha_to_hw = {hashlib.sha256(b).hexdigest(): hw for b, hw in blobs.items()}
    target = tmp_path / "model.onnx"
    target.write_bytes(next(iter(blobs)))
    stop = threading.Event()

    def swap():
        items = list(blobs)
        i = 0
        while not stop.is_set():
            tmp = tmp_path / f"swap{i % 2}.onnx"
            tmp.write_bytes(items[i % 2])
            tmp.replace(target)  # atomic, as a deploy script would
            i += 1

    t = threading.Thread(target=swap, daemon=True)
    t.start()
    try:
        for _ in range(60):
            be = create_backend("onnx", str(target))
            assert be.input_hw == sha_to_hw[be.sha256]
    finally:
        stop.set()
        t.join()


def test_an_oversized_model_file_is_refused_before_reading(tmp_path, monkeypatch):
    import time

    from seg_perception.backends import base

    big = tmp_path / "huge.onnx"
    with open(big, "wb") as f:
        f.truncate(base.MAX_MODEL_BYTES + 1)  # sparse: no disk used
    t = time.perf_counter()
    with pytest.raises(BackendError, match=r"huge.onnx is larger than the 512 MiB limit"):
        create_backend("onnx", str(big))
    assert time.perf_counter() - t < 1.0  # refused from its size, not after reading 512 MiB


def test_readme_parameter_table_lists_every_parameter_and_when_it_can_change(repo_root):
    from seg_perception.config import PARAMS

    rows = {}
    for line in (repo_root / "README.md").read_text().splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            for name in cells[0].replace("`", "").split(","):
                rows[name.strip()] = cells[-1]
    for name, spec in PARAMS.items():
        assert name in rows, f"README parameter table misses {name}"
        assert (rows[name] == "start-up only") == spec.startup_only, name
