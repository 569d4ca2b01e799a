"""Export a checkpoint to every deployment format, check each file, and record it in the manifest.

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
  Python. LiteRT folds the NHWC<->NCHW transposes away entirely; ONNX Runtime keeps one
  transpose at each end (cheap next to the convs).
* output ``NHWC`` logits (``num_classes`` channels) at the input resolution; for int8 models
  an int8 tensor (argmax can run on it directly: dequantisation is monotonic).

int8 models keep the few layers whose int8 weight rounding costs the most argmax agreement in
float (``--keep-float auto``, see :mod:`training.quantize`).

Every file is checked before it is recorded: it loads in its runtime, the output shape and
class count match, and on validation images (real val-split photos with ``--calib-root`` /
``--val-root``, or ``--synthetic-calib`` scenes) the argmax agreement with PyTorch, the fp32
max-abs logit difference and the mIoU against the labels (and its delta vs PyTorch) are
measured, printed and stored in the entry's ``metrics``; ``provenance`` holds the command
line, checkpoint sha256 and the resolved export config (also written to
``<file>.config.yaml``). A file failing a check is deleted and not recorded.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import logging
import os
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

log = logging.getLogger(__name__)

ALL_FORMATS = ("onnx_fp32", "onnx_int8", "tflite_fp32", "tflite_fp16", "tflite_dynamic", "tflite_int8")
EXTRA_FORMATS = ("tflite_int8_pt2e",)  # for comparison only (float I/O, fewer int8 ops)
FLOAT_FORMATS = ("onnx_fp32", "tflite_fp32", "tflite_fp16")
DEFAULT_HW = (256, 320)
PIXEL_MEAN = 127.5
PIXEL_STD = 127.5


# --------------------------------------------------------------------------------------
# Graph wrapper
# --------------------------------------------------------------------------------------

class NHWCExportWrapper(nn.Module):
    """NHWC float RGB pixels 0..255 in -> normalise -> model (NCHW) -> NHWC logits out."""

    def __init__(self, model: nn.Module, mean: float = PIXEL_MEAN, std: float = PIXEL_STD):
        super().__init__()
        self.model = model
        self.mean = float(mean)
        self.inv_std = 1.0 / float(std)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = (pixels.permute(0, 3, 1, 2) - self.mean) * self.inv_std
        return self.model(x).permute(0, 2, 3, 1)


# --------------------------------------------------------------------------------------
# Images: real photos (preprocessed like the node) or synthetic scenes
# --------------------------------------------------------------------------------------

def _class_colours(num_classes: int) -> np.ndarray:
    """Saturated, evenly spaced hues for classes 1..n-1 (class 0 = low-saturation background)."""
    import cv2

    hues = np.linspace(0, 180, num_classes, endpoint=False).astype(np.uint8)[: num_classes - 1]
    hsv = np.stack([hues, np.full_like(hues, 230), np.full_like(hues, 230)], -1)[None]
    return np.concatenate([np.zeros((1, 3), np.uint8), cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]], 0)


def synthetic_scenes(n: int, height: int, width: int, num_classes: int,
                     seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """``n`` scenes of coloured blobs (class = colour) on grey textured backgrounds.

    Returns uint8 images (n, H, W, 3) RGB and uint8 labels (n, H, W). Trivially learnable
    (colour -> class), so a tiny net trained for a few steps gives meaningful argmax maps.
    """
    import cv2

    rng = np.random.default_rng(seed)
    colours = _class_colours(num_classes)
    images = np.empty((n, height, width, 3), np.uint8)
    labels = np.zeros((n, height, width), np.uint8)
    for i in range(n):
        grey = rng.uniform(70, 190)
        noise = cv2.resize(rng.normal(0, 12, (max(2, height // 8), max(2, width // 8))).astype(np.float32),
                           (width, height), interpolation=cv2.INTER_LINEAR)
        bg = np.clip(grey + noise[..., None] + rng.normal(0, 4, (height, width, 3)), 0, 255)
        img = bg.astype(np.uint8)
        lab = labels[i]
        for _ in range(int(rng.integers(1, 5))):
            k = int(rng.integers(1, num_classes))
            cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
            ay, ax = int(rng.integers(max(2, height // 10), max(3, height // 3))), \
                int(rng.integers(max(2, width // 10), max(3, width // 3)))
            mask = np.zeros((height, width), np.uint8)
            cv2.ellipse(mask, (cx, cy), (ax, ay), float(rng.uniform(0, 180)), 0, 360, 1, -1)
            shade = np.clip(colours[k].astype(np.float32) * rng.uniform(0.85, 1.1), 0, 255)
            img[mask > 0] = shade.astype(np.uint8)
            lab[mask > 0] = k
        images[i] = img
    return images, labels


def real_images(root: os.PathLike, split: str, variant: str, height: int, width: int,
                max_images: int = 0, val_fraction: float = 0.2,
                split_seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Real atWork photos of one split, resized like the node (INTER_AREA), with labels.

    ``max_images`` > 0 takes a class-stratified deterministic subset (every k-th photo).
    """
    from training.data.atwork import AtWorkSegmentation, list_samples, split_samples

    train, val = split_samples(list_samples(root), val_fraction, split_seed)
    samples = train if split == "train" else val
    if max_images and len(samples) > max_images:
        idx = np.linspace(0, len(samples) - 1, max_images).round().astype(int)
        samples = [samples[i] for i in idx]
    ds = AtWorkSegmentation(samples, variant, size=(height, width))
    pairs = [ds.load_numpy(i) for i in range(len(ds))]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


# --------------------------------------------------------------------------------------
# Runtimes
# --------------------------------------------------------------------------------------

class Runner:
    """One exported model in its runtime; feeds 0..255 RGB images as the manifest says."""

    path: Path
    input_hw: Tuple[int, int]
    input_dtype: np.dtype
    input_quant: Optional[Tuple[float, int]] = None
    output_quant: Optional[Tuple[float, int]] = None

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """HxWx3 uint8/float 0..255 RGB at the input size -> the graph's input tensor (1xHxWx3)."""
        x = np.asarray(image)
        if self.input_quant is not None:
            scale, zero = self.input_quant
            info = np.iinfo(self.input_dtype)
            q = np.rint(x.astype(np.float32) / scale) + zero
            return np.clip(q, info.min, info.max).astype(self.input_dtype)[None]
        return x.astype(np.float32, copy=False)[None]

    def run_raw(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def logits(self, image: np.ndarray) -> np.ndarray:
        """Float logits HxWxC (dequantised for int8 outputs)."""
        y = self.run_raw(self.prepare(image))[0]
        if self.output_quant is not None:
            scale, zero = self.output_quant
            return (y.astype(np.float32) - zero) * scale
        return y.astype(np.float32, copy=False)

    def labels(self, image: np.ndarray) -> np.ndarray:
        """Argmax label map HxW (on the raw output: int8 argmax equals float argmax)."""
        return np.argmax(self.run_raw(self.prepare(image))[0], axis=-1).astype(np.uint8)


class OnnxRunner(Runner):
    def __init__(self, path: os.PathLike, num_threads: int = 2):
        import onnxruntime as ort

        self.path = Path(path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = num_threads
        so.inter_op_num_threads = 1
        # No spin-waiting after a run: training.report times many sessions round-robin, and the
        # spinning pool of one session steals the cores of the next (the report measured the
        # pruned FCN8s at 8.8 ms with spinning, 4.0 ms without; seg-bench, alone: 3.3 ms).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = list(inp.shape)
        self.output_shape = list(self.session.get_outputs()[0].shape)
        self.input_hw = (int(inp.shape[1]), int(inp.shape[2]))
        self.input_dtype = np.dtype(np.float32)

    def run_raw(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]


class TFLiteRunner(Runner):
    def __init__(self, path: os.PathLike, num_threads: int = 2):
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        self.interpreter.allocate_tensors()
        inp, out = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if len(inp) != 1 or len(out) != 1:
            raise ExportCheckError(f"{path}: expected 1 input and 1 output, got {len(inp)}/{len(out)}")
        self._in, self._out = inp[0], out[0]
        self.input_shape = [int(v) for v in self._in["shape"]]
        self.output_shape = [int(v) for v in self._out["shape"]]
        self.input_hw = (self.input_shape[1], self.input_shape[2])
        self.input_dtype = np.dtype(self._in["dtype"])
        s, z = self._in.get("quantization", (0.0, 0))
        self.input_quant = (float(s), int(z)) if s else None
        s, z = self._out.get("quantization", (0.0, 0))
        self.output_quant = (float(s), int(z)) if s else None
        self.output_dtype = np.dtype(self._out["dtype"])

    def run_raw(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self._in["index"], x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._out["index"])


def open_runner(path: os.PathLike, num_threads: int = 2) -> Runner:
    """Runner for a ``.onnx`` or ``.tflite`` file."""
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        return OnnxRunner(path, num_threads)
    if suffix == ".tflite":
        return TFLiteRunner(path, num_threads)
    raise ValueError(f"unknown model file type {path}")


# --------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------

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


def _miou(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    from training.metrics import ConfusionMatrix, mean_iou

    cm = ConfusionMatrix(num_classes)
    cm.update(pred, labels)
    return float(mean_iou(cm.matrix))


def check_runner(runner: Runner, images: np.ndarray, labels: Optional[np.ndarray], ref_logits: np.ndarray,
                 num_classes: int, hw: Tuple[int, int]) -> Dict[str, Any]:
    """Load/shape/class checks, then argmax agreement, max-abs diff and mIoU vs PyTorch."""
    want = [1, hw[0], hw[1], num_classes]
    if [int(v) for v in runner.output_shape] != want:
        raise ExportCheckError(f"{runner.path.name}: output shape {runner.output_shape} != {want}")
    if tuple(runner.input_hw) != tuple(hw):
        raise ExportCheckError(f"{runner.path.name}: input size {runner.input_hw} != {hw}")
    preds, max_diff = [], 0.0
    for img, ref in zip(images, ref_logits):
        lg = runner.logits(img)
        if lg.shape != ref.shape:
            raise ExportCheckError(f"{runner.path.name}: logits {lg.shape} != {ref.shape}")
        max_diff = max(max_diff, float(np.abs(lg - ref).max()))
        preds.append(np.argmax(lg, -1))
    preds_a = np.stack(preds)
    ref_pred = np.argmax(ref_logits, -1)
    metrics: Dict[str, Any] = {
        "num_images": int(len(images)),
        "argmax_agreement": float((preds_a == ref_pred).mean()),
        "max_abs_diff": max_diff,
        "logit_range": float(np.abs(ref_logits).max()),
    }
    if labels is not None:
        metrics["miou"] = _miou(preds_a, labels, num_classes)
        metrics["miou_torch"] = _miou(ref_pred, labels, num_classes)
        metrics["miou_delta"] = metrics["miou"] - metrics["miou_torch"]
    return metrics


# --------------------------------------------------------------------------------------
# Exporters
# --------------------------------------------------------------------------------------

def export_onnx_fp32(wrapper: nn.Module, sample: torch.Tensor, path: os.PathLike, opset: int = 18,
                     exporter: str = "dynamo") -> str:
    """fp32 ONNX with static shapes; returns the exporter actually used."""
    kwargs = dict(input_names=["image"], output_names=["logits"], opset_version=opset)
    order = ["dynamo", "legacy"] if exporter == "dynamo" else ["legacy", "dynamo"]
    err: Optional[Exception] = None
    for which in order:
        try:
            torch.onnx.export(wrapper.eval(), (sample,), str(path), dynamo=(which == "dynamo"), **kwargs)
            _inline_external_data(Path(path))
            return which
        except Exception as e:  # noqa: BLE001 - try the other exporter
            log.warning("ONNX %s exporter failed: %s", which, e)
            err = e
    raise ExportCheckError(f"ONNX export failed: {err}")


def _inline_external_data(path: Path) -> None:
    """Keep one self-contained .onnx file (the dynamo exporter may write ``<file>.data``)."""
    data = path.with_name(path.name + ".data")
    if data.exists():
        import onnx

        onnx.save(onnx.load(str(path)), str(path), save_as_external_data=False)
        data.unlink()


def export_tflite_fp32(wrapper: nn.Module, sample: torch.Tensor, path: os.PathLike) -> None:
    import litert_torch

    litert_torch.convert(wrapper.eval(), (sample,)).export(str(path))


# --------------------------------------------------------------------------------------
# Config / provenance helpers
# --------------------------------------------------------------------------------------

@dataclass
class ExportSettings:
    formats: List[str]
    height: int
    width: int
    name_prefix: str
    entry_names: Dict[str, str] = field(default_factory=dict)
    opset: int = 18  # the dynamo exporter's own; 17 needs a down-conversion that may drop node metadata
    onnx_exporter: str = "dynamo"
    onnx_calibrate_method: str = "minmax"
    onnx_activation_type: str = "quint8"
    onnx_reduce_range: bool = True  # 7-bit weights: avoids int16 saturation on AVX2-only CPUs
    onnx_weight_type: str = "qint8"  # qint8 (u8s8 kernels) | quint8 (u8u8: no saturation, full 8 bit)
    tflite_int8_method: str = "aeq"  # aeq (ai-edge-quantizer static, int8 I/O) | pt2e
    tflite_float_regex: Optional[str] = None
    tflite_range_update: str = "minmax"  # minmax (global) | ema (ai-edge-quantizer default)
    keep_float: str = "auto"  # int8 models: auto (weight-sensitivity probe) | none | conv1,conv2,...
    keep_float_max: int = 6  # at most this many layers kept float by "auto" (each must cost >= 0.2 %)
    num_calib: int = 100
    num_val: int = 0  # 0 = all val images
    calib_source: str = ""
    val_source: str = ""
    class_variant: str = "full"
    threads: int = 2
    min_agreement_float: float = 0.99
    min_agreement_quant: float = 0.90
    max_abs_diff_fp32: float = 1e-2

    def entry_name(self, fmt: str) -> str:
        return self.entry_names.get(fmt, f"{self.name_prefix}_{fmt}")

    def file_name(self, fmt: str) -> str:
        ext = "onnx" if fmt.startswith("onnx") else "tflite"
        return f"{self.name_prefix}_{fmt}.{ext}"


def parse_entry_names(text: Optional[str]) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for part in filter(None, (text or "").split(",")):
        if "=" not in part:
            raise ValueError(f"--entry-names item {part!r} is not fmt=name")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _versions() -> Dict[str, str]:
    from importlib import metadata

    out = {}
    for pkg in ("torch", "onnx", "onnxruntime", "litert-torch", "ai-edge-litert", "ai-edge-quantizer",
                "torch-pruning", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def checkpoint_info(doc: Mapping[str, Any], model: nn.Module) -> Dict[str, Any]:
    """Variant / input size / pruning info of a checkpoint dict (training or pruned)."""
    from training.prune import PRUNED_FORMAT, _variant_for, count_params

    cfg = model.config
    info: Dict[str, Any] = {"model_config": dict(cfg), "num_params": count_params(model),
                            "pruned": doc.get("format") == PRUNED_FORMAT}
    num_classes = int(cfg["num_classes"])
    info["class_variant"] = doc.get("class_variant") or _variant_for(num_classes, doc)
    size = doc.get("input_size")
    tcfg = next((doc[k] for k in ("train_config", "config") if isinstance(doc.get(k), Mapping)), {})
    data = tcfg.get("data") if isinstance(tcfg.get("data"), Mapping) else {}
    info["split"] = {"val_fraction": float(data.get("val_fraction", 0.2)), "split_seed": int(data.get("split_seed", 0))}
    if size:
        info["input_size"] = [int(size[0]), int(size[1])]
    elif data.get("height") and data.get("width"):
        info["input_size"] = [int(data["height"]), int(data["width"])]
    extra = doc.get("extra") if isinstance(doc.get("extra"), Mapping) else {}
    if tcfg:
        # how the weights were made: the resolved training config, its command, where it stopped
        info["training"] = {"config": dict(tcfg), "command": extra.get("command"), "epoch": doc.get("epoch"),
                            "best_epoch": doc.get("best_epoch"), "best_val_miou": doc.get("best_metric")}
    if info["pruned"]:
        info["prune_step"] = doc.get("prune_step")
        info["source_checkpoint"] = doc.get("source_checkpoint")
    return info


def make_manifest_entry(settings: ExportSettings, fmt: str, path: Path, num_classes: int,
                        architecture: str, metrics: Dict[str, Any], provenance: Dict[str, Any],
                        runner: Runner):
    from seg_perception.manifest import TensorSpec, make_entry

    in_dtype = np.dtype(runner.input_dtype).name
    out_dtype = np.dtype(getattr(runner, "output_dtype", np.float32)).name
    h, w = settings.height, settings.width
    return make_entry(
        settings.entry_name(fmt), path, "onnx" if fmt.startswith("onnx") else "tflite", num_classes,
        class_variant=settings.class_variant,
        architecture=architecture,
        input=TensorSpec(layout="NHWC", height=h, width=w, color="RGB", mean=[0.0, 0.0, 0.0],
                         std=[1.0, 1.0, 1.0], dtype=in_dtype, kind="image"),
        output=TensorSpec(layout="NHWC", height=h, width=w, color="RGB", dtype=out_dtype, kind="logits"),
        metrics=metrics,
        provenance=provenance,
    )


def _write_sidecar(path: Path, doc: Mapping[str, Any]) -> Path:
    import yaml

    from seg_perception.plain import to_plain

    side = path.with_name(path.name + ".config.yaml")
    side.write_text(yaml.safe_dump(to_plain(dict(doc)), sort_keys=False), encoding="utf-8")
    return side


# --------------------------------------------------------------------------------------
# The export run
# --------------------------------------------------------------------------------------

def choose_float_layers(model: nn.Module, settings: ExportSettings, calib_images: np.ndarray) -> Dict[str, Any]:
    """``{"layers": [...], "sensitivity": [...]}``: convs the int8 models keep in float.

    ``auto`` probes each small-fan-in conv's int8 weight rounding in PyTorch and keeps the
    ``keep_float_max`` worst (see :func:`training.quantize.weight_sensitivity`).
    """
    from training.quantize import pick_float_layers, weight_sensitivity

    mode = settings.keep_float.strip()
    if mode in ("", "none"):
        return {"layers": [], "mode": "none"}
    if mode != "auto":
        names = [n.strip() for n in mode.split(",") if n.strip()]
        for n in names:
            model.get_submodule(n)  # typo -> AttributeError now, not a silent int8 layer
        return {"layers": names, "mode": "explicit"}
    t0 = time.time()
    sens = weight_sensitivity(model, calib_images)
    layers = pick_float_layers(sens, settings.keep_float_max)
    log.info("int8 weight sensitivity (%.0fs): keeping %s in float; top: %s", time.time() - t0, layers,
             [(n, round(v, 4)) for n, v in sens[:5]])
    return {"layers": layers, "mode": "auto", "sensitivity": [[n, round(v, 5)] for n, v in sens[:10]]}


def export_all(model: nn.Module, settings: ExportSettings, out_dir: os.PathLike,
               calib_images: np.ndarray, val_images: np.ndarray, val_labels: Optional[np.ndarray],
               provenance: Mapping[str, Any]) -> Dict[str, Dict[str, Any]]:
    """Export, check and record every format of ``settings``; returns ``{fmt: metrics}``.

    ``calib_images``/``val_images`` are uint8 NHWC at the export size. Raises
    :class:`ExportCheckError` after processing all formats if any of them failed.
    """
    from seg_perception.manifest import Manifest

    from training.quantize import (calibration_batches, compact_onnx, onnx_nodes_for, onnx_static_int8, tflite_dynamic,
                                   tflite_fp16, tflite_pt2e_int8, tflite_regex_for, tflite_static_int8)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    h, w = settings.height, settings.width
    num_classes = int(model.config["num_classes"])
    wrapper = NHWCExportWrapper(model.eval()).eval()
    sample = torch.from_numpy(val_images[0].astype(np.float32))[None] if len(val_images) else \
        torch.full((1, h, w, 3), 127.0)
    ref = torch_logits(wrapper, val_images)
    calib = calibration_batches(calib_images, h, w)
    manifest = Manifest.load(out)
    results: Dict[str, Dict[str, Any]] = {}
    failures: List[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="export_"))
    fp32 = {"onnx": None, "tflite": None}

    float_layers: Dict[str, Any] = {}

    def keep_float_layers() -> List[str]:
        """Sensitive layers to keep in float in int8 models (computed once)."""
        if "layers" not in float_layers:
            float_layers.update(choose_float_layers(model, settings, calib_images))
        return float_layers["layers"]

    def tflite_float_regex(src: Path) -> Optional[str]:
        """--tflite-float-regex, else a regex selecting the ops of the keep-float layers."""
        if settings.tflite_float_regex is not None or not keep_float_layers():
            return settings.tflite_float_regex
        regex, counts = tflite_regex_for(model, keep_float_layers(), src)
        float_layers["tflite_ops_matched"] = counts
        return regex

    def fp32_file(kind: str) -> Path:
        """The fp32 file the quantisers start from (exported once, kept if requested)."""
        if fp32[kind] is None:
            fmt = f"{kind}_fp32"
            p = out / settings.file_name(fmt) if fmt in settings.formats else tmp / f"fp32.{kind}"
            t0 = time.time()
            if kind == "onnx":
                used = export_onnx_fp32(wrapper, sample, p, settings.opset, settings.onnx_exporter)
                log.info("ONNX fp32 (%s exporter) in %.1fs", used, time.time() - t0)
            else:
                export_tflite_fp32(wrapper, sample, p)
                log.info("TFLite fp32 in %.1fs", time.time() - t0)
            fp32[kind] = p
        return fp32[kind]

    for fmt in settings.formats:
        path = out / settings.file_name(fmt)
        t0 = time.time()
        try:
            qinfo: Dict[str, Any] = {}
            if fmt in ("onnx_fp32", "tflite_fp32"):
                fp32_file(fmt.split("_")[0])
            elif fmt == "onnx_int8":
                src = fp32_file("onnx")
                excluded = sorted({n for ns in onnx_nodes_for(model, keep_float_layers(), src).values() for n in ns})
                qinfo = onnx_static_int8(src, path, calib, settings.onnx_calibrate_method,
                                         activation_type=settings.onnx_activation_type,
                                         exclude_nodes=excluded,
                                         reduce_range=settings.onnx_reduce_range,
                                         weight_type=settings.onnx_weight_type)
                qinfo["float_layers"] = dict(float_layers)
                compacted = compact_onnx(path)
                renamed = compacted.pop("node_names")
                qinfo["compacted"] = compacted
                # float-kept nodes under the names they carry in the written file
                qinfo["exclude_nodes"] = [renamed.get(n, n) for n in qinfo.get("exclude_nodes", [])]
            elif fmt == "tflite_fp16":
                qinfo = tflite_fp16(fp32_file("tflite"), path)
            elif fmt == "tflite_dynamic":
                src = fp32_file("tflite")
                qinfo = tflite_dynamic(src, path, tflite_float_regex(src))
                qinfo["float_layers"] = dict(float_layers)
            elif fmt == "tflite_int8" and settings.tflite_int8_method == "aeq":
                src = fp32_file("tflite")
                qinfo = tflite_static_int8(src, path, calib, tflite_float_regex(src), settings.threads,
                                           settings.tflite_range_update)
                qinfo["float_layers"] = dict(float_layers)
            elif fmt in ("tflite_int8", "tflite_int8_pt2e"):
                qinfo = tflite_pt2e_int8(wrapper, sample, path, calib)
            else:
                raise ValueError(f"unknown format {fmt!r}; valid: {ALL_FORMATS + EXTRA_FORMATS}")
            export_s = time.time() - t0
            runner = open_runner(path, settings.threads)
            metrics = check_runner(runner, val_images, val_labels, ref, num_classes, (h, w))
            metrics["export_s"] = round(export_s, 2)
            metrics["num_params"] = int(provenance.get("num_params", 0))
            if runner.input_quant is not None:
                metrics["input_quant"] = list(runner.input_quant)
            if runner.output_quant is not None:
                metrics["output_quant"] = list(runner.output_quant)
            _enforce(fmt, metrics, settings)
        except Exception as e:  # noqa: BLE001 - report every format, fail at the end
            log.error("%s: %s", fmt, e)
            failures.append(f"{fmt}: {e}")
            if path.exists():
                path.unlink()
            continue
        prov = {**provenance, "format": fmt, "export": {**asdict(settings), "quantization": qinfo}}
        entry = make_manifest_entry(settings, fmt, path, num_classes, model.config["name"], metrics, prov,
                                    runner)
        _write_sidecar(path, {"entry": settings.entry_name(fmt), "file": path.name, **prov,
                              "metrics": metrics})
        manifest.put(entry)
        manifest.save()
        results[fmt] = metrics
        log.info("%s -> %s (%.1f KB): agreement %.4f max|diff| %.4g mIoU %s (torch %s)", fmt, path.name,
                 path.stat().st_size / 1024, metrics["argmax_agreement"], metrics["max_abs_diff"],
                 _fmt(metrics.get("miou")), _fmt(metrics.get("miou_torch")))
    if failures:
        err = ExportCheckError("; ".join(failures))
        err.results = results  # type: ignore[attr-defined]  # what did pass is recorded
        raise err
    return results


def _fmt(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _enforce(fmt: str, m: Mapping[str, Any], s: ExportSettings) -> None:
    """Refuse files that disagree with PyTorch beyond what their number format explains."""
    if fmt in ("onnx_fp32", "tflite_fp32") and m["max_abs_diff"] > s.max_abs_diff_fp32 * max(1.0, m["logit_range"]):
        raise ExportCheckError(f"{fmt}: max |logit diff| {m['max_abs_diff']:.4g} vs PyTorch")
    floor = s.min_agreement_float if fmt in FLOAT_FORMATS else s.min_agreement_quant
    if m["argmax_agreement"] < floor:
        raise ExportCheckError(f"{fmt}: argmax agreement {m['argmax_agreement']:.4f} < {floor}")


def _image_sets(args: argparse.Namespace, variant: str, num_classes: int, h: int, w: int,
                split: Optional[Dict[str, Any]] = None):
    """(calib images, val images, val labels, calib source, val source)."""
    if args.synthetic_calib:
        ci, _ = synthetic_scenes(args.num_calib, h, w, num_classes, seed=1)
        vi, vl = synthetic_scenes(args.num_val or 16, h, w, num_classes, seed=2)
        return ci, vi, vl, "synthetic", "synthetic"
    if not args.calib_root:
        raise SystemExit("give --calib-root (real photos) or --synthetic-calib")
    split = split or {}  # the checkpoint's own train/val split: calibration never sees val photos
    ci, _ = real_images(args.calib_root, "train", variant, h, w, args.num_calib, **split)
    vroot = args.val_root or args.calib_root
    vi, vl = real_images(vroot, "val", variant, h, w, args.num_val, **split)
    return ci, vi, vl, f"{args.calib_root} (train split)", f"{vroot} (val split)"


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Export a checkpoint to ONNX/TFLite, check and record it")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--formats", default=",".join(ALL_FORMATS),
                    help=f"comma list of {', '.join(ALL_FORMATS + EXTRA_FORMATS)}")
    ap.add_argument("--out", default="models", help="models folder (holds manifest.json)")
    ap.add_argument("--name-prefix", help="file/entry name prefix (default: the architecture name)")
    ap.add_argument("--entry-names", help="fmt=name,... manifest entry names (default <prefix>_<fmt>)")
    ap.add_argument("--height", type=int)
    ap.add_argument("--width", type=int)
    ap.add_argument("--calib-root", help="atWork dataset root: calibration from the train split")
    ap.add_argument("--val-root", help="dataset root for validation images (default: --calib-root)")
    ap.add_argument("--synthetic-calib", action="store_true", help="synthetic blob scenes instead of photos")
    ap.add_argument("--num-calib", type=int, default=100)
    ap.add_argument("--num-val", type=int, default=0, help="validation images (0 = whole val split)")
    ap.add_argument("--opset", type=int, default=18,
                    help="ONNX opset (18: the dynamo exporter's native one; 17 is converted down and the "
                         "converter's fallback drops the name scopes used by --keep-float)")
    ap.add_argument("--onnx-exporter", choices=("dynamo", "legacy"), default="dynamo")
    ap.add_argument("--onnx-calibrate-method", choices=("minmax", "entropy", "percentile"), default="minmax")
    ap.add_argument("--onnx-activation-type", choices=("quint8", "qint8"), default="quint8")
    ap.add_argument("--onnx-weight-type", choices=("qint8", "quint8"), default="qint8")
    ap.add_argument("--onnx-full-range", action="store_true",
                    help="8-bit ONNX weights (default 7-bit reduce_range; full range only on VNNI CPUs)")
    ap.add_argument("--tflite-int8-method", choices=("aeq", "pt2e"), default="aeq")
    ap.add_argument("--tflite-float-regex", help="keep TFLite ops whose output name matches in float")
    ap.add_argument("--tflite-range-update", choices=("minmax", "ema"), default="minmax",
                    help="activation range calibration for tflite_int8 (aeq)")
    ap.add_argument("--keep-float", default="auto",
                    help="int8 models: layers kept in float: auto (weight-sensitivity probe), none, or conv names")
    ap.add_argument("--keep-float-max", type=int, default=6, help="most layers 'auto' keeps in float")
    ap.add_argument("--min-agreement", type=float, default=0.90, help="argmax agreement floor for int8")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    torch.set_num_threads(args.threads)

    from seg_perception.manifest import sha256_file

    from training.prune import load_any_model

    model, doc = load_any_model(args.checkpoint)
    info = checkpoint_info(doc, model)
    h, w = info.get("input_size", DEFAULT_HW)
    h, w = int(args.height or h), int(args.width or w)
    num_classes = int(model.config["num_classes"])
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    settings = ExportSettings(
        formats=formats, height=h, width=w, name_prefix=args.name_prefix or model.config["name"],
        entry_names=parse_entry_names(args.entry_names), opset=args.opset, onnx_exporter=args.onnx_exporter,
        onnx_calibrate_method=args.onnx_calibrate_method, onnx_activation_type=args.onnx_activation_type,
        onnx_reduce_range=not args.onnx_full_range,
        onnx_weight_type=args.onnx_weight_type,
        tflite_int8_method=args.tflite_int8_method, tflite_float_regex=args.tflite_float_regex,
        tflite_range_update=args.tflite_range_update, keep_float=args.keep_float,
        keep_float_max=args.keep_float_max,
        num_calib=args.num_calib, num_val=args.num_val, class_variant=info["class_variant"],
        threads=args.threads, min_agreement_quant=args.min_agreement)
    ci, vi, vl, csrc, vsrc = _image_sets(args, info["class_variant"], num_classes, h, w, info.get("split"))
    settings.calib_source, settings.val_source = csrc, vsrc
    provenance = {
        "command": "python -m training.export " + shlex.join(sys.argv[1:] if argv is None else list(argv)),
        "checkpoint": str(args.checkpoint),
        "checkpoint_sha256": sha256_file(args.checkpoint),
        "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        **info,
    }
    rc = 0
    try:
        results = export_all(model, settings, args.out, ci, vi, vl, provenance)
    except ExportCheckError as e:
        results, rc = getattr(e, "results", {}), 1
        print(f"FAILED (not recorded): {e}", file=sys.stderr)
    print(f"\n{'format':<18}{'entry':<34}{'KB':>9}{'agree':>8}{'max|d|':>9}{'mIoU':>8}{'dmIoU':>8}")
    for fmt, m in results.items():
        size = (Path(args.out) / settings.file_name(fmt)).stat().st_size / 1024
        print(f"{fmt:<18}{settings.entry_name(fmt):<34}{size:>9.1f}{m['argmax_agreement']:>8.4f}"
              f"{m['max_abs_diff']:>9.3g}{_fmt(m.get('miou')):>8}"
              f"{(m['miou_delta'] if 'miou_delta' in m else float('nan')):>+8.4f}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
