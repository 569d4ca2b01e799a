"""ONNX Runtime int8: static QDQ quantisation of the fp32 export, file compaction, and the Conv
nodes of the layers kept in float.

``quantize_static`` in QDQ format: per-channel symmetric int8 weights, *unsigned* int8
activations (faster QLinearConv kernels on x86), 7-bit weights by default (``reduce_range``);
``quantize_dynamic`` is not used (it emits ConvInteger, slow and poorly supported for conv nets).
Why each choice, with the measurements: docs/architecture.md.
"""

from __future__ import annotations

import ast
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .sensitivity import fused_scope

log = logging.getLogger(__name__)


class _NHWCReader:
    """onnxruntime ``CalibrationDataReader`` over a list of 1xHxWx3 float32 arrays."""

    def __init__(self, input_name: str, images: Sequence[np.ndarray]):
        self.input_name = input_name
        self._images = list(images)
        self._it: Iterator[np.ndarray] = iter(self._images)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {self.input_name: np.ascontiguousarray(x, dtype=np.float32)}

    def rewind(self) -> None:
        self._it = iter(self._images)

    def __len__(self) -> int:
        return len(self._images)


def compact_onnx(path: os.PathLike) -> dict[str, Any]:
    """Strip what only helps debugging from an ONNX file, in place: exporter stack traces
    (node doc strings / metadata), ``value_info`` shapes, and long tensor/node names (renamed
    ``t<i>``/``n<i>``; graph inputs and outputs keep theirs). The computation is unchanged; for a
    small net these bytes are a large share of the file. Returns the sizes and ``node_names``
    (old -> new), to translate recorded node names."""
    import onnx

    path = Path(path)
    before = path.stat().st_size
    m = onnx.load(str(path))
    g = m.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for nd in g.node for a in nd.attribute):
        return {"bytes_before": before, "bytes_after": before, "node_names": {}}  # subgraphs: leave alone
    keep = {v.name for v in g.input} | {v.name for v in g.output}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return names.setdefault(name, f"t{len(names)}")

    for t in g.initializer:
        t.name = short(t.name)
        t.doc_string = ""
        del t.metadata_props[:]
    node_names: dict[str, str] = {}
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
    op_types: Sequence[str] = (),
) -> dict[str, Any]:
    """Static QDQ int8 ONNX model; returns the settings used (for provenance).

    ``reduce_range`` (7-bit weights) is on by default: on x86 CPUs without VNNI (AVX2 only) ORT's
    u8 x s8 kernels sum pairs of products in saturating int16, which with full 8-bit weights flips
    argmax pixels.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
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
            str(model_in),
            str(out_path),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            reduce_range=reduce_range,
            activation_type=act,
            weight_type=wt,
            calibrate_method=methods[calibrate_method],
            nodes_to_exclude=list(exclude_nodes) or None,
            op_types_to_quantize=list(op_types) or None,
            extra_options=extra,
        )
    return {
        "method": "onnxruntime.quantize_static",
        "quant_format": "QDQ",
        "per_channel": per_channel,
        "activation_type": activation_type,
        "weight_type": weight_type,
        "calibrate_method": calibrate_method,
        "num_calib_images": len(calib_images),
        "exclude_nodes": list(exclude_nodes),
        "op_types": list(op_types) or "all",
        "pre_process": preprocess,
        "reduce_range": reduce_range,
    }


def onnx_nodes_for(
    model: Any, conv_names: Sequence[str], onnx_path: os.PathLike, wrapper_attr: str = "model"
) -> dict[str, list[str]]:
    """ONNX Conv node names of ``conv_names``: from the dynamo exporter's name-scope metadata, else
    from TorchScript-exporter node names (``/model/encoder/blocks.1/expand/conv/Conv``)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    out: dict[str, list[str]] = {}
    for conv in conv_names:
        scope = f"{wrapper_attr}.{fused_scope(model, conv)}"
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
