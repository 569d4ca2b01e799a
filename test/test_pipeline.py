"""What tools outside the node use of the runtime: open_backend on a file with its own manifest
entry, ONNX sessions without spin-waiting, Segmenter.scores / Segmenter.labels, dequantize."""

from __future__ import annotations

import numpy as np
import pytest
from colour_model import make_colour_model, render_scene

from seg_perception.backends import BackendError, open_backend
from seg_perception.classes import load_classes
from seg_perception.pipeline import Segmenter
from seg_perception.postprocess import dequantize

SPIN_KEY = "session.intra_op.allow_spinning"


@pytest.fixture()
def colour(tmp_path):
    man = make_colour_model(tmp_path)
    entry = man.get("colour")
    return entry, man.path_of(entry)


def _segmenter(entry, path) -> Segmenter:
    return Segmenter(open_backend(entry, path, num_threads=1), load_classes("full"))


def test_open_backend_runs_the_file_of_an_entry(colour):
    entry, path = colour
    be = open_backend(entry, path, num_threads=1)
    assert be.name == "colour" and be.entry is entry and be.sha256 == entry.sha256
    assert be.input_hw == (128, 160) and be.num_classes == 19
    assert be.input_dtype == be.output_dtype == np.float32 and be.output_quant is None


def test_open_backend_refuses_a_file_that_is_not_the_entrys(colour):
    entry, path = colour
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(BackendError, match="sha256"):
        open_backend(entry, path)


def test_open_backend_refuses_shapes_the_entry_does_not_declare(colour):
    entry, path = colour
    entry.input.height += 8
    with pytest.raises(BackendError, match="input shape"):
        open_backend(entry, path)


def test_onnx_sessions_spin_wait_unless_told_not_to(colour):
    entry, path = colour
    quiet = open_backend(entry, path, spin_wait=False)
    assert quiet._sess.get_session_options().get_session_config_entry(SPIN_KEY) == "0"
    default = open_backend(entry, path)
    with pytest.raises(Exception, match=SPIN_KEY):  # not set: ONNX Runtime's default (spinning) applies
        default._sess.get_session_options().get_session_config_entry(SPIN_KEY)


def test_segmenter_labels_are_the_labels_of_run(colour):
    seg = _segmenter(*colour)
    rgb, truth = render_scene()
    labels = seg.labels(rgb)
    assert labels.dtype == np.uint8 and labels.shape == truth.shape
    np.testing.assert_array_equal(labels, seg.run(rgb).labels)
    assert (labels == truth).mean() > 0.97  # the colour model's known answer


def test_segmenter_scores_are_the_model_output(colour):
    seg = _segmenter(*colour)
    rgb, truth = render_scene()
    scores = seg.scores(rgb)
    assert scores.shape == (32, 40, 19) and scores.dtype == np.float32  # 128x160 input, 4x down
    low_truth = truth[7::15, 8::16]  # 480x640 -> 32x40 cells of 15x16 pixels: the centre of each
    assert (scores.argmax(-1) == low_truth).mean() > 0.97


def test_dequantize_maps_quantised_scores_to_logits():
    q = np.array([[[-128, 0, 127]]], np.int8)
    np.testing.assert_allclose(dequantize(q, (0.5, -128)), [[[0.0, 64.0, 127.5]]])
    f = np.array([[[1.5, -2.0]]], np.float32)
    np.testing.assert_array_equal(dequantize(f, None), f)


class _ColumnBackend:
    """Scores that depend on the column, not on the pixels (a model that is not mirror-symmetric):
    class 1 scores its column index 0..5, background a constant 2 (2.25 for float scores)."""

    name = "columns"
    num_classes = 19
    input_hw = (4, 6)
    input_quant = None
    input_dtype = np.dtype(np.float32)

    def __init__(self, layout: str = "NHWC", dtype=np.float32):
        from types import SimpleNamespace

        self.entry = SimpleNamespace(input=SimpleNamespace(mean=[0.0] * 3, std=[1.0] * 3, layout=layout))
        self.dtype = np.dtype(dtype)
        self.output_quant = None if self.dtype.kind == "f" else (0.1, 0)
        self.inputs: list[np.ndarray] = []

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.inputs.append(x.copy())
        s = np.zeros((4, 6, 19), self.dtype)
        s[..., 1] = np.arange(6)
        s[..., 0] = 2.25 if self.dtype.kind == "f" else 2
        return s


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("dtype", [np.float32, np.int8])
def test_flip_averaging_runs_the_mirror_image_and_averages_its_scores_mirrored_back(layout, dtype):
    rgb = np.random.default_rng(0).integers(0, 255, (8, 12, 3), dtype=np.uint8)
    plain = Segmenter(_ColumnBackend(layout, dtype), load_classes("full"))
    assert (plain.labels(rgb)[0] == [0] * 6 + [1] * 6).all()  # class 1 wins the right half
    backend = _ColumnBackend(layout, dtype)
    seg = Segmenter(backend, load_classes("full"), flip_average=True)
    scores = seg.scores(rgb)
    # column j and its mirror 5 - j: class 1 scores (j + 5 - j) / 2 = 2.5 everywhere (int8: 3, half up)
    assert scores.dtype == np.dtype(dtype) and (scores[..., 1] == (2.5 if dtype == np.float32 else 3)).all()
    assert (scores[..., 0] == (2.25 if dtype == np.float32 else 2)).all()
    first, mirrored = backend.inputs
    assert np.array_equal(mirrored, np.flip(first, 3 if layout == "NCHW" else 2))
    assert not np.array_equal(mirrored, first)
    res = seg.run(rgb)
    assert (res.labels == 1).all() and len(backend.inputs) == 4  # run: the same two passes
    seg.flip_average = False  # the node's runtime parameter: one pass again
    assert (seg.labels(rgb)[0] == [0] * 6 + [1] * 6).all() and len(backend.inputs) == 5
