"""Rebuild a float training model from one of our exported ONNX files (fp32 or QDQ int8).

For when a shipped model's training checkpoint is gone but its file is not: the file holds every
convolution's weights (int8 per channel, or float), with the batch norms folded in. This module

* reads each Conv of the graph with its weight and bias dequantised and any BatchNormalization
  that follows it folded in, and the Conv whose output feeds it (through Q/DQ, ReLU, pooling);
* traces the same "which conv feeds which" relation in the PyTorch model built from the file's
  ``model_config``, and matches the two graphs from the input outwards by that relation and the
  kernel size (never by order or by name: the int8 export renames and reorders nodes);
* resizes the model's layers to the file's channel counts (pruned models) and loads the weights;
* gives every batch norm statistics from real images so that it is exact in eval mode (its output
  is the folded conv's) *and* normalises with about the same numbers in train mode, so
  fine-tuning starts from the file's function instead of re-normalising every channel.

Scope: networks of Conv2d (+ BatchNorm2d) with parameter-free layers between them (ReLU, pooling,
dropout, resizes, sums), exported by :class:`training.export.formats.NHWCExportWrapper`, such as
FCN8s. A model with parameters elsewhere (PReLU, a batch norm not after a conv) is refused by name.

``python -m training.models.onnx_import --onnx models/X.onnx --calib-root ../shared/datasets/atwork
--out runs/start_X.pt`` writes a pruned-model checkpoint (:func:`training.checkpoint.save_pruned`)
that ``training.prune`` (recovery) and ``training.export`` read.
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

log = logging.getLogger(__name__)

# ONNX ops a conv's input passes through on its way from the conv before it (no parameters)
_ONNX_PASS_THROUGH = {
    "DequantizeLinear",
    "QuantizeLinear",
    "Relu",
    "Clip",
    "MaxPool",
    "Identity",
    "Dropout",
    "BatchNormalization",
}
# PyTorch leaf modules the same way (BatchNorm2d: the one folded into the conv before it)
_TORCH_PASS_THROUGH = (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.MaxPool2d, nn.Dropout, nn.Dropout2d, nn.Identity)


@dataclass
class OnnxConv:
    """One Conv node of the file: float weight and bias with any following batch norm folded in."""

    node: str
    weight: np.ndarray  # (out, in / groups, kh, kw)
    bias: np.ndarray  # (out,)
    groups: int
    producer: str | None  # the Conv node whose output reaches this one's input; None: the graph input


def _attr(node: Any, name: str, default: Any) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _dequantize(x: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, axis: int) -> np.ndarray:
    x = x.astype(np.float64)
    if zero is not None:
        zero = zero.astype(np.float64)
    if scale.ndim == 1 and x.ndim > 1:  # per channel along `axis`
        shape = [1] * x.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
        zero = None if zero is None else zero.reshape(shape)
    return ((x - (0.0 if zero is None else zero)) * scale).astype(np.float32)


def _fold_batch_norm(w: np.ndarray, b: np.ndarray, bn: Any, const: Any) -> tuple[np.ndarray, np.ndarray]:
    gamma, beta, mean, var = (const(i) for i in bn.input[1:5])
    s = gamma / np.sqrt(var + float(_attr(bn, "epsilon", 1e-5)))
    return w * s[:, None, None, None], (b - mean) * s + beta


class _Constants:
    """Values the graph computes from initializers alone: initializers, Constants, dequantised ones."""

    def __init__(self, init: Mapping[str, np.ndarray], producer: Mapping[str, Any]) -> None:
        self.init, self.producer = init, producer

    def __call__(self, name: str) -> np.ndarray | None:
        if not name:
            return None
        if name in self.init:
            return self.init[name]
        node = self.producer.get(name)
        if node is not None and node.op_type == "DequantizeLinear":
            x, s = self(node.input[0]), self(node.input[1])
            z = self(node.input[2]) if len(node.input) > 2 else None
            if x is not None and s is not None:
                return _dequantize(x, s, z, int(_attr(node, "axis", 1)))
        return None


def read_onnx_convs(path: str | Path) -> dict[str, OnnxConv]:
    """Every Conv of the graph, by node name (unnamed nodes get ``conv<i>``)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producer = {out: n for n in graph.node for out in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for n in graph.node:
        if n.op_type == "Constant":
            init[n.output[0]] = numpy_helper.to_array(_attr(n, "value", None))
    const = _Constants(init, producer)

    names = {id(n): (n.name or f"conv{i}") for i, n in enumerate(graph.node) if n.op_type == "Conv"}

    def conv_before(tensor: str) -> str | None:
        node = producer.get(tensor)
        while node is not None and node.op_type in _ONNX_PASS_THROUGH:
            node = producer.get(node.input[0])
        return names[id(node)] if node is not None and node.op_type == "Conv" else None

    convs: dict[str, OnnxConv] = {}
    for n in graph.node:
        if n.op_type != "Conv":
            continue
        w = const(n.input[1])
        if w is None:
            raise ValueError(f"Conv {names[id(n)]}: its weight is not a constant of the file")
        b = const(n.input[2]) if len(n.input) > 2 else None
        b = np.zeros(w.shape[0], np.float32) if b is None else b.astype(np.float32)
        w = w.astype(np.float32)
        users = consumers.get(n.output[0], [])
        if len(users) == 1 and users[0].op_type == "BatchNormalization":  # a float export keeps its BNs
            w, b = _fold_batch_norm(w, b, users[0], const)
        convs[names[id(n)]] = OnnxConv(
            names[id(n)], w.astype(np.float32), b.astype(np.float32), int(_attr(n, "group", 1)), conv_before(n.input[0])
        )
    return convs


@dataclass
class TorchConv:
    name: str
    producer: str | None  # the Conv2d module whose output reaches this one's input
    batch_norm: str | None  # the BatchNorm2d module right after it


def trace_torch_convs(model: nn.Module, example: torch.Tensor) -> dict[str, TorchConv]:
    """The same relation as :func:`read_onnx_convs` gives, from one forward pass with hooks."""
    leaves = {name: m for name, m in model.named_modules() if not list(m.children())}
    made_by: dict[int, str] = {}  # id(output tensor) -> leaf module
    input_of: dict[str, int] = {}
    alive: list[torch.Tensor] = []  # keeps ids unique during the pass

    def hook(name: str):
        def record(module: nn.Module, args: tuple, out: Any) -> None:
            if name in input_of:
                raise ValueError(f"{name} runs twice in one forward pass: cannot trace it")
            x = args[0]
            alive.extend([x, out])
            input_of[name] = id(x)
            if out is not x:  # eval-mode dropout returns its input
                made_by[id(out)] = name

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in leaves.items()]
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for h in handles:
            h.remove()

    def conv_before(tensor_id: int) -> str | None:
        name = made_by.get(tensor_id)
        while name is not None and isinstance(leaves[name], _TORCH_PASS_THROUGH):
            name = made_by.get(input_of[name])
        if name is None or isinstance(leaves[name], nn.Conv2d):
            return name
        raise ValueError(f"{name} ({type(leaves[name]).__name__}) lies between two convs: not importable")

    convs = {n: TorchConv(n, conv_before(input_of[n]), None) for n, m in leaves.items() if isinstance(m, nn.Conv2d)}
    for n, m in leaves.items():
        if isinstance(m, nn.BatchNorm2d):
            before = made_by.get(input_of[n])
            if before not in convs:
                raise ValueError(f"batch norm {n} does not follow a conv: not importable")
            convs[before].batch_norm = n
    return convs


def match_convs(
    model: nn.Module, torch_convs: Mapping[str, TorchConv], onnx_convs: Mapping[str, OnnxConv]
) -> dict[str, str]:
    """``{torch conv: onnx conv}``, from the input outwards: children of matched parents, by kernel size."""
    matched: dict[str, str] = {}
    queue: list[tuple[str | None, str | None]] = [(None, None)]
    while queue:
        tp, op = queue.pop(0)
        t_kids = [c for c in torch_convs.values() if c.producer == tp]
        o_kids = [c for c in onnx_convs.values() if c.producer == op]
        where = f"after {tp or 'the input'}"
        if len(t_kids) != len(o_kids):
            raise ValueError(f"{where}: the model has {len(t_kids)} convs, the file {len(o_kids)}")
        for t in t_kids:
            kernel = tuple(model.get_submodule(t.name).kernel_size)
            same = [o for o in o_kids if o.weight.shape[2:] == kernel and o.node not in matched.values()]
            if len(same) != 1:
                raise ValueError(f"{where}: {len(same)} convs of the file fit {t.name} ({kernel} kernel)")
            matched[t.name] = same[0].node
            queue.append((t.name, same[0].node))
    missing = sorted(set(torch_convs) - set(matched))
    if missing:
        raise ValueError(f"convs of the model not reached from the input: {missing[:5]}")
    return matched


def load_onnx_weights(
    model: nn.Module, onnx_path: str | Path, example: torch.Tensor
) -> tuple[nn.Module, dict[str, TorchConv]]:
    """Resize ``model``'s convs and batch norms to the file's widths and load its folded weights.

    Each batch norm gets placeholder statistics (mean 0, variance 1, scale sqrt(1 + eps), shift =
    the folded bias), exact in eval mode; :func:`calibrate_batch_norms` then gives it real ones.
    """
    from training.checkpoint import apply_width_spec, width_spec

    torch_convs = trace_torch_convs(model, example)
    onnx_convs = read_onnx_convs(onnx_path)
    pairs = match_convs(model, torch_convs, onnx_convs)
    spec = width_spec(model)
    for t_name, o_name in pairs.items():
        o = onnx_convs[o_name]
        out_ch, in_per_group = o.weight.shape[:2]
        spec[t_name].update(out_channels=out_ch, in_channels=in_per_group * o.groups, groups=o.groups)
        if torch_convs[t_name].batch_norm:
            spec[torch_convs[t_name].batch_norm]["num_features"] = out_ch
    apply_width_spec(model, spec)
    loaded: set[str] = set()
    with torch.no_grad():
        for t_name, o_name in pairs.items():
            o, conv = onnx_convs[o_name], model.get_submodule(t_name)
            conv.weight.copy_(torch.from_numpy(o.weight))
            loaded.add(f"{t_name}.weight")
            bias = torch.from_numpy(o.bias)
            bn_name = torch_convs[t_name].batch_norm
            if conv.bias is not None:
                conv.bias.zero_() if bn_name else conv.bias.copy_(bias)
                loaded.add(f"{t_name}.bias")
            elif not bn_name and bool(bias.abs().max() > 0):
                raise ValueError(f"{t_name} has no bias and no batch norm, but the file's conv has a bias")
            if bn_name:
                bn = model.get_submodule(bn_name)
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0)
                bn.weight.fill_(float(np.sqrt(1.0 + bn.eps)))
                bn.bias.copy_(bias)
                loaded.update(f"{bn_name}.{k}" for k in ("weight", "bias", "running_mean", "running_var"))
    missing = [k for k in model.state_dict() if k not in loaded and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"the file has no weights for {missing[:5]}")
    return model.eval(), torch_convs


def calibrate_batch_norms(
    model: nn.Module, torch_convs: Mapping[str, TorchConv], batches: Sequence[torch.Tensor]
) -> None:
    """Per-channel mean and variance of every batch-normed conv's output over ``batches``: set as
    the running statistics, the scale sqrt(var + eps) and the shift mean + bias, the eval output
    stays the same and train mode (batch statistics) starts near it."""
    with_bn = {n: c.batch_norm for n, c in torch_convs.items() if c.batch_norm}
    sums: dict[str, list[torch.Tensor]] = {n: [] for n in with_bn}
    handles = []
    for n in with_bn:

        def record(module: nn.Module, args: tuple, out: torch.Tensor, n: str = n) -> None:
            y = out.double().transpose(0, 1).reshape(out.shape[1], -1)
            sums[n].append(torch.stack([torch.full_like(y[:, 0], y.shape[1]), y.sum(1), (y * y).sum(1)]))

        handles.append(model.get_submodule(n).register_forward_hook(record))
    try:
        with torch.no_grad():
            model.eval()
            for x in batches:
                model(x)
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        for n, bn_name in with_bn.items():
            count, s1, s2 = torch.stack(sums[n]).sum(0)
            mean = s1 / count
            var = (s2 / count - mean * mean).clamp_min(0.0)
            bn = model.get_submodule(bn_name)
            shift = bn.bias.double() - bn.running_mean.double() * bn.weight.double() / torch.sqrt(
                bn.running_var.double() + bn.eps
            )  # the folded bias under the current statistics
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
            bn.weight.copy_(torch.sqrt(var + bn.eps))
            bn.bias.copy_(mean + shift)


def _pixels_to_input(images: np.ndarray) -> torch.Tensor:
    from training.export.formats import PIXEL_MEAN, PIXEL_STD

    x = torch.from_numpy(np.ascontiguousarray(images)).float().permute(0, 3, 1, 2)
    return (x - PIXEL_MEAN) / PIXEL_STD


def parity(model: nn.Module, onnx_path: str | Path, images: np.ndarray, threads: int = 1) -> dict[str, float]:
    """How closely the float model follows the file on ``images`` (uint8 NHWC): logits and argmax,
    in eval mode and in train mode (batch statistics), at the file's output grid."""
    import onnxruntime as ort

    from training.export.formats import NHWCExportWrapper

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    ref = np.concatenate([sess.run(None, {name: img[None].astype(np.float32)})[0] for img in images])
    wrapper = NHWCExportWrapper(model)
    full = getattr(model, "full_resolution_logits", None)
    if full is not None:  # compare where the file ends: at the model's grid or at the input size
        model.full_resolution_logits = ref.shape[1:3] == images.shape[1:3]
    with torch.no_grad():
        pixels = torch.from_numpy(images.astype(np.float32))
        ours = wrapper.eval()(pixels).numpy()
        # a copy: a train-mode pass moves the batch norms' running statistics
        ours_train = NHWCExportWrapper(copy.deepcopy(model)).train()(pixels).numpy()
    if full is not None:
        model.full_resolution_logits = full
    if ours.shape != ref.shape:
        raise ValueError(f"the model gives {ours.shape}, the file {ref.shape}: is it the file's model_config?")
    return {
        "max_abs_diff": float(np.abs(ours - ref).max()),
        "logit_range": float(ref.max() - ref.min()),
        "argmax_agreement": float((ours.argmax(-1) == ref.argmax(-1)).mean()),
        "argmax_agreement_train_mode": float((ours_train.argmax(-1) == ref.argmax(-1)).mean()),
    }


def onnx_input_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of the file's NHWC image input."""
    import onnx

    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return int(dims[1].dim_value), int(dims[2].dim_value)


def import_onnx(
    onnx_path: str | Path,
    model_config: Mapping[str, Any],
    calib_images: np.ndarray | None,
    batch_size: int = 8,
) -> tuple[nn.Module, dict[str, Any]]:
    """The float model of ``onnx_path`` (uint8 NHWC ``calib_images`` for the batch-norm statistics)
    and a report: conv count, parity with the file, images used."""
    from training.models import create_model

    config = dict(model_config)
    model = create_model(config.pop("name"), int(config.pop("num_classes")), **config)
    h, w = onnx_input_size(onnx_path)
    model, convs = load_onnx_weights(model, onnx_path, torch.zeros(1, 3, h, w))
    report: dict[str, Any] = {"convs": len(convs), "input_size": [h, w], "calibration_images": 0}
    if calib_images is not None and len(calib_images):
        if tuple(calib_images.shape[1:3]) != (h, w):
            raise ValueError(f"calibration images are {calib_images.shape[1:3]}, the file reads {(h, w)}")
        batches = [_pixels_to_input(calib_images[i : i + batch_size]) for i in range(0, len(calib_images), batch_size)]
        calibrate_batch_norms(model, convs, batches)
        report["calibration_images"] = len(calib_images)
        report["parity"] = parity(model, onnx_path, calib_images[: min(len(calib_images), 16)])
    else:
        log.warning("no calibration images: batch norms keep placeholder statistics (train mode will differ)")
    return model, report


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Rebuild a float checkpoint from an exported ONNX file")
    ap.add_argument("--onnx", required=True, help="an exported .onnx file (fp32 or QDQ int8)")
    ap.add_argument("--config", help="its export record (default: <onnx>.config.yaml beside it)")
    ap.add_argument("--calib-root", help="atWork dataset root: train-split photos for the batch-norm statistics")
    ap.add_argument("--num-calib", type=int, default=96)
    ap.add_argument("--out", required=True, help="pruned-model checkpoint to write (.pt)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    import yaml

    from seg_perception.manifest import sha256_file
    from training.checkpoint import save_pruned
    from training.export.images import real_images

    torch.set_num_threads(args.threads)
    record_path = Path(args.config or f"{args.onnx}.config.yaml")
    record = yaml.safe_load(record_path.read_text(encoding="utf-8"))
    model_config = record["model_config"]
    calib = None
    if args.calib_root:
        h, w = onnx_input_size(args.onnx)
        variant = record.get("class_variant", "full")
        calib, _ = real_images(args.calib_root, "train", variant, h, w, args.num_calib, record.get("split"))
    model, report = import_onnx(args.onnx, model_config, calib)
    extra = {
        "imported_from_onnx": {
            "file": str(args.onnx),
            "sha256": sha256_file(args.onnx),
            "command": " ".join(sys.argv),
            **report,
        },
        "class_variant": record.get("class_variant", "full"),
        "train_config": (record.get("training") or {}).get("config") or {},
    }
    if record.get("prune_step"):
        extra["prune_step"] = record["prune_step"]
    save_pruned(model, args.out, extra=extra)
    log.info("wrote %s: %s", args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
