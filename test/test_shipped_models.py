"""The models in models/ (issue: shipped models): every shipped backend loads through the
same code the node uses, matches its manifest hash, stays inside the size budget and
produces logits of the right shape; the default backend is among them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from seg_perception.backends import BACKENDS
from seg_perception.classes import load_classes
from seg_perception.config import NodeConfig
from seg_perception.manifest import Manifest, sha256_file
from seg_perception.pipeline import make_segmenter

MODELS = Path(__file__).resolve().parents[1] / "models"
MAX_BYTES = 10 * 1024 * 1024
SHIPPED = [name for name, spec in BACKENDS.items() if spec.entry is not None]
MANIFEST = Manifest.load(MODELS)


def test_manifest_lists_every_shipped_backend():
    missing = [spec.entry for name, spec in BACKENDS.items() if spec.entry and spec.entry not in MANIFEST.entries]
    assert missing == [], f"backends without a shipped model: {missing}"
    assert NodeConfig().backend in SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_file_hash_size_and_classes(name):
    entry = MANIFEST.get(BACKENDS[name].entry)
    path = MANIFEST.path_of(entry)
    assert path.is_file(), path
    assert sha256_file(path) == entry.sha256
    assert path.stat().st_size == entry.size_bytes
    assert path.stat().st_size < MAX_BYTES
    classes = load_classes(entry.class_variant)
    assert entry.num_classes == len(classes.names) == 19
    # every entry says how it was made and what it measured
    assert entry.provenance.get("command"), entry.provenance
    assert "miou" in entry.metrics, entry.metrics


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_runs_through_the_node_pipeline(name):
    """Backend scores at the model's input size, labels and instances at the frame's size."""
    seg = make_segmenter(NodeConfig(backend=name, num_threads=1), MANIFEST)
    entry = MANIFEST.get(BACKENDS[name].entry)
    h, w = seg.backend.input_hw
    assert (h, w) == (entry.input.height, entry.input.width)
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    scores = seg.backend.infer(seg.preprocess(frame))
    assert scores.shape == (h, w, entry.num_classes)
    assert np.isfinite(scores.astype(np.float32)).all()
    res = seg.run(frame)
    assert res.labels.shape == (480, 640) and res.labels.dtype == np.uint8 and res.labels.max() < 19
    assert res.instances.shape == (480, 640)


@pytest.mark.shared
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_reaches_its_manifest_miou_on_validation_photos(name, atwork_root):
    """The file does what its manifest claims: seg-eval (the node's code path, full 640x480
    labels) on the validation photos lands within a few points of the export-time mIoU."""
    from seg_perception.tools.eval import evaluate

    entry = MANIFEST.get(BACKENDS[name].entry)
    res = evaluate(name, str(atwork_root), split="val", threads=1)
    assert res["num_images"] > 20
    # manifest metrics are fractions measured at the model input size; seg-eval reports percent
    assert abs(res["miou"] - 100 * entry.metrics["miou"]) <= 3.0, (res["miou"], entry.metrics)
