"""Training configuration: defaults < YAML file < ``--set key.sub=value`` < direct flags.

Every key has a default in :data:`DEFAULTS`; a YAML file or an override may only
change existing keys (a typo is an error that lists the valid keys), except
inside the free-form sections :data:`FREE_FORM` (model constructor kwargs,
augmentation options), which are passed through to their owners. The resolved
config is written as ``config.yaml`` beside every checkpoint and artifact so a
run can be reproduced from its output folder alone.

Paths are relative to the working directory (the project root for the
documented commands).
"""
from __future__ import annotations

import argparse
import copy
import logging
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import yaml

from seg_perception.plain import to_plain

log = logging.getLogger(__name__)

DEFAULTS: Dict[str, Any] = {
    "model": {
        "name": "deeplabv3plus_mobilenetv2",  # a name of training.models.MODEL_NAMES
        "kwargs": {},  # free-form constructor kwargs (width, p/q, ...)
    },
    "data": {
        "root": "../shared/datasets/atwork",  # real atWork photos (objects/image, objects/semantic_labels)
        "variant": "full",  # class variant of config/classes.yaml
        "height": 256,
        "width": 320,
        "split": "run",  # run: whole capture runs held out (config/atwork_runs.yaml); random: the old split
        "folds": 5,  # run split: contiguous folds of capture runs per class
        "val_fold": -1,  # run split: the validation fold (-1 = the last: the latest runs)
        "val_fraction": 0.2,  # random split only
        "split_seed": 0,  # random split only
        "synthetic": [],  # generator output folders mixed into the train split
        "real_repeats": 1,  # how often the real train photos appear per epoch (balances vs synthetic)
        "preresize": False,  # resize photos to height x width before augmenting (faster, blurrier crops)
        "augment": {},  # free-form options for training.data.augment.build_train_transform
        "num_workers": 2,
    },
    "train": {
        "epochs": 30,
        "batch_size": 8,
        "val_batch_size": 8,
        "optimizer": "adamw",
        "lr": 1.0e-3,
        "weight_decay": 1.0e-4,
        "momentum": 0.9,
        "scheduler": "poly",
        "poly_power": 0.9,
        "warmup_iters": 0,
        "min_lr": 0.0,
        "loss": "ce+dice",
        "dice_weight": 1.0,
        "class_weights": "none",
        "ignore_index": 255,
        "grad_clip": 0.0,  # max grad norm; 0 = off
        "seed": 0,
        "threads": 2,  # torch.set_num_threads per process; 0 = torch's default
        "device": "auto",  # auto (cuda if available) | cpu | cuda
        "amp": False,  # mixed precision, CUDA only
        "sync_bn": False,  # SyncBatchNorm under DDP on CUDA
        "max_iters_per_epoch": 0,  # 0 = whole epoch; >0 for smoke runs / timing
        "val_every": 1,
    },
    "init": {
        "peer_tflite": None,  # TFLite DeepLab v3 reference model whose encoder (+ ASPP when it fits) initialises deeplabv3plus_mobilenetv2
        "espnet_weights": None,  # the ESPNet authors' released .pth that initialises espnet (training.models.espnet_import)
        "checkpoint": None,  # start from these model weights (fine-tuning), not a resume
    },
    "distill": {
        "teacher": None,  # checkpoint of a trained model whose soft predictions the student also learns
        "weight": 0.5,  # loss = (1 - weight) * label loss + weight * T^2 * KL(teacher_T || student_T)
        "temperature": 2.0,
    },
    "log": {
        "out": "runs/default",
        "progress": True,  # tqdm bar per epoch (rank 0 only)
        "plots": True,
    },
}

FREE_FORM = {"model.kwargs", "data.augment"}

CHOICES: Dict[str, Sequence[Any]] = {
    "data.variant": ("full", "size_invariant", "similar_shapes", "binary"),
    "data.split": ("run", "random"),
    "train.optimizer": ("sgd", "adam", "adamw"),
    "train.scheduler": ("poly", "cosine", "none"),
    "train.loss": ("ce", "dice", "ce+dice"),
    "train.class_weights": ("none", "median_freq", "inv_log"),
    "train.device": ("auto", "cpu", "cuda"),
}

POSITIVE = {"data.height", "data.width", "train.epochs", "train.batch_size", "train.val_batch_size",
            "train.lr", "train.val_every", "data.real_repeats", "distill.temperature"}
NON_NEGATIVE = {"data.num_workers", "train.weight_decay", "train.momentum", "train.warmup_iters",
                "train.min_lr", "train.dice_weight", "train.grad_clip", "train.threads",
                "train.max_iters_per_epoch", "train.poly_power"}

# keys whose default is None but that hold a path string when set
OPTIONAL_STR = {"init.peer_tflite", "init.espnet_weights", "init.checkpoint", "distill.teacher"}


class ConfigError(ValueError):
    """Unknown key, wrong type or out-of-range value in a training config."""


def _valid_keys(section: Mapping[str, Any], prefix: str = "") -> List[str]:
    keys = []
    for k, v in section.items():
        full = f"{prefix}{k}"
        if isinstance(v, dict) and full not in FREE_FORM:
            keys.extend(_valid_keys(v, full + "."))
        else:
            keys.append(full)
    return keys


def valid_keys() -> List[str]:
    """All settable dotted keys (free-form sections as one key)."""
    return _valid_keys(DEFAULTS)


def _unknown(key: str, defaults_section: Mapping[str, Any], prefix: str) -> ConfigError:
    here = sorted(f"{prefix}{k}" for k in defaults_section)
    return ConfigError(f"unknown config key {key!r}; valid keys here: {', '.join(here)}")


def _merge(base: Dict[str, Any], update: Mapping[str, Any], defaults: Mapping[str, Any], prefix: str = "") -> None:
    """Merge ``update`` into ``base`` in place, refusing keys that ``defaults`` lacks."""
    for k, v in update.items():
        full = f"{prefix}{k}"
        if full in FREE_FORM:
            if v is None:
                v = {}
            if not isinstance(v, dict):
                raise ConfigError(f"{full} must be a mapping, got {type(v).__name__}")
            base[k] = _deep_update(copy.deepcopy(base.get(k) or {}), v)
            continue
        if k not in defaults:
            raise _unknown(full, defaults, prefix)
        if isinstance(defaults[k], dict):
            if not isinstance(v, dict):
                raise ConfigError(f"{full} is a section; expected a mapping, got {v!r}")
            _merge(base[k], v, defaults[k], full + ".")
        else:
            base[k] = copy.deepcopy(v)


def _deep_update(base: Dict[str, Any], update: Mapping[str, Any]) -> Dict[str, Any]:
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = copy.deepcopy(v)
    return base


def parse_override(text: str) -> Dict[str, Any]:
    """``"train.lr=3e-4"`` -> ``{"train": {"lr": 3e-4}}``; the value is parsed as a YAML scalar/flow value."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key.sub=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: value is not valid YAML: {e}") from e
    nested: Dict[str, Any] = {}
    cur = nested
    parts = key.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return nested


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Check/convert one leaf value against the type of its default."""
    if key in OPTIONAL_STR:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        raise ConfigError(f"{key} must be a path string or null, got {value!r}")
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true/false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, str):  # PyYAML reads "1e-3" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{key} must be a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    if isinstance(default, list):
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return [os.fspath(v) if isinstance(v, os.PathLike) else v for v in value]
    return value


def _validate_section(cfg: Dict[str, Any], defaults: Mapping[str, Any], prefix: str = "") -> None:
    for k, default in defaults.items():
        full = f"{prefix}{k}"
        if full in FREE_FORM:
            continue
        if isinstance(default, dict):
            _validate_section(cfg[k], default, full + ".")
            continue
        v = _coerce(full, cfg[k], default)
        if full in CHOICES and v not in CHOICES[full]:
            raise ConfigError(f"{full}={v!r} not in {list(CHOICES[full])}")
        if full in POSITIVE and not v > 0:
            raise ConfigError(f"{full} must be > 0, got {v!r}")
        if full in NON_NEGATIVE and not v >= 0:
            raise ConfigError(f"{full} must be >= 0, got {v!r}")
        cfg[k] = v


def validate(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Type-check and range-check a merged config in place; returns it."""
    _validate_section(cfg, DEFAULTS)
    if not isinstance(cfg["model"]["name"], str) or not cfg["model"]["name"]:
        raise ConfigError("model.name must be a non-empty string")
    if not 0.0 < cfg["data"]["val_fraction"] < 1.0:
        raise ConfigError(f"data.val_fraction must be in (0, 1), got {cfg['data']['val_fraction']}")
    from seg_perception.atwork import SplitSpec

    try:
        SplitSpec.from_mapping(cfg["data"])
    except ValueError as e:
        raise ConfigError(f"data: {e}") from None
    if not 0.0 <= cfg["distill"]["weight"] <= 1.0:
        raise ConfigError(f"distill.weight must be in [0, 1], got {cfg['distill']['weight']}")
    if cfg["train"]["momentum"] >= 1.0:
        raise ConfigError("train.momentum must be < 1")
    return cfg


def build_config(
    file_cfg: Optional[Mapping[str, Any]] = None,
    overrides: Iterable[str] = (),
    base: Optional[Mapping[str, Any]] = None,
    flags: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """Defaults < ``base`` (e.g. a checkpoint's config) < ``file_cfg`` < ``--set`` overrides < flags, validated."""
    cfg = copy.deepcopy(DEFAULTS)
    for layer in (base, file_cfg):
        if layer:
            _merge(cfg, layer, DEFAULTS)
    for o in overrides:
        _merge(cfg, parse_override(o), DEFAULTS)
    if flags:
        _merge(cfg, flags, DEFAULTS)
    return validate(cfg)


def load_yaml(path: os.PathLike) -> Dict[str, Any]:
    try:
        with open(path, "r", encoding="utf-8") as f:
            doc = yaml.safe_load(f) or {}
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the file: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return doc


def load_config(path: Optional[os.PathLike] = None, overrides: Iterable[str] = ()) -> Dict[str, Any]:
    """Load a YAML config file (optional) and apply ``key.sub=value`` overrides."""
    file_cfg = load_yaml(path) if path else None  # its errors name the file
    try:
        return build_config(file_cfg, overrides)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None


def save_config(cfg: Mapping[str, Any], directory: os.PathLike, name: str = "config.yaml") -> Path:
    """Write the resolved config as ``config.yaml`` in ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    path = d / name
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        yaml.safe_dump(to_plain(cfg), f, sort_keys=False)
    os.replace(tmp, path)
    return path


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The shared CLI: ``--config``, repeated ``--set``, and direct flags for common keys."""
    parser.add_argument("--config", type=Path, help="YAML config (see training/configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.lr=3e-4 (repeatable)")
    parser.add_argument("--out", help="output folder (log.out)")
    parser.add_argument("--root", help="atWork dataset root (data.root)")
    parser.add_argument("--epochs", type=int, help="train.epochs")
    parser.add_argument("--batch-size", type=int, help="train.batch_size")
    parser.add_argument("--threads", type=int, help="train.threads (torch.set_num_threads)")
    parser.add_argument("--device", choices=CHOICES["train.device"], help="train.device")


def flag_overrides(args: argparse.Namespace) -> Dict[str, Any]:
    """Direct flags as a nested mapping (applied after ``--set``)."""
    mapping = {"out": ("log", "out"), "root": ("data", "root"), "epochs": ("train", "epochs"),
               "batch_size": ("train", "batch_size"), "threads": ("train", "threads"),
               "device": ("train", "device")}
    out: Dict[str, Any] = {}
    for attr, (section, key) in mapping.items():
        v = getattr(args, attr, None)
        if v is not None:
            out.setdefault(section, {})[key] = v
    return out
