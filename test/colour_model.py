"""A hand-built ONNX model with a known answer, for runtime tests without trained weights.

Each pixel's class is the palette colour nearest to it (logit_c = 2 x.c - |c|^2), computed
on a 4x-downsampled grid, so the expected labels of a rendered scene are known exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seg_perception.classes import load_classes
from seg_perception.manifest import Manifest, TensorSpec, make_entry


def make_colour_model(
    directory: Path, name: str = "colour", hw: tuple[int, int] = (128, 160), down: int = 4, variant: str = "full"
) -> Manifest:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    palette = load_classes(variant).palette().astype(np.float32)
    c = palette.shape[0]
    w = (2.0 * palette).reshape(c, 3, 1, 1) / 255.0
    b = -(palette**2).sum(axis=1) / 255.0
    h, wd = hw
    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("AveragePool", ["nchw"], ["pooled"], kernel_shape=[down, down], strides=[down, down]),
        helper.make_node("Conv", ["pooled", "W", "B"], ["logits_nchw"], kernel_shape=[1, 1]),
        helper.make_node("Transpose", ["logits_nchw"], ["logits"], perm=[0, 2, 3, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "colour",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, h, wd, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, h // down, wd // down, c])],
        [numpy_helper.from_array(w.astype(np.float32), "W"), numpy_helper.from_array(b.astype(np.float32), "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.onnx"
    onnx.save(model, str(path))
    man = Manifest.load(directory)
    man.put(
        make_entry(
            name,
            path,
            "onnx",
            c,
            class_variant=variant,
            architecture="nearest palette colour",
            input=TensorSpec(layout="NHWC", height=h, width=wd),
            output=TensorSpec(layout="NHWC", kind="logits"),
        )
    )
    man.save()
    return man


def render_scene(hw: tuple[int, int] = (480, 640), variant: str = "full", seed: int = 0):
    """Rectangles in palette colours on black: (rgb, expected labels)."""
    rng = np.random.default_rng(seed)
    palette = load_classes(variant).palette()
    h, w = hw
    labels = np.zeros((h, w), np.uint8)
    for k, cls in enumerate((3, 7, 14)):
        y0 = 40 + 130 * k
        x0 = int(rng.integers(20, w // 2))
        labels[y0 : y0 + 96, x0 : x0 + 160] = cls
    return palette[labels], labels
