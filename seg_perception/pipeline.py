"""Frame -> segmentation result: preprocess, backend, postprocess. No rclpy here."""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from .backends import Backend, flip_average_for
from .classes import ClassSet
from .postprocess import (
    SegObject,
    extract_objects,
    label_instances,
    overlay,
    resize_nearest,
    scores_to_labels,
    upsample_bilinear,
)

UPSAMPLING = ("bilinear", "nearest")


@dataclass
class SegResult:
    labels: np.ndarray  # uint8 HxW at input resolution
    instances: np.ndarray  # uint16 HxW
    confidence: np.ndarray | None  # float32 HxW max class probability (when asked for)
    infer_ms: float  # backend only
    total_ms: float  # preprocess + backend + postprocess
    scores: np.ndarray | None = None  # the backend's (h, w, C) output, model resolution (object scores)
    scores_quant: tuple[float, int] | None = None  # its (scale, zero point) when quantised
    coarse_instances: np.ndarray | None = None  # uint16 instance map on the scores' grid (before upsampling)


class Segmenter:
    """Runs one backend on RGB frames of any size and returns maps at the frame's size."""

    def __init__(
        self,
        backend: Backend,
        classes: ClassSet,
        min_object_area: int = 0,
        upsampling: str = "bilinear",
        flip_average: bool = False,
    ):
        if backend.num_classes != classes.num_classes:
            raise ValueError(
                f"backend {backend.name} has {backend.num_classes} classes, class file variant "
                f"{classes.variant!r} has {classes.num_classes}"
            )
        self.backend = backend
        self.classes = classes
        self.min_object_area = int(min_object_area)
        if upsampling not in UPSAMPLING:
            raise ValueError(f"upsampling must be one of {list(UPSAMPLING)}, got {upsampling!r}")
        self.upsampling = upsampling
        # also run the model on the mirror image and average the scores (twice the inference)
        self.flip_average = bool(flip_average)
        e = backend.entry.input
        self._mean = np.asarray(e.mean, np.float32)
        self._inv_std = 1.0 / np.asarray(e.std, np.float32)
        self._identity_norm = bool(np.all(self._mean == 0) and np.all(self._inv_std == 1))
        self._palette = classes.palette()

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        h, w = self.backend.input_hw
        x = rgb if rgb.shape[:2] == (h, w) else cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        q = self.backend.input_quant
        dtype = self.backend.input_dtype
        if q is not None and self._identity_norm:
            # int8 graph fed pixels 0..255: quantise directly (scale ~1, zero point ~-128)
            scale, zero = q
            if abs(scale - 1.0) < 1e-6:
                xi = x.astype(np.int16) + zero
            else:
                xi = np.rint(x.astype(np.float32) / scale) + zero
            info = np.iinfo(dtype)
            x = np.clip(xi, info.min, info.max).astype(dtype)
        else:
            x = x.astype(np.float32)
            if not self._identity_norm:
                x = (x - self._mean) * self._inv_std
            if q is not None:
                scale, zero = q
                info = np.iinfo(dtype)
                x = np.clip(np.rint(x / scale) + zero, info.min, info.max)
            x = x.astype(dtype, copy=False)
        x = x[None]
        if self.backend.entry.input.layout == "NCHW":
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return x

    def scores(self, rgb: np.ndarray) -> np.ndarray:
        """Raw class scores (h, w, C) at the model's output size: what :meth:`run` takes the argmax of
        (int8 for an int8 model; :func:`~seg_perception.postprocess.dequantize` gives logits)."""
        return self._infer(self.preprocess(rgb))

    def _infer(self, x: np.ndarray) -> np.ndarray:
        """The backend's scores of ``x``; with :attr:`flip_average` the mean of them and of the mirror
        image's scores mirrored back. Quantised scores stay quantised (same scale and zero point: the
        mean of two integers, rounded half up), so the argmax and the int8 fast paths stay as they are."""
        scores = self.backend.infer(x)
        if not self.flip_average:
            return scores
        width_axis = 3 if self.backend.entry.input.layout == "NCHW" else 2
        mirrored = self.backend.infer(np.ascontiguousarray(np.flip(x, width_axis)))[:, ::-1]
        if np.issubdtype(scores.dtype, np.floating):
            return (scores + mirrored) * scores.dtype.type(0.5)
        return ((scores.astype(np.int16) + mirrored + 1) >> 1).astype(scores.dtype)

    def labels(self, rgb: np.ndarray) -> np.ndarray:
        """The label map of :meth:`run` alone (uint8, the frame's size): no instances, confidence or timing."""
        return self.frame_labels(self.scores(rgb), rgb.shape[:2])

    def frame_labels(self, scores: np.ndarray, hw: tuple[int, int], quantised: bool = True) -> np.ndarray:
        """Labels at ``hw`` from scores on the model's grid, as :meth:`run` makes them (``quantised=False``:
        float scores, e.g. PyTorch's, for an int8 model)."""
        low_labels, _ = scores_to_labels(scores, self.backend.output_quant if quantised else None)
        return self._to_frame(scores, low_labels, None, hw)[0]

    def _to_frame(
        self, scores: np.ndarray, low_labels: np.ndarray, low_inst: np.ndarray | None, hw: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels (and instances) at the frame's size: argmax of the bilinearly upsampled scores, or
        nearest. Both maps move together, so every instance keeps one class."""
        if self.upsampling == "bilinear":
            return upsample_bilinear(scores, low_labels, low_inst, hw)
        return resize_nearest(low_labels, hw), (None if low_inst is None else resize_nearest(low_inst, hw))

    def run(self, rgb: np.ndarray, want_confidence: bool = False) -> SegResult:
        t0 = time.perf_counter()
        x = self.preprocess(rgb)
        t1 = time.perf_counter()
        scores = self._infer(x)
        t2 = time.perf_counter()
        low_labels, low_conf = scores_to_labels(scores, self.backend.output_quant, want_confidence)
        hw = rgb.shape[:2]
        # instances on the low-resolution map (cheap), then moved to the frame with the labels
        scale = (hw[0] * hw[1]) / float(low_labels.size)
        low_inst = label_instances(low_labels, self.min_object_area, area_scale=scale)
        labels, instances = self._to_frame(scores, low_labels, low_inst, hw)
        conf = resize_nearest(low_conf, hw) if low_conf is not None else None
        t3 = time.perf_counter()
        return SegResult(
            labels, instances, conf, (t2 - t1) * 1e3, (t3 - t0) * 1e3, scores, self.backend.output_quant, low_inst
        )

    def objects(self, result: SegResult) -> list[SegObject]:
        return extract_objects(result.labels, result.instances, self.classes.names, result.confidence)

    def overlay(self, rgb: np.ndarray, result: SegResult, alpha: float = 0.5) -> np.ndarray:
        return overlay(rgb, result.labels, self._palette, alpha)


def class_variant_for(requested: str, entry_variant: str, entry_source: str) -> str:
    """The class set a model runs with: its manifest/sidecar entry's, which ``class_variant`` must
    then agree with; ``class_variant`` itself for a bare model file (shapes only)."""
    from .backends import BackendError

    if entry_source == "file":
        return requested
    if requested != entry_variant:
        raise BackendError(
            f"the model's {entry_source} entry says class variant {entry_variant!r}, parameter "
            f"class_variant says {requested!r}: set class_variant to {entry_variant!r} (it "
            f"chooses the classes only of a model file without an entry)"
        )
    return entry_variant


def make_segmenter(cfg, manifest=None, spin_wait: bool = True) -> Segmenter:
    """Backend + classes + postprocessing from a :class:`~seg_perception.config.NodeConfig`.

    ``spin_wait`` False: the runtime's worker threads sleep between runs (for timing it in turns
    with another model on the same cores). Raises :class:`~seg_perception.backends.BackendError`
    with the file and reason.
    """
    from .backends import BackendError, create_backend
    from .classes import load_classes

    backend = create_backend(cfg.backend, cfg.model_path, cfg.num_threads, manifest, spin_wait)
    h, w = backend.input_hw
    if (cfg.input_height and cfg.input_height != h) or (cfg.input_width and cfg.input_width != w):
        raise BackendError(
            f"model {backend.path.name} has a fixed input of {w}x{h} (width x height); "
            f"input_width/input_height {cfg.input_width}x{cfg.input_height} not possible "
            f"(use 0 for the model's own size)"
        )
    variant = class_variant_for(cfg.class_variant, backend.entry.class_variant, backend.entry_source)
    classes = load_classes(variant)
    try:
        return Segmenter(
            backend, classes, cfg.min_object_area, flip_average=flip_average_for(cfg.flip_average, cfg.backend)
        )
    except ValueError as e:
        raise BackendError(str(e)) from e
