"""Checks of an exported file against the PyTorch model it came from, run through the node's own code.

The file is loaded by :func:`seg_perception.backends.open_backend` with the manifest entry that
will be recorded for it (sha256, input shape and class axis checked as the node checks them) and
run through :class:`seg_perception.pipeline.Segmenter` (the node's preprocessing: resize, cast or
int8 quantisation of the pixels; the node's argmax). What passes here is what the node runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from seg_perception.backends import BackendError, open_backend
from seg_perception.classes import load_classes
from seg_perception.manifest import ModelEntry
from seg_perception.metrics import accuracy_summary, confusion_matrix
from seg_perception.pipeline import Segmenter
from seg_perception.postprocess import dequantize, scores_to_labels

FLOAT_FORMATS = ("onnx_fp32", "tflite_fp32", "tflite_fp16")


class ExportCheckError(RuntimeError):
    """An exported file failed a check and must not be recorded."""


def torch_logits(wrapper: nn.Module, images: np.ndarray) -> np.ndarray:
    """PyTorch reference logits (N, H, W, C) for uint8/float 0..255 NHWC images."""
    out = []
    wrapper.eval()
    with torch.no_grad():
        for img in images:
            out.append(wrapper(torch.from_numpy(img.astype(np.float32))[None])[0].numpy())
    return np.stack(out)


def open_exported(entry: ModelEntry, path: os.PathLike, num_threads: int = 2) -> Segmenter:
    """The :class:`~seg_perception.pipeline.Segmenter` of an exported file and its manifest entry.

    Refuses (:class:`ExportCheckError`) a file whose hash, input shape or class axis disagree with
    the entry, or whose class count is not that of the entry's class variant: the node would
    refuse it for the same reasons.
    """
    try:
        return Segmenter(open_backend(entry, path, num_threads), load_classes(entry.class_variant))
    except (BackendError, ValueError) as e:
        raise ExportCheckError(f"{entry.file}: {e}") from e


def check_exported(
    seg: Segmenter, images: np.ndarray, labels: np.ndarray | None, ref_logits: np.ndarray
) -> dict[str, Any]:
    """Argmax agreement, max |logit difference| and mIoU (with its delta) of the file vs PyTorch.

    ``images`` are uint8 NHWC at the model's input size; ``ref_logits`` the PyTorch logits of the
    same images (:func:`torch_logits`), on the graph's output grid. The file's scores come from
    ``seg.scores`` (the node's preprocessing and backend), compared on that grid; int8 scores are
    dequantised only for the logit difference. The mIoU is of labels at the images' size, made by the
    node's own upsampling (:meth:`Segmenter.frame_labels`) from the file's and from PyTorch's scores.
    """
    quant = seg.backend.output_quant
    name = seg.backend.path.name
    preds, frame_preds, ref_frame_preds, max_diff = [], [], [], 0.0
    for img, ref in zip(images, ref_logits, strict=False):
        scores = seg.scores(img)
        if scores.shape != ref.shape:
            raise ExportCheckError(f"{name}: output shape {scores.shape} != PyTorch {ref.shape}")
        max_diff = max(max_diff, float(np.abs(dequantize(scores, quant) - ref).max()))
        preds.append(scores_to_labels(scores, quant)[0])
        if labels is not None:
            frame_preds.append(seg.frame_labels(scores, img.shape[:2]))
            ref_frame_preds.append(seg.frame_labels(ref, img.shape[:2], quantised=False))
    pred = np.stack(preds)
    ref_pred = np.argmax(ref_logits, -1)
    metrics: dict[str, Any] = {
        "num_images": int(len(images)),
        "argmax_agreement": float((pred == ref_pred).mean()),
        "max_abs_diff": max_diff,
        "logit_range": float(np.abs(ref_logits).max()),
    }
    if labels is not None:
        n = seg.backend.num_classes
        metrics["miou"] = accuracy_summary(confusion_matrix(np.stack(frame_preds), labels, n))["miou"]
        metrics["miou_torch"] = accuracy_summary(confusion_matrix(np.stack(ref_frame_preds), labels, n))["miou"]
        if metrics["miou"] is not None and metrics["miou_torch"] is not None:
            metrics["miou_delta"] = metrics["miou"] - metrics["miou_torch"]
    return metrics


def enforce_tolerances(
    fmt: str, m: Mapping[str, Any], max_abs_diff_fp32: float, min_agreement_float: float, min_agreement_quant: float
) -> None:
    """Refuse files that disagree with PyTorch beyond what their number format explains: fp32 files
    within ``max_abs_diff_fp32`` of the logits (relative to their range when it exceeds 1), float
    formats on ``min_agreement_float`` of the pixels, quantised ones on ``min_agreement_quant``."""
    if fmt in ("onnx_fp32", "tflite_fp32") and m["max_abs_diff"] > max_abs_diff_fp32 * max(1.0, m["logit_range"]):
        raise ExportCheckError(f"{fmt}: max |logit diff| {m['max_abs_diff']:.4g} vs PyTorch")
    floor = min_agreement_float if fmt in FLOAT_FORMATS else min_agreement_quant
    if m["argmax_agreement"] < floor:
        raise ExportCheckError(f"{fmt}: argmax agreement {m['argmax_agreement']:.4f} < {floor}")
