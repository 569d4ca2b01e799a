"""Export a checkpoint to every deployment format, check each file through the runtime, record it in the manifest.

One command::

    python -m training.export --checkpoint runs/dlv3p/best.pt \\
        --formats onnx_fp32,onnx_int8,tflite_fp32,tflite_fp16,tflite_dynamic,tflite_int8 \\
        --calib-root ../shared/datasets/atwork --out models/ --name-prefix deeplabv3p_mnv2 \\
        [--height 256 --width 320] [--entry-names tflite_int8=tflite_int8,onnx_int8=onnx]

Graph interface (written into each manifest entry, so the node follows the manifest):

* input ``NHWC`` RGB pixels 0..255 at the model's input size (``dtype`` float32; int8 for the
  full-int8 TFLite model, whose scale/zero point the runtime reads from the interpreter). The
  graph does ``(px - 127.5) / 127.5`` itself (manifest ``mean [0,0,0]``, ``std [1,1,1]``): the
  node only resizes a camera frame and casts it, no per-pixel float maths or transposes in
  Python.
* output ``NHWC`` logits (``num_classes`` channels) at the input resolution; for int8 models
  an int8 tensor (argmax can run on it directly: dequantisation is monotonic).

int8 models keep the few layers whose int8 weight rounding costs the most argmax agreement in
float (``--keep-float auto``, see :mod:`training.quantize`).

Every file is checked before it is recorded, through the node's own code
(:mod:`.checks`: ``seg_perception.backends`` loads it with its manifest entry, ``Segmenter``
preprocesses and argmaxes): it loads, its shapes and class count match the entry, and on
validation images (real val-split photos with ``--calib-root`` / ``--val-root``, or
``--synthetic-calib`` scenes) the argmax agreement with PyTorch, the max-abs logit difference
and the mIoU against the labels (and its delta vs PyTorch) are measured, printed and stored in
the entry's ``metrics``; ``provenance`` holds the command line, checkpoint sha256 and the
resolved export config (also written to ``<file>.config.yaml``). A file failing a check is
deleted and not recorded.

Modules: :mod:`.formats` (settings, graph wrapper, one exporter per format), :mod:`.checks`,
:mod:`.images` (calibration / validation images), :mod:`.run` (:func:`export_all`), :mod:`.cli`.
"""

from .checks import ExportCheckError, check_exported, open_exported, torch_logits
from .cli import main
from .formats import (
    ALL_FORMATS,
    EXPORTERS,
    EXTRA_FORMATS,
    FLOAT_FORMATS,
    ExportSettings,
    NHWCExportWrapper,
    parse_entry_names,
)
from .images import real_images, synthetic_scenes
from .run import export_all

__all__ = [
    "ALL_FORMATS",
    "EXPORTERS",
    "EXTRA_FORMATS",
    "FLOAT_FORMATS",
    "ExportCheckError",
    "ExportSettings",
    "NHWCExportWrapper",
    "check_exported",
    "export_all",
    "main",
    "open_exported",
    "parse_entry_names",
    "real_images",
    "synthetic_scenes",
    "torch_logits",
]
