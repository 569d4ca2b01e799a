"""Checkpoints that load with ``torch.load(weights_only=True)`` and rebuild their model alone.

A training checkpoint is a plain dict of tensors and str/int/float/bool/None containers:

* ``model_config``: the model's ``config`` dict (``name``, ``num_classes`` and
  constructor kwargs), so ``create_model(**model_config)`` rebuilds the net;
* ``state_dict``: the model weights (DDP ``module.`` prefix removed);
* ``optimizer`` / ``scheduler``: their ``state_dict()`` for resuming (optional);
* ``epoch`` (number of finished epochs; a resume starts the next one), ``best_metric`` (best val mIoU so far),
  ``best_epoch``, ``train_config`` (the resolved training config, :func:`~training.config.to_plain`), ``class_names``,
  ``rng`` (torch RNG state) and ``extra`` (e.g. class weights, metrics).

A pruned model (:func:`save_pruned`, format :data:`PRUNED_FORMAT`) is an *architecture spec +
weights*: the constructor config, the width of every Conv/BN/PReLU/Linear/GroupNorm layer and
the state dict. :func:`load_pruned` rebuilds it with ``create_model(**config)``, swaps in layers
of the recorded widths and loads the weights; neither torch-pruning nor pickled modules are
needed. :func:`load_any_model` reads either kind.

``weights_only=True`` refuses arbitrary pickled objects, so loading a checkpoint
never executes code; :func:`save_checkpoint` converts numpy values to plain
Python / tensors first and checks the result loads that way.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from seg_perception.plain import to_plain

from .config import TrainingConfig, save_config

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
PRUNED_FORMAT = "seg_perception.pruned_model/v1"

# Width-carrying attributes per layer type: what load_pruned must restore before load_state_dict.
_WIDTH_ATTRS: dict[type, tuple[str, ...]] = {
    nn.Conv2d: ("in_channels", "out_channels", "groups"),
    nn.ConvTranspose2d: ("in_channels", "out_channels", "groups"),
    nn.BatchNorm2d: ("num_features",),
    nn.PReLU: ("num_parameters",),
    nn.Linear: ("in_features", "out_features"),
    nn.GroupNorm: ("num_groups", "num_channels"),
}


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


def model_config_of(model: nn.Module) -> dict[str, Any]:
    cfg = getattr(unwrap(model), "config", None)
    if not isinstance(cfg, Mapping) or "name" not in cfg:
        raise ValueError("model has no config dict with a 'name' (needed to rebuild it from the checkpoint)")
    return dict(cfg)


def build_checkpoint(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    epoch: int = 0,
    best_metric: float | None = None,
    best_epoch: int = -1,
    train_config: TrainingConfig | Mapping[str, Any] | None = None,
    class_names: list | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
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
        "train_config": to_plain(train_config) if train_config is not None else {},
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


def load_checkpoint(path: os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no code execution)."""
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "model_config" not in ckpt:
        raise ValueError(f"{path}: not a seg_perception training checkpoint")
    return ckpt


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def _registry_factory(**model_config: Any) -> nn.Module:
    from training.models import create_model  # deferred: the registry pulls in every model family

    return create_model(**model_config)


def load_model(
    path: os.PathLike,
    map_location: Any = "cpu",
    factory: Callable[..., nn.Module] | None = None,
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


# --------------------------------------------------------------------------------------
# Pruned models: architecture spec + weights
# --------------------------------------------------------------------------------------


def _width_type(module: nn.Module) -> type | None:
    for t in _WIDTH_ATTRS:
        if type(module) is t:
            return t
    return None


def width_spec(model: nn.Module) -> dict[str, dict[str, Any]]:
    """``{module_name: {"type": "Conv2d", "in_channels": .., "out_channels": .., "groups": ..}}``
    for every Conv2d / ConvTranspose2d / BatchNorm2d / PReLU / Linear / GroupNorm."""
    spec: dict[str, dict[str, Any]] = {}
    for name, m in model.named_modules():
        t = _width_type(m)
        if t is None:
            continue
        spec[name] = {"type": t.__name__, **{a: int(getattr(m, a)) for a in _WIDTH_ATTRS[t]}}
    return spec


def _resized(m: nn.Module, w: Mapping[str, int]) -> nn.Module:
    """A fresh layer like ``m`` but with the widths ``w`` (parameters are overwritten by the state dict)."""
    if type(m) is nn.Conv2d:
        return nn.Conv2d(
            w["in_channels"],
            w["out_channels"],
            m.kernel_size,
            m.stride,
            m.padding,
            m.dilation,
            w["groups"],
            bias=m.bias is not None,
            padding_mode=m.padding_mode,
        )
    if type(m) is nn.ConvTranspose2d:
        return nn.ConvTranspose2d(
            w["in_channels"],
            w["out_channels"],
            m.kernel_size,
            m.stride,
            m.padding,
            m.output_padding,
            w["groups"],
            bias=m.bias is not None,
            dilation=m.dilation,
            padding_mode=m.padding_mode,
        )
    if type(m) is nn.BatchNorm2d:
        return nn.BatchNorm2d(
            w["num_features"],
            eps=m.eps,
            momentum=m.momentum,
            affine=m.affine,
            track_running_stats=m.track_running_stats,
        )
    if type(m) is nn.PReLU:
        return nn.PReLU(w["num_parameters"])
    if type(m) is nn.Linear:
        return nn.Linear(w["in_features"], w["out_features"], bias=m.bias is not None)
    if type(m) is nn.GroupNorm:
        return nn.GroupNorm(w["num_groups"], w["num_channels"], eps=m.eps, affine=m.affine)
    raise TypeError(f"no width rule for {type(m).__name__}")


def apply_width_spec(model: nn.Module, spec: Mapping[str, Mapping[str, Any]]) -> nn.Module:
    """Replace every layer whose width differs from ``spec`` by one of the recorded width (in place).

    The model must have exactly the layers listed in ``spec`` (same names and types): anything
    else means the checkpoint belongs to another architecture or constructor config.
    """
    current = width_spec(model)
    if set(current) != set(spec):
        missing = sorted(set(spec) - set(current))[:5]
        extra = sorted(set(current) - set(spec))[:5]
        raise ValueError(f"width spec does not match the model: spec-only layers {missing}, model-only layers {extra}")
    for name, want in spec.items():
        have = current[name]
        if have["type"] != want["type"]:
            raise ValueError(f"{name}: spec type {want['type']} != model type {have['type']}")
        if all(have[k] == want[k] for k in want if k != "type"):
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, _resized(getattr(parent, child), want))
    return model


def save_pruned(
    model: nn.Module,
    path: os.PathLike,
    extra: Mapping[str, Any] | None = None,
    resume_state: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``{format, model_config, width_spec, state_dict, num_params, ...extra}`` with torch.save.

    ``model.config`` must hold the constructor kwargs incl. ``name`` (the models registry contract).
    ``extra`` is plain data; ``resume_state`` (optimiser, scheduler, RNG: tensors allowed) is stored
    under ``"resume_state"`` for a run that continues from this file.
    """
    from training.models import count_parameters  # deferred, as in _registry_factory

    config = dict(getattr(model, "config", {}) or {})
    if "name" not in config:
        raise ValueError("model.config needs 'name' (and constructor kwargs) to be rebuilt")
    doc: dict[str, Any] = {
        "format": PRUNED_FORMAT,
        "model_config": to_plain(config),
        "width_spec": width_spec(model),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "num_params": int(count_parameters(model)),
    }
    if extra:
        doc.update(to_plain(dict(extra)))
    if resume_state is not None:
        doc["resume_state"] = to_safe(dict(resume_state))
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    torch.save(doc, tmp)
    os.replace(tmp, p)
    return p


def is_pruned_checkpoint(doc: Mapping[str, Any]) -> bool:
    return isinstance(doc, Mapping) and doc.get("format") == PRUNED_FORMAT


def _build(config: Mapping[str, Any]) -> nn.Module:
    return _registry_factory(**config)


def model_from_pruned_doc(
    doc: Mapping[str, Any], builder: Callable[[Mapping[str, Any]], nn.Module] | None = None
) -> nn.Module:
    """Model of a :func:`save_pruned` dict already in memory (see :func:`load_pruned`)."""
    if not is_pruned_checkpoint(doc):
        raise ValueError(f"not a pruned-model checkpoint (format {doc.get('format')!r})")
    model = (builder or _build)(doc["model_config"])
    apply_width_spec(model, doc["width_spec"])
    model.load_state_dict(doc["state_dict"], strict=True)
    return model.eval()


def load_pruned(path: os.PathLike, builder: Callable[[Mapping[str, Any]], nn.Module] | None = None) -> nn.Module:
    """Rebuild a pruned model: ``create_model(**model_config)``, resize layers, load weights.

    ``builder(config) -> nn.Module`` replaces the registry (tests with stand-in models).
    """
    doc = torch.load(path, map_location="cpu", weights_only=True)
    return model_from_pruned_doc(doc, builder)


def load_any_model(path: os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """A model from a pruned checkpoint or a training checkpoint; returns ``(model, checkpoint dict)``."""
    doc = torch.load(path, map_location="cpu", weights_only=True)
    if is_pruned_checkpoint(doc):
        return model_from_pruned_doc(doc), doc
    return load_model(path).eval(), doc if isinstance(doc, dict) else {}


# --------------------------------------------------------------------------------------
# What a checkpoint says about itself (export provenance)
# --------------------------------------------------------------------------------------


def class_variant_of(doc: Mapping[str, Any], num_classes: int) -> str:
    """Class variant of a checkpoint: stored, from its training config, or by class count."""
    if doc.get("class_variant"):
        return str(doc["class_variant"])
    for key in ("train_config", "config"):
        cfg = doc.get(key)
        if isinstance(cfg, Mapping) and isinstance(cfg.get("data"), Mapping) and cfg["data"].get("variant"):
            return str(cfg["data"]["variant"])
    from seg_perception.classes import VARIANTS, load_classes

    for name in VARIANTS:
        if load_classes(name).num_classes == num_classes:
            return name
    raise ValueError(f"no class variant with {num_classes} classes")


def checkpoint_info(doc: Mapping[str, Any], model: nn.Module) -> dict[str, Any]:
    """Variant / input size / pruning info of a checkpoint dict (training or pruned)."""
    from seg_perception.atwork import SplitSpec
    from training.models import count_parameters

    cfg = model.config
    info: dict[str, Any] = {
        "model_config": dict(cfg),
        "num_params": int(count_parameters(model)),
        "pruned": doc.get("format") == PRUNED_FORMAT,
    }
    num_classes = int(cfg["num_classes"])
    info["class_variant"] = doc.get("class_variant") or class_variant_of(doc, num_classes)
    size = doc.get("input_size")
    tcfg = next((doc[k] for k in ("train_config", "config") if isinstance(doc.get(k), Mapping)), {})
    data = tcfg.get("data") if isinstance(tcfg.get("data"), Mapping) else {}
    info["split"] = SplitSpec.from_mapping(data).describe()
    if data.get("train_on_val"):  # final model: its val numbers are memory, the estimate is its held-out twin's
        info["split"]["train_on_val"] = True
    if size:
        info["input_size"] = [int(size[0]), int(size[1])]
    elif data.get("height") and data.get("width"):
        info["input_size"] = [int(data["height"]), int(data["width"])]
    extra = doc.get("extra") if isinstance(doc.get("extra"), Mapping) else {}
    if tcfg:
        # how the weights were made: the resolved training config, its command, where it stopped
        info["training"] = {
            "config": dict(tcfg),
            "command": extra.get("command"),
            "epoch": doc.get("epoch"),
            "best_epoch": doc.get("best_epoch"),
            "best_val_miou": doc.get("best_metric"),
        }
    if info["pruned"]:
        info["prune_step"] = doc.get("prune_step")
        info["source_checkpoint"] = doc.get("source_checkpoint")
        if isinstance(doc.get("recovery"), Mapping):  # the fine-tune after pruning, without its per-epoch log
            info["recovery"] = {k: v for k, v in doc["recovery"].items() if k != "log"}
        if isinstance(doc.get("source_imported_from_onnx"), Mapping):  # the chain went through a shipped file
            info["source_imported_from_onnx"] = dict(doc["source_imported_from_onnx"])
    return info
