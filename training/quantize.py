"""Post-training quantisation of exported models (ONNX Runtime and LiteRT), used by :mod:`training.export`.

All functions take *runtime-ready* calibration images: NHWC float32 RGB pixels 0..255 at the
model's input size, resized exactly like the node does (``cv2.INTER_AREA``), because the
exported graphs normalise internally (see :class:`training.export.NHWCExportWrapper`).

What is used and why:

* ONNX int8: ``quantize_static`` in QDQ format, per-channel symmetric int8 weights and
  *unsigned* int8 activations (QUInt8/QInt8 measured ~1.7x faster than QInt8/QInt8 on x86
  with ORT's QLinearConv kernels). ``quantize_dynamic`` is avoided: it emits ConvInteger,
  which is slow and poorly supported for conv nets.
* TFLite fp16: ai-edge-quantizer's ``float_casting`` recipe on the fp32 file (weights stored
  as fp16 and dequantised at load; same accuracy, half the size, same CPU speed).
* TFLite dynamic range: ai-edge-quantizer ``dynamic_wi8_afp32`` (int8 weights, activations
  quantised on the fly by the kernels).
* TFLite int8 (default): ai-edge-quantizer ``static_wi8_ai8`` on the fp32 file. It quantises
  every op XNNPACK has an int8 kernel for (incl. residual adds, concatenations, resizes) and
  the graph input/output become int8 tensors. The input range is pinned to 0..255 (scale 1,
  zero point -128: the node feeds ``px - 128``) and activation ranges are global min/max over
  the calibration images (the quantizer's default EMA clipped the logits).
* TFLite int8 via PT2E (``pt2e``): torchao ``prepare_pt2e``/``convert_pt2e`` with litert-torch's
  ``PT2EQuantizer``; it only annotates conv/linear/add/pool patterns, so resizes, concats,
  ReLU6 and the normalisation stay float with extra (de)quantise ops, and the graph keeps
  float input/output. Kept for comparison.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np

log = logging.getLogger(__name__)


def range_anchor(height: int, width: int) -> np.ndarray:
    """A 1xHxWx3 float32 image spanning exactly 0..255 in every channel (a horizontal ramp).

    Added to every calibration set so the quantised *input* tensor gets scale 1.0 and zero point
    -128 (int8) / 0 (uint8): uint8 camera pixels then map to the int8 input losslessly.
    """
    ramp = np.linspace(0.0, 255.0, width, dtype=np.float32)
    img = np.broadcast_to(ramp[None, :, None], (height, width, 3)).copy()
    img[0, 0] = 0.0
    img[-1, -1] = 255.0
    return img[None]


# --------------------------------------------------------------------------------------
# ONNX Runtime
# --------------------------------------------------------------------------------------

class _NHWCReader:
    """onnxruntime ``CalibrationDataReader`` over a list of 1xHxWx3 float32 arrays."""

    def __init__(self, input_name: str, images: Sequence[np.ndarray]):
        self.input_name = input_name
        self._images = list(images)
        self._it: Iterator[np.ndarray] = iter(self._images)

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        x = next(self._it, None)
        return None if x is None else {self.input_name: np.ascontiguousarray(x, dtype=np.float32)}

    def rewind(self) -> None:
        self._it = iter(self._images)

    def __len__(self) -> int:
        return len(self._images)


def onnx_static_int8(
    fp32_path: os.PathLike,
    out_path: os.PathLike,
    calib_images: Sequence[np.ndarray],
    calibrate_method: str = "minmax",
    per_channel: bool = True,
    activation_type: str = "quint8",
    exclude_nodes: Sequence[str] = (),
    preprocess: bool = True,
    reduce_range: bool = True,
    weight_type: str = "qint8",
) -> Dict[str, Any]:
    """Static QDQ int8 ONNX model; returns the settings used (for provenance).

    ``reduce_range`` (7-bit weights) is on by default: on x86 CPUs without VNNI (AVX2 only, like
    the dev machine) ORT's u8 x s8 kernels sum pairs of products in saturating int16, which
    with full 8-bit weights flipped ~2 % of the argmax pixels of a small DeepLabV3+ (agreement
    0.980 -> 0.994 with reduce_range; the un-fused QDQ reference gives 0.994 either way).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    types = {"quint8": QuantType.QUInt8, "qint8": QuantType.QInt8}
    act, wt = types[activation_type], types[weight_type]
    src = Path(fp32_path)
    with tempfile.TemporaryDirectory() as tmp:
        model_in = src
        if preprocess:
            try:
                from onnxruntime.quantization.shape_inference import quant_pre_process

                pre = Path(tmp) / "pre.onnx"
                quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
                model_in = pre
            except Exception as e:  # noqa: BLE001 - the raw model quantises too
                log.warning("quant_pre_process failed (%s); quantising the raw export", e)
        input_name = onnx.load(str(model_in), load_external_data=False).graph.input[0].name
        reader = _NHWCReader(input_name, list(calib_images))
        extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
        if calibrate_method == "percentile":
            extra["CalibPercentile"] = 99.999
        quantize_static(
            str(model_in), str(out_path), reader,
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            reduce_range=reduce_range,
            activation_type=act,
            weight_type=wt,
            calibrate_method=methods[calibrate_method],
            nodes_to_exclude=list(exclude_nodes) or None,
            extra_options=extra,
        )
    return {"method": "onnxruntime.quantize_static", "quant_format": "QDQ", "per_channel": per_channel,
            "activation_type": activation_type, "weight_type": weight_type, "calibrate_method": calibrate_method,
            "num_calib_images": len(calib_images), "exclude_nodes": list(exclude_nodes),
            "pre_process": preprocess, "reduce_range": reduce_range}


# --------------------------------------------------------------------------------------
# LiteRT (ai-edge-quantizer on the fp32 .tflite)
# --------------------------------------------------------------------------------------

def _signature_io(tflite_path: os.PathLike) -> tuple:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(tflite_path))
    sigs = it.get_signature_list()
    key = next(iter(sigs))
    return key, sigs[key]["inputs"][0]


def _export_result(result: Any, out_path: os.PathLike) -> None:
    p = Path(out_path)
    if p.exists():
        p.unlink()
    result.export_model(str(p), overwrite=True)


def tflite_fp16(fp32_path: os.PathLike, out_path: os.PathLike) -> Dict[str, Any]:
    """fp16 weights (float_casting recipe); compute stays fp32 on CPU."""
    from ai_edge_quantizer import qtyping, quantizer
    from ai_edge_quantizer.recipe_manager import RecipeManager

    rm = RecipeManager()
    rm.add_quantization_config(
        ".*", qtyping.TFLOperationName.ALL_SUPPORTED,
        qtyping.OpQuantizationConfig(
            weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
            compute_precision=qtyping.ComputePrecision.FLOAT,
            explicit_dequantize=True,
        ),
        algorithm_key="float_casting",
    )
    q = quantizer.Quantizer(str(fp32_path), rm.get_quantization_recipe())
    _export_result(q.quantize(enable_progress_report=False), out_path)
    return {"method": "ai_edge_quantizer.float_casting", "weights": "float16"}


def tflite_dynamic(fp32_path: os.PathLike, out_path: os.PathLike) -> Dict[str, Any]:
    """Dynamic-range int8: per-channel int8 weights, activations quantised at run time."""
    from ai_edge_quantizer import quantizer, recipe

    q = quantizer.Quantizer(str(fp32_path), recipe.dynamic_wi8_afp32())
    _export_result(q.quantize(enable_progress_report=False), out_path)
    return {"method": "ai_edge_quantizer.dynamic_wi8_afp32"}


def _global_minmax_update(qsv: Dict[str, Any], new: Dict[str, Any]) -> Dict[str, Any]:
    """Running min/max over all calibration images (ai-edge-quantizer's default is an EMA with
    factor 0.95, which lets the last images dominate and clips the logits of the others)."""
    if not qsv:
        return new
    return {**qsv, "min": np.minimum(qsv["min"], new["min"]), "max": np.maximum(qsv["max"], new["max"])}


def tflite_static_int8(
    fp32_path: os.PathLike,
    out_path: os.PathLike,
    calib_images: Sequence[np.ndarray],
    float_regex: Optional[str] = None,
    num_threads: int = 2,
    range_update: str = "minmax",
    input_range: Optional[tuple] = (0.0, 255.0),
) -> Dict[str, Any]:
    """Full int8 (weights per-channel symmetric, activations asymmetric per-tensor) with int8 I/O.

    ``float_regex`` keeps ops whose output tensor name matches it in float (sensitive layers).
    ``range_update``: ``minmax`` (global min/max over the calibration set) or ``ema`` (the
    quantizer's default moving average). ``input_range`` pins the graph input's range so the int8
    input has scale 1 and zero point -128: uint8 pixels map to it exactly (``px - 128``).
    """
    from ai_edge_quantizer import calibrator, qtyping, quantizer, recipe
    from ai_edge_quantizer.recipe_manager import RecipeManager

    rcp = recipe.static_wi8_ai8()
    rm = RecipeManager()
    rm.load_quantization_recipe(rcp)
    if float_regex:
        rm.add_quantization_config(float_regex, qtyping.TFLOperationName.ALL_SUPPORTED,
                                   algorithm_key="no_quantize")
    key, input_name = _signature_io(fp32_path)
    data = {key: [{input_name: np.ascontiguousarray(x, np.float32)} for x in calib_images]}
    model_bytes = Path(fp32_path).read_bytes()
    kwargs = {"qsv_update_func": _global_minmax_update} if range_update == "minmax" else {}
    with warnings.catch_warnings():  # "preserve_all_tensors is for debugging": it is how it calibrates
        warnings.simplefilter("ignore", UserWarning)
        cal = calibrator.Calibrator(model_bytes, num_threads=num_threads, **kwargs)
    with contextlib.redirect_stderr(io.StringIO()):  # its per-op tqdm bar floods CLI logs
        cal.calibrate(data, rm)
    qsvs = cal.get_model_qsvs()
    if input_range is not None:
        in_tensor = _input_tensor_name(fp32_path)
        if in_tensor in qsvs:
            qsvs[in_tensor] = {**qsvs[in_tensor], "min": np.array([float(input_range[0])], np.float32),
                               "max": np.array([float(input_range[1])], np.float32)}
    q = quantizer.Quantizer(model_bytes, rm.get_quantization_recipe())
    _export_result(q.quantize(qsvs, enable_progress_report=False), out_path)
    return {"method": "ai_edge_quantizer.static_wi8_ai8", "weights": "int8 per-channel symmetric",
            "activations": f"int8 per-tensor asymmetric ({range_update} calibration)",
            "num_calib_images": len(calib_images), "float_regex": float_regex,
            "input_range": list(input_range) if input_range else None}


def _input_tensor_name(tflite_path: os.PathLike) -> str:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(tflite_path)).get_input_details()[0]["name"]


# --------------------------------------------------------------------------------------
# LiteRT via PT2E (litert-torch)
# --------------------------------------------------------------------------------------

def tflite_pt2e_int8(module: Any, sample: Any, out_path: os.PathLike, calib_images: Sequence[np.ndarray],
                     per_channel: bool = True) -> Dict[str, Any]:
    """PT2E static int8 through litert-torch (float graph input/output)."""
    import litert_torch
    import torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel))
    exported = torch.export.export(module.eval(), (sample,)).module()
    prepared = prepare_pt2e(exported, quantizer)
    with torch.no_grad():
        for x in calib_images:
            prepared(torch.from_numpy(np.ascontiguousarray(x, np.float32)))
    converted = convert_pt2e(prepared, fold_quantize=False)
    try:
        from torchao.quantization.pt2e import move_exported_model_to_eval

        move_exported_model_to_eval(converted)
    except ImportError:  # older torchao: only litert-torch's training-mode warning is affected
        pass
    converted.training = False
    edge = litert_torch.convert(converted, (sample,), quant_config=QuantConfig(pt2e_quantizer=quantizer))
    edge.export(str(out_path))
    return {"method": "litert_torch PT2E (torchao prepare_pt2e/convert_pt2e)", "per_channel": per_channel,
            "num_calib_images": len(calib_images)}


def calibration_batches(images: Iterable[np.ndarray], height: int, width: int,
                        anchor: bool = False) -> List[np.ndarray]:
    """1xHxWx3 float32 arrays (optionally plus the 0..255 range anchor, see :func:`range_anchor`)."""
    out = [np.asarray(x, np.float32).reshape(1, height, width, 3) for x in images]
    if anchor:
        out.append(range_anchor(height, width))
    return out
