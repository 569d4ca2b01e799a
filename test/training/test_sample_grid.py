"""training.sample_grid: layout and content of the README's prediction grid."""

import cv2
import numpy as np

from seg_perception.config import NodeConfig
from seg_perception.demo_frames import render_frame
from seg_perception.pipeline import make_segmenter
from seg_perception.postprocess import overlay
from training import sample_grid


def test_grid_cells_are_frame_ground_truth_and_prediction(colour_model):
    cfg = NodeConfig(backend="onnx", model_path=colour_model, num_threads=1)
    grid = sample_grid.make_grid({"colour": cfg}, [0, 1], scale=0.5)
    assert grid.shape == (2 * 240, 3 * 320, 3) and grid.dtype == np.uint8
    seg = make_segmenter(cfg)
    for row, seed in enumerate((0, 1)):
        rgb, gt = render_frame(seed)
        pred = seg.run(rgb).labels
        want = [rgb, overlay(rgb, gt, seg.classes.palette(), 0.6), overlay(rgb, pred, seg.classes.palette(), 0.6)]
        for col, full in enumerate(want):
            cell = grid[row * 240 + 30 : (row + 1) * 240, col * 320 : (col + 1) * 320].astype(int)
            small = cv2.resize(full, (320, 240), interpolation=cv2.INTER_AREA)[30:].astype(int)
            assert np.abs(cell - small).max() <= 1, (seed, col)
        assert (gt > 0).any() and not np.array_equal(want[0], want[1])
