"""Zeiler-Fergus style views of what a trained model's layers respond to.

    python -m training.features --checkpoint runs/x/best.pt --list
    python -m training.features --checkpoint runs/x/best.pt --image photo.jpg \
        --layers encoder.blocks.3,aspp --out runs/x/features [--top-k 16]

For each chosen layer, a forward hook records its output on one image; the
``top-k`` channels with the highest mean activation are drawn as min-max
normalised maps next to the input (one PNG per layer). Only activation maps
are shown, not the deconvnet projections back to pixel space of the original paper.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn

from .checkpoint import load_checkpoint, load_model

log = logging.getLogger("training.features")


def list_layers(model: nn.Module) -> list[str]:
    """Names of all submodules (``model.named_modules()`` minus the root)."""
    return [name for name, _ in model.named_modules() if name]


def preprocess(image_rgb: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """uint8 HxWx3 RGB -> 1x3xHxW float normalised like training ((px - mean) / std)."""
    try:
        from training.models import NORM_MEAN, NORM_STD
    except ImportError:  # the documented convention
        NORM_MEAN, NORM_STD = (127.5,) * 3, (127.5,) * 3
    h, w = size
    img = cv2.resize(image_rgb, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    img = (img - np.asarray(NORM_MEAN, np.float32)) / np.asarray(NORM_STD, np.float32)
    return torch.from_numpy(img.transpose(2, 0, 1)).unsqueeze(0).contiguous()


@torch.inference_mode()
def capture_activations(model: nn.Module, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """Outputs of the named layers for input ``x`` (the first tensor when a layer returns a tuple)."""
    modules = dict(model.named_modules())
    missing = [n for n in layers if n not in modules]
    if missing:
        raise KeyError(f"unknown layers {missing}; list them with --list")
    acts: dict[str, torch.Tensor] = {}

    def hook_for(name: str):
        def hook(_m: nn.Module, _inp, out) -> None:
            t = out[0] if isinstance(out, (tuple, list)) else out
            acts[name] = t.detach().cpu()

        return hook

    handles = [modules[n].register_forward_hook(hook_for(n)) for n in layers]
    try:
        model.eval()
        model(x)
    finally:
        for h in handles:
            h.remove()
    return acts


def top_channels(act: torch.Tensor, k: int) -> tuple[np.ndarray, list[int], list[float]]:
    """The ``k`` channels of a (1, C, h, w) activation with the highest mean, strongest first."""
    if act.ndim != 4:
        raise ValueError(f"expected a (N, C, H, W) activation, got shape {tuple(act.shape)}")
    a = act[0].float()
    means = a.mean(dim=(1, 2))
    order = torch.argsort(means, descending=True)[: max(1, k)]
    return a[order].numpy(), order.tolist(), means[order].tolist()


def _safe_name(layer: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", layer)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.features", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--image", type=Path, help="RGB photo (resized to the model's training input size)")
    p.add_argument("--layers", default="", help="comma-separated layer names (see --list)")
    p.add_argument("--out", type=Path, default=Path("features"))
    p.add_argument("--top-k", type=int, default=16)
    p.add_argument("--list", action="store_true", help="print layer names, types and output shapes")
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


def _input_size(ckpt: dict) -> tuple[int, int]:
    data = (ckpt.get("train_config") or {}).get("data") or {}
    return int(data.get("height", 256)), int(data.get("width", 320))


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.checkpoint)
    model = load_model(args.checkpoint)
    size = _input_size(ckpt)
    if args.image is not None:
        from training.data.atwork import read_rgb

        image = read_rgb(args.image)
    else:
        image = np.full((*size, 3), 127, dtype=np.uint8)
    x = preprocess(image, size)
    if args.list:
        names = list_layers(model)
        acts = capture_activations(model, x, names)
        modules = dict(model.named_modules())
        for n in names:
            shape = tuple(acts[n].shape) if n in acts else "-"
            print(f"{n}\t{type(modules[n]).__name__}\t{shape}")
        return 0
    if args.image is None or not args.layers:
        log.error("--image and --layers are required (or use --list)")
        return 2
    from .config import save_config
    from .plots import save_activation_grid

    if ckpt.get("train_config"):
        save_config(ckpt["train_config"], args.out)

    layers = [s.strip() for s in args.layers.split(",") if s.strip()]
    acts = capture_activations(model, x, layers)
    shown = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    for name in layers:
        maps, channels, scores = top_channels(acts[name], args.top_k)
        path = save_activation_grid(
            shown,
            maps,
            channels,
            scores,
            args.out / f"{_safe_name(name)}.png",
            title=f"{name}: top {len(channels)} of {acts[name].shape[1]} channels by mean activation",
        )
        log.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
