"""Post-training quantisation of exported models, used by :mod:`training.export`.

* :mod:`.onnx_int8`: ONNX Runtime static int8 (QDQ), file compaction;
* :mod:`.litert`: LiteRT fp16, dynamic range, static int8 (ai-edge-quantizer) and PT2E int8;
* :mod:`.sensitivity`: which layers int8 models keep in float, and their names in exported graphs.

All quantisers take *runtime-ready* calibration images (:func:`calibration_batches`): NHWC float32
RGB pixels 0..255 at the model's input size, resized like the node does (``cv2.INTER_AREA``),
because the exported graphs normalise internally (:class:`training.export.NHWCExportWrapper`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .litert import tflite_dynamic, tflite_fp16, tflite_pt2e_int8, tflite_regex_for, tflite_static_int8
from .onnx_int8 import compact_onnx, onnx_nodes_for, onnx_static_int8
from .sensitivity import pick_float_layers, weight_sensitivity

__all__ = [
    "calibration_batches",
    "compact_onnx",
    "onnx_nodes_for",
    "onnx_static_int8",
    "pick_float_layers",
    "tflite_dynamic",
    "tflite_fp16",
    "tflite_pt2e_int8",
    "tflite_regex_for",
    "tflite_static_int8",
    "weight_sensitivity",
]


def calibration_batches(images: Iterable[np.ndarray], height: int, width: int) -> list[np.ndarray]:
    """1xHxWx3 float32 arrays, one per calibration image."""
    return [np.asarray(x, np.float32).reshape(1, height, width, 3) for x in images]
