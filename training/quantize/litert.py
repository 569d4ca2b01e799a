"""LiteRT (TFLite) post-training quantisation of the fp32 ``.tflite`` file, and the ops of the layers
kept in float.

* fp16: ai-edge-quantizer's ``float_casting`` recipe (fp16 weights, fp32 compute on CPU).
* dynamic range: ``dynamic_wi8_afp32`` (int8 weights, activations quantised on the fly).
* int8 (the default backend): ``static_wi8_ai8``; every op XNNPACK has an int8 kernel for is
  quantised and the graph input/output become int8. The input range is pinned to 0..255 (scale 1,
  zero point -128: the node feeds ``px - 128``) and activation ranges are global min/max over the
  calibration images.
* int8 via PT2E (torchao + litert-torch), kept for comparison: float graph input/output.

Why each choice, with the measurements: docs/architecture.md.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .sensitivity import exporter_path, fused_scope

log = logging.getLogger(__name__)


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


def tflite_fp16(fp32_path: os.PathLike, out_path: os.PathLike) -> dict[str, Any]:
    """fp16 weights (float_casting recipe); compute stays fp32 on CPU."""
    from ai_edge_quantizer import qtyping, quantizer
    from ai_edge_quantizer.recipe_manager import RecipeManager

    rm = RecipeManager()
    rm.add_quantization_config(
        ".*",
        qtyping.TFLOperationName.ALL_SUPPORTED,
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


def tflite_dynamic(fp32_path: os.PathLike, out_path: os.PathLike, float_regex: str | None = None) -> dict[str, Any]:
    """Dynamic-range int8: per-channel int8 weights, activations quantised at run time
    (``float_regex``: ops left float, as for :func:`tflite_static_int8`)."""
    from ai_edge_quantizer import qtyping, quantizer, recipe

    q = quantizer.Quantizer(str(fp32_path), recipe.dynamic_wi8_afp32())
    if float_regex:
        q.update_quantization_recipe(
            regex=float_regex, operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, algorithm_key="no_quantize"
        )
    _export_result(q.quantize(enable_progress_report=False), out_path)
    return {"method": "ai_edge_quantizer.dynamic_wi8_afp32", "float_regex": float_regex}


def _global_minmax_update(qsv: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Running min/max over all calibration images (ai-edge-quantizer's default is an EMA with
    factor 0.95, which lets the last images dominate and clips the logits of the others)."""
    if not qsv:
        return new
    return {**qsv, "min": np.minimum(qsv["min"], new["min"]), "max": np.maximum(qsv["max"], new["max"])}


def tflite_static_int8(
    fp32_path: os.PathLike,
    out_path: os.PathLike,
    calib_images: Sequence[np.ndarray],
    float_regex: str | None = None,
    num_threads: int = 2,
    range_update: str = "minmax",
    input_range: tuple | None = (0.0, 255.0),
) -> dict[str, Any]:
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
        rm.add_quantization_config(float_regex, qtyping.TFLOperationName.ALL_SUPPORTED, algorithm_key="no_quantize")
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
            qsvs[in_tensor] = {
                **qsvs[in_tensor],
                "min": np.array([float(input_range[0])], np.float32),
                "max": np.array([float(input_range[1])], np.float32),
            }
    q = quantizer.Quantizer(model_bytes, rm.get_quantization_recipe())
    _export_result(q.quantize(qsvs, enable_progress_report=False), out_path)
    return {
        "method": "ai_edge_quantizer.static_wi8_ai8",
        "weights": "int8 per-channel symmetric",
        "activations": f"int8 per-tensor asymmetric ({range_update} calibration)",
        "num_calib_images": len(calib_images),
        "float_regex": float_regex,
        "input_range": list(input_range) if input_range else None,
    }


def _input_tensor_name(tflite_path: os.PathLike) -> str:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(tflite_path)).get_input_details()[0]["name"]


def tflite_pt2e_int8(
    module: Any, sample: Any, out_path: os.PathLike, calib_images: Sequence[np.ndarray], per_channel: bool = True
) -> dict[str, Any]:
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
    return {
        "method": "litert_torch PT2E (torchao prepare_pt2e/convert_pt2e)",
        "per_channel": per_channel,
        "num_calib_images": len(calib_images),
    }


def tflite_regex_for(
    model: Any, conv_names: Sequence[str], tflite_path: os.PathLike, wrapper_attr: str = "model"
) -> tuple[str | None, dict[str, int]]:
    """Regex over LiteRT op output names selecting the ops of ``conv_names`` (litert-torch names
    tensors ``...Class_attr/Class_attr/...``), and how many op outputs each matched."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(tflite_path))
    names = {t["index"]: t["name"] for t in it.get_tensor_details()}
    outputs = [names[o["outputs"][0]] for o in it._get_ops_details() if len(o["outputs"])]
    patterns, counts = [], {}
    for conv in conv_names:
        chain = [wrapper_attr] + exporter_path(model, fused_scope(model, conv))
        pat = ".*".join(f"_{re.escape(a)}(?:/|;|$)" for a in chain)
        counts[conv] = sum(1 for n in outputs if re.search(pat, n))
        if counts[conv]:
            patterns.append(f"(?:{pat})")
        else:
            log.warning("no LiteRT op matches layer %s (pattern %s): it stays int8", conv, pat)
    return ("|".join(patterns) or None), counts
