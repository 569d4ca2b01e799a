"""Checkpoints that load with ``torch.load(weights_only=True)`` and rebuild their model alone.

A checkpoint is a plain dict of tensors and str/int/float/bool/None containers:

* ``model_config``: the model's ``config`` dict (``name``, ``num_classes`` and
  constructor kwargs), so ``create_model(**model_config)`` rebuilds the net;
* ``state_dict``: the model weights (DDP ``module.`` prefix removed);
* ``optimizer`` / ``scheduler``: their ``state_dict()`` for resuming (optional);
* ``epoch`` (number of finished epochs; a resume starts the next one), ``best_metric`` (best val mIoU so far),
  ``best_epoch``, ``train_config`` (the resolved training config), ``class_names``,
  ``rng`` (torch RNG state) and ``extra`` (e.g. class weights, metrics).

``weights_only=True`` refuses arbitrary pickled objects, so loading a checkpoint
never executes code; :func:`save_checkpoint` converts numpy values to plain
Python / tensors first and checks the result loads that way.
"""
from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

import numpy as np
import torch
import torch.nn as nn

from .config import save_config

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model under DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def to_safe(obj: Any) -> Any:
    """Recursively convert to what the ``weights_only`` unpickler accepts.

    numpy arrays become tensors, numpy scalars Python numbers, paths strings,
    tuples stay tuples; anything else exotic raises instead of failing at load time.
    """
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Mapping):
        return {(k if isinstance(k, (str, int)) else str(k)): to_safe(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(to_safe(v) for v in obj)
    if isinstance(obj, list):
        return [to_safe(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if obj is None or type(obj) in (str, bool, int, float):
        return obj
    # subclasses (e.g. torch.__version__ is a TorchVersion str) are not allow-listed globals
    for base in (bool, int, float, str):
        if isinstance(obj, base):
            return base(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a weights_only checkpoint")


def model_config_of(model: nn.Module) -> Dict[str, Any]:
    cfg = getattr(unwrap(model), "config", None)
    if not isinstance(cfg, Mapping) or "name" not in cfg:
        raise ValueError("model has no config dict with a 'name' (needed to rebuild it from the checkpoint)")
    return dict(cfg)


def build_checkpoint(
    model: nn.Module,
    optimizer: Optional[torch.optim.Optimizer] = None,
    scheduler: Optional[Any] = None,
    epoch: int = 0,
    best_metric: Optional[float] = None,
    best_epoch: int = -1,
    train_config: Optional[Mapping[str, Any]] = None,
    class_names: Optional[list] = None,
    extra: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """The checkpoint dict (see module docstring), already ``weights_only``-safe."""
    bare = unwrap(model)
    ckpt = {
        "format_version": FORMAT_VERSION,
        "model_config": model_config_of(bare),
        "state_dict": {k: v.detach().cpu() for k, v in bare.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": int(epoch),
        "best_metric": None if best_metric is None else float(best_metric),
        "best_epoch": int(best_epoch),
        "train_config": dict(train_config or {}),
        "class_names": list(class_names or []),
        "rng": torch.get_rng_state(),
        "extra": dict(extra or {}),
        "torch_version": torch.__version__,
    }
    return to_safe(ckpt)


def save_checkpoint(path: os.PathLike, ckpt: Mapping[str, Any], write_config: bool = True) -> Path:
    """Atomically write ``ckpt`` to ``path`` (and ``config.yaml`` beside it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    safe = to_safe(ckpt)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(safe, tmp)
    os.replace(tmp, path)
    if write_config and safe.get("train_config"):
        save_config(safe["train_config"], path.parent)
    log.debug("saved checkpoint %s (epoch %s)", path, safe.get("epoch"))
    return path


def load_checkpoint(path: os.PathLike, map_location: Any = "cpu") -> Dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no code execution)."""
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "model_config" not in ckpt:
        raise ValueError(f"{path}: not a seg_perception training checkpoint")
    return ckpt


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str = "module.") -> Dict[str, torch.Tensor]:
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def _registry_factory(**model_config: Any) -> nn.Module:
    from training.models import create_model  # deferred: the registry pulls in every model family

    return create_model(**model_config)


def load_model(
    path: os.PathLike,
    map_location: Any = "cpu",
    factory: Optional[Callable[..., nn.Module]] = None,
    eval_mode: bool = True,
) -> nn.Module:
    """Rebuild the model from the checkpoint alone: ``factory(**model_config)`` + weights.

    ``factory`` defaults to ``training.models.create_model``.
    """
    ckpt = load_checkpoint(path, map_location=map_location)
    model = (factory or _registry_factory)(**ckpt["model_config"])
    model.load_state_dict(strip_prefix(ckpt["state_dict"]))
    model.to(map_location if isinstance(map_location, (str, torch.device)) else "cpu")
    return model.eval() if eval_mode else model


def state_dict_bytes(model: nn.Module) -> int:
    """Size of the model weights alone as ``torch.save`` writes them (no optimizer state)."""
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}, buf)
    return buf.getbuffer().nbytes
