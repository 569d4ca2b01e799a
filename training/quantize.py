"""Post-training quantisation of exported models (ONNX Runtime and LiteRT), used by :mod:`training.export`.

All functions take *runtime-ready* calibration images: NHWC float32 RGB pixels 0..255 at the
model's input size, resized exactly like the node does (``cv2.INTER_AREA``), because the
exported graphs normalise internally (see :class:`training.export.NHWCExportWrapper`).

What is used and why:

* ONNX int8: ``quantize_static`` in QDQ format, per-channel symmetric int8 weights and
  *unsigned* int8 activations (QUInt8/QInt8 measured ~1.7x faster than QInt8/QInt8 on x86
  with ORT's QLinearConv kernels), 7-bit weights (``reduce_range``: without it the u8s8
  kernels' int16 saturation on AVX2-only CPUs dropped the DeepLabV3+ agreement to 63 %;
  ``weight_type="quint8"`` with full range is the accurate-but-slower alternative).
  ``quantize_dynamic`` is avoided: it emits ConvInteger, slow and poorly supported for conv nets.
* TFLite fp16: ai-edge-quantizer's ``float_casting`` recipe on the fp32 file (weights stored
  as fp16 and dequantised at load; same accuracy, half the size, same CPU speed).
* TFLite dynamic range: ai-edge-quantizer ``dynamic_wi8_afp32`` (int8 weights, activations
  quantised on the fly by the kernels); ~1.7x slower than fp32 under XNNPACK on x86.
* TFLite int8 (default): ai-edge-quantizer ``static_wi8_ai8`` on the fp32 file. It quantises
  every op XNNPACK has an int8 kernel for (incl. residual adds, concatenations, resizes) and
  the graph input/output become int8 tensors. The input range is pinned to 0..255 (scale 1,
  zero point -128: the node feeds ``px - 128``) and activation ranges are global min/max over
  the calibration images (the quantizer's default EMA clipped the logits).
* Sensitive layers stay float (``keep_float=auto``): :func:`weight_sensitivity` int8-rounds the
  BN-folded weights of one small-fan-in conv at a time in PyTorch and measures the argmax
  agreement lost; the worst few are excluded from quantisation (ONNX ``nodes_to_exclude`` via the
  dynamo exporter's name scopes, LiteRT ops via a regex over litert-torch's tensor names). On a
  CPU-trained DeepLabV3+ MobileNetV2-0.5 (val mIoU 39.0) this took the LiteRT int8 model from
  98.60 % agreement / -3.4 mIoU to 99.38 % / +0.6 (6 layers float: MobileNetV2's first expand /
  project / depthwise convs with 8-16 inputs), dynamic range from 98.66 % / -3.5 to 99.50 % /
  +0.1 and ONNX int8 from 97.87 % / -6.0 to 98.75 % / -2.0, at no measurable latency cost.
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
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

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


def compact_onnx(path: os.PathLike) -> Dict[str, Any]:
    """Strip what only helps debugging from an ONNX file, in place: exporter stack traces
    (node doc strings / metadata), ``value_info`` shapes, and long tensor/node names (renamed
    ``t<i>``/``n<i>``; graph inputs and outputs keep theirs). The computation is unchanged.
    For a small net these bytes matter: ESPNet int8 was 0.93 MB, of which 0.40 MB weights.
    Returns the sizes and ``node_names`` (old -> new), to translate recorded node names."""
    import onnx

    path = Path(path)
    before = path.stat().st_size
    m = onnx.load(str(path))
    g = m.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for nd in g.node for a in nd.attribute):
        return {"bytes_before": before, "bytes_after": before, "node_names": {}}  # subgraphs: leave alone
    keep = {v.name for v in g.input} | {v.name for v in g.output}
    names: Dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return names.setdefault(name, f"t{len(names)}")

    for t in g.initializer:
        t.name = short(t.name)
        t.doc_string = ""
        del t.metadata_props[:]
    node_names: Dict[str, str] = {}
    for i, nd in enumerate(g.node):
        if nd.name:
            node_names[nd.name] = f"n{i}"
        nd.name = f"n{i}"
        nd.doc_string = ""
        del nd.metadata_props[:]
        nd.input[:] = [short(x) for x in nd.input]
        nd.output[:] = [short(x) for x in nd.output]
    del g.value_info[:]
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return {"bytes_before": before, "bytes_after": path.stat().st_size, "node_names": node_names}


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


def tflite_dynamic(fp32_path: os.PathLike, out_path: os.PathLike, float_regex: Optional[str] = None
                   ) -> Dict[str, Any]:
    """Dynamic-range int8: per-channel int8 weights, activations quantised at run time
    (``float_regex``: ops left float, as for :func:`tflite_static_int8`)."""
    from ai_edge_quantizer import qtyping, quantizer, recipe

    q = quantizer.Quantizer(str(fp32_path), recipe.dynamic_wi8_afp32())
    if float_regex:
        q.update_quantization_recipe(regex=float_regex, operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                     algorithm_key="no_quantize")
    _export_result(q.quantize(enable_progress_report=False), out_path)
    return {"method": "ai_edge_quantizer.dynamic_wi8_afp32", "float_regex": float_regex}


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


# --------------------------------------------------------------------------------------
# Weight sensitivity: which layers to keep in float
# --------------------------------------------------------------------------------------

def _following_bn(model: Any, conv_name: str) -> Any:
    """The BatchNorm2d right after ``conv_name`` in its parent (what the converters fold into it)."""
    import torch.nn as nn

    parent_name, _, child = conv_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    names = list(parent._modules)
    i = names.index(child)
    nxt = parent._modules[names[i + 1]] if i + 1 < len(names) else None
    conv = parent._modules[child]
    if isinstance(nxt, nn.BatchNorm2d) and nxt.num_features == conv.out_channels:
        return nxt
    return None


def _fake_quant_folded(conv: Any, bn: Any, bits: int = 8) -> Any:
    """Conv weight after BN folding, per-output-channel symmetric rounding, and unfolding."""
    import torch

    w = conv.weight.detach()
    if bn is not None:
        s = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().abs().clamp_min(1e-12)
    else:
        s = torch.ones(w.shape[0])
    shape = (-1,) + (1,) * (w.ndim - 1)
    wf = w * s.view(shape)
    qmax = 2 ** (bits - 1) - 1
    scale = wf.abs().amax(dim=tuple(range(1, w.ndim)), keepdim=True).clamp_min(1e-12) / qmax
    return torch.round(wf / scale) * scale / s.view(shape)


def weight_sensitivity(model: Any, images: np.ndarray, max_images: int = 8,
                       bits: int = 8, max_fan_in: int = 64) -> List[Tuple[str, float]]:
    """``[(conv name, argmax agreement lost)]``, most sensitive first, from int8-rounding the
    (BN-folded, per-channel) weights of one conv at a time in PyTorch.

    Weight rounding, not activation ranges, dominated the int8 loss of a CPU-trained DeepLabV3+
    MobileNetV2 (weight-only int8 already cost 2.8 of 3.4 mIoU points; one 8->48 expand conv
    alone 1.1 % of the pixels), so a cheap per-layer weight probe finds the layers to keep float.
    Only convs with at most ``max_fan_in`` weights per output channel are probed: with more, the
    rounding errors average out (all sensitive layers seen had a fan-in of 8-27).
    """
    import torch
    import torch.nn as nn

    idx = np.linspace(0, len(images) - 1, min(max_images, len(images))).round().astype(int)
    x = (torch.from_numpy(np.ascontiguousarray(images[idx])).permute(0, 3, 1, 2).float() - 127.5) / 127.5
    model.eval()
    with torch.no_grad():
        ref = model(x).argmax(1)
    out: List[Tuple[str, float]] = []
    for name, conv in model.named_modules():
        if type(conv) is not nn.Conv2d:
            continue
        if conv.weight[0].numel() > max_fan_in:
            continue
        orig = conv.weight.data
        conv.weight.data = _fake_quant_folded(conv, _following_bn(model, name), bits)
        with torch.no_grad():
            agree = float((model(x).argmax(1) == ref).float().mean())
        conv.weight.data = orig
        out.append((name, 1.0 - agree))
    out.sort(key=lambda t: -t[1])
    return out


def pick_float_layers(sensitivity: Sequence[Tuple[str, float]], max_layers: int = 3,
                      min_loss: float = 0.002) -> List[str]:
    """The ``max_layers`` most sensitive convs that each cost at least ``min_loss`` agreement."""
    return [n for n, loss in sensitivity[:max_layers] if loss >= min_loss]


def _scope_of(model: Any, conv_name: str) -> str:
    """The module path that names a conv's fused op: its Conv+BN(+act) block when it has one."""
    import torch.nn as nn

    parent_name = conv_name.rpartition(".")[0]
    if parent_name and _following_bn(model, conv_name) is not None:
        parent = model.get_submodule(parent_name)
        if sum(isinstance(m, nn.Conv2d) for m in parent.modules()) == 1:
            return parent_name
    return conv_name


def _attr_chain(model: Any, name: str) -> List[str]:
    """Path components as the exporters' module stacks show them (ModuleList/Dict levels vanish:
    they are never called, so ``encoder.blocks.1.expand`` appears as ``encoder/1/expand``)."""
    import torch.nn as nn

    parts, chain = name.split("."), []
    for i, p in enumerate(parts):
        mod = model.get_submodule(".".join(parts[: i + 1]))
        if not isinstance(mod, (nn.ModuleList, nn.ModuleDict)):
            chain.append(p)
    return chain


def tflite_regex_for(model: Any, conv_names: Sequence[str], tflite_path: os.PathLike,
                     wrapper_attr: str = "model") -> Tuple[Optional[str], Dict[str, int]]:
    """Regex over LiteRT op output names selecting the ops of ``conv_names`` (litert-torch names
    tensors ``...Class_attr/Class_attr/...``), and how many op outputs each matched."""
    import re

    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(tflite_path))
    names = {t["index"]: t["name"] for t in it.get_tensor_details()}
    outputs = [names[o["outputs"][0]] for o in it._get_ops_details() if len(o["outputs"])]
    patterns, counts = [], {}
    for conv in conv_names:
        chain = [wrapper_attr] + _attr_chain(model, _scope_of(model, conv))
        pat = ".*".join(f"_{re.escape(a)}(?:/|;|$)" for a in chain)
        counts[conv] = sum(1 for n in outputs if re.search(pat, n))
        if counts[conv]:
            patterns.append(f"(?:{pat})")
        else:
            log.warning("no LiteRT op matches layer %s (pattern %s): it stays int8", conv, pat)
    return ("|".join(patterns) or None), counts


def onnx_nodes_for(model: Any, conv_names: Sequence[str], onnx_path: os.PathLike,
                   wrapper_attr: str = "model") -> Dict[str, List[str]]:
    """ONNX Conv node names of ``conv_names``: from the dynamo exporter's name-scope metadata, else
    from TorchScript-exporter node names (``/model/encoder/blocks.1/expand/conv/Conv``)."""
    import ast

    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    out: Dict[str, List[str]] = {}
    for conv in conv_names:
        scope = f"{wrapper_attr}.{_scope_of(model, conv)}"
        hits = []
        for node in graph.node:
            if node.op_type != "Conv":
                continue
            meta = {p.key: p.value for p in node.metadata_props}
            try:
                scopes = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))
            except (ValueError, SyntaxError):
                scopes = []
            legacy = f"/{wrapper_attr}/{conv}/".replace(".", "/")
            if scope in scopes or f"{wrapper_attr}.{conv}" in scopes or legacy in node.name.replace(".", "/"):
                hits.append(node.name)
        if not hits:
            log.warning("no ONNX Conv node found for layer %s: it stays int8", conv)
        out[conv] = hits
    return out
