"""How each deployment format is made: the export settings, the NHWC graph wrapper, the fp32
exporters, and :data:`EXPORTERS`, the table from format name to the function that writes it."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .checks import FLOAT_FORMATS, ExportCheckError

log = logging.getLogger(__name__)

ALL_FORMATS = ("onnx_fp32", "onnx_int8", "tflite_fp32", "tflite_fp16", "tflite_dynamic", "tflite_int8")
EXTRA_FORMATS = ("tflite_int8_pt2e",)  # for comparison only (float I/O, fewer int8 ops)
DEFAULT_HW = (256, 320)
PIXEL_MEAN = 127.5
PIXEL_STD = 127.5

__all__ = [
    "ALL_FORMATS",
    "DEFAULT_HW",
    "EXPORTERS",
    "EXTRA_FORMATS",
    "FLOAT_FORMATS",
    "ExportContext",
    "ExportSettings",
    "NHWCExportWrapper",
    "export_onnx_fp32",
    "export_tflite_fp32",
    "parse_entry_names",
]


@dataclass
class ExportSettings:
    formats: list[str]
    height: int
    width: int
    name_prefix: str
    entry_names: dict[str, str] = field(default_factory=dict)
    opset: int = 18  # the dynamo exporter's own; 17 needs a down-conversion that may drop node metadata
    onnx_exporter: str = "dynamo"
    onnx_calibrate_method: str = "minmax"
    onnx_activation_type: str = "quint8"
    onnx_reduce_range: bool = True  # 7-bit weights: avoids int16 saturation on AVX2-only CPUs
    onnx_weight_type: str = "qint8"  # qint8 (u8s8 kernels) | quint8 (u8u8: no saturation, full 8 bit)
    # op types onnx_int8 quantises; empty = every type onnxruntime quantises. ["Conv", "ConvTranspose"]
    # keeps the batch norms, PReLUs, sums and concatenations between convs in float (ESPNet: each
    # re-quantisation of those rounds the activations again: 2.5 mIoU points lost, no speed gained)
    onnx_op_types: list[str] = field(default_factory=list)
    tflite_int8_method: str = "aeq"  # aeq (ai-edge-quantizer static, int8 I/O) | pt2e
    tflite_float_regex: str | None = None
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
    # "model": the graph ends at the model's own logit grid (DeepLab stride 4, FCN stride 8) and the
    # node upsamples (bilinear, only the classes present): no C-channel full-size resize in the graph;
    # "input": logits resized to the input size inside the graph (files exported before this option)
    logits_grid: str = "model"

    def entry_name(self, fmt: str) -> str:
        return self.entry_names.get(fmt, f"{self.name_prefix}_{fmt}")

    def file_name(self, fmt: str) -> str:
        ext = "onnx" if fmt.startswith("onnx") else "tflite"
        return f"{self.name_prefix}_{fmt}.{ext}"


def parse_entry_names(text: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in filter(None, (text or "").split(",")):
        if "=" not in part:
            raise ValueError(f"--entry-names item {part!r} is not fmt=name")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


# --------------------------------------------------------------------------------------
# Graph wrapper and fp32 exporters
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


def export_onnx_fp32(
    wrapper: nn.Module, sample: torch.Tensor, path: os.PathLike, opset: int = 18, exporter: str = "dynamo"
) -> str:
    """fp32 ONNX with static shapes; returns the exporter actually used."""
    kwargs = dict(input_names=["image"], output_names=["logits"], opset_version=opset)
    order = ["dynamo", "legacy"] if exporter == "dynamo" else ["legacy", "dynamo"]
    err: Exception | None = None
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
# One function per format
# --------------------------------------------------------------------------------------


class ExportContext:
    """What the per-format exporters share, each piece made once: the model's NHWC wrapper, the
    calibration batches, the fp32 file of each runtime the quantisers start from, and the layers
    int8 models keep in float. Use as a context manager: its scratch folder goes at the end."""

    def __init__(
        self,
        model: nn.Module,
        settings: ExportSettings,
        out: os.PathLike,
        calib_images: np.ndarray,
        sample: torch.Tensor,
    ):
        from training.quantize import calibration_batches

        self.model = model
        self.settings = settings
        self.out = Path(out)
        self.calib_images = calib_images
        self.calib = calibration_batches(calib_images, settings.height, settings.width)
        self.sample = sample
        if settings.logits_grid not in ("model", "input"):
            raise ValueError(f"logits_grid must be 'model' or 'input', got {settings.logits_grid!r}")
        if hasattr(model, "full_resolution_logits"):
            model.full_resolution_logits = settings.logits_grid == "input"
        self.wrapper = NHWCExportWrapper(model.eval()).eval()
        self.float_layers: dict[str, Any] = {}
        self._fp32: dict[str, Path] = {}
        self._tmp = Path(tempfile.mkdtemp(prefix="export_"))

    def __enter__(self) -> ExportContext:
        return self

    def __exit__(self, *exc: Any) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    def fp32_file(self, runtime: str) -> Path:
        """The fp32 ``onnx`` / ``tflite`` file (exported once; into ``out`` when it is a requested format)."""
        if runtime not in self._fp32:
            fmt = f"{runtime}_fp32"
            s = self.settings
            p = self.out / s.file_name(fmt) if fmt in s.formats else self._tmp / f"fp32.{runtime}"
            t0 = time.time()
            if runtime == "onnx":
                used = export_onnx_fp32(self.wrapper, self.sample, p, s.opset, s.onnx_exporter)
                log.info("ONNX fp32 (%s exporter) in %.1fs", used, time.time() - t0)
            else:
                export_tflite_fp32(self.wrapper, self.sample, p)
                log.info("TFLite fp32 in %.1fs", time.time() - t0)
            self._fp32[runtime] = p
        return self._fp32[runtime]

    def keep_float_layers(self) -> list[str]:
        """Sensitive layers int8 models keep in float (chosen once, see :func:`choose_float_layers`)."""
        if "layers" not in self.float_layers:
            self.float_layers.update(choose_float_layers(self.model, self.settings, self.calib_images))
        return self.float_layers["layers"]

    def tflite_float_regex(self, src: Path) -> str | None:
        """--tflite-float-regex, else a regex selecting the LiteRT ops of the keep-float layers."""
        from training.quantize import tflite_regex_for

        if self.settings.tflite_float_regex is not None or not self.keep_float_layers():
            return self.settings.tflite_float_regex
        regex, counts = tflite_regex_for(self.model, self.keep_float_layers(), src)
        self.float_layers["tflite_ops_matched"] = counts
        return regex


def choose_float_layers(model: nn.Module, settings: ExportSettings, calib_images: np.ndarray) -> dict[str, Any]:
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
    log.info(
        "int8 weight sensitivity (%.0fs): keeping %s in float; top: %s",
        time.time() - t0,
        layers,
        [(n, round(v, 4)) for n, v in sens[:5]],
    )
    return {"layers": layers, "mode": "auto", "sensitivity": [[n, round(v, 5)] for n, v in sens[:10]]}


Exporter = Callable[[ExportContext, Path], dict[str, Any]]  # (context, file to write) -> quantisation info


def _onnx_fp32(ctx: ExportContext, path: Path) -> dict[str, Any]:
    ctx.fp32_file("onnx")
    return {}


def _tflite_fp32(ctx: ExportContext, path: Path) -> dict[str, Any]:
    ctx.fp32_file("tflite")
    return {}


def _onnx_int8(ctx: ExportContext, path: Path) -> dict[str, Any]:
    from training.quantize import compact_onnx, onnx_nodes_for, onnx_static_int8

    s = ctx.settings
    src = ctx.fp32_file("onnx")
    check_op_types(src, s.onnx_op_types)
    excluded = sorted({n for ns in onnx_nodes_for(ctx.model, ctx.keep_float_layers(), src).values() for n in ns})
    info = onnx_static_int8(
        src,
        path,
        ctx.calib,
        s.onnx_calibrate_method,
        activation_type=s.onnx_activation_type,
        exclude_nodes=excluded,
        reduce_range=s.onnx_reduce_range,
        weight_type=s.onnx_weight_type,
        op_types=s.onnx_op_types,
    )
    info["float_layers"] = dict(ctx.float_layers)
    compacted = compact_onnx(path)
    renamed = compacted.pop("node_names")
    info["compacted"] = compacted
    # float-kept nodes under the names they carry in the written file
    info["exclude_nodes"] = [renamed.get(n, n) for n in info.get("exclude_nodes", [])]
    return info


def check_op_types(onnx_path: Path, op_types: Sequence[str]) -> None:
    """Refuse a list none of whose op types the graph has (onnxruntime would silently quantise
    nothing); warn about the ones it lacks (a generic list such as Conv,ConvTranspose)."""
    import onnx

    if not op_types:
        return
    present = sorted({n.op_type for n in onnx.load(str(onnx_path), load_external_data=False).graph.node})
    missing = [t for t in op_types if t not in present]
    if len(missing) == len(op_types):
        raise ValueError(f"--onnx-op-types {missing}: none is in the graph; its op types: {', '.join(present)}")
    if missing:
        log.warning("--onnx-op-types %s not in the graph (nothing of them to quantise)", missing)


def _tflite_fp16(ctx: ExportContext, path: Path) -> dict[str, Any]:
    from training.quantize import tflite_fp16

    return tflite_fp16(ctx.fp32_file("tflite"), path)


def _tflite_dynamic(ctx: ExportContext, path: Path) -> dict[str, Any]:
    from training.quantize import tflite_dynamic

    src = ctx.fp32_file("tflite")
    info = tflite_dynamic(src, path, ctx.tflite_float_regex(src))
    info["float_layers"] = dict(ctx.float_layers)
    return info


def _tflite_int8(ctx: ExportContext, path: Path) -> dict[str, Any]:
    """Full int8 with the ai-edge-quantizer (``aeq``, int8 I/O), or PT2E (``--tflite-int8-method pt2e``)."""
    from training.quantize import tflite_static_int8

    s = ctx.settings
    if s.tflite_int8_method != "aeq":
        return _tflite_int8_pt2e(ctx, path)
    src = ctx.fp32_file("tflite")
    info = tflite_static_int8(src, path, ctx.calib, ctx.tflite_float_regex(src), s.threads, s.tflite_range_update)
    info["float_layers"] = dict(ctx.float_layers)
    return info


def _tflite_int8_pt2e(ctx: ExportContext, path: Path) -> dict[str, Any]:
    from training.quantize import tflite_pt2e_int8

    return tflite_pt2e_int8(ctx.wrapper, ctx.sample, path, ctx.calib)


EXPORTERS: dict[str, Exporter] = {
    "onnx_fp32": _onnx_fp32,
    "onnx_int8": _onnx_int8,
    "tflite_fp32": _tflite_fp32,
    "tflite_fp16": _tflite_fp16,
    "tflite_dynamic": _tflite_dynamic,
    "tflite_int8": _tflite_int8,
    "tflite_int8_pt2e": _tflite_int8_pt2e,
}
