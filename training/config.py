"""Training configuration: defaults < YAML file < ``--set key.sub=value`` < direct flags.

:class:`TrainingConfig` holds one frozen dataclass per section (``model``, ``data``, ``train``,
``init``, ``distill``, ``log``); every key has a default there. A YAML file or an override may only
change existing keys (a typo is an error that lists the valid keys), except inside the free-form
mappings ``model.kwargs`` and ``data.augment``, which their owners validate (the model builder,
:func:`training.data.augment.build_train_transform`). Keys renamed since a config was written
(:data:`RENAMED_KEYS`) are still read, with a deprecation line in the log.

Where a plain mapping is stored (checkpoints, manifests, ``config.yaml``), :func:`to_plain` of
the config is stored; :func:`build_config` reads such a mapping back. The resolved config is
written as ``config.yaml`` beside every checkpoint and artifact so a run can be reproduced from
its output folder alone.

Paths are relative to the working directory (the project root for the documented commands).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import logging
import os
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from seg_perception.atwork import SPLIT_KINDS, SplitSpec
from seg_perception.classes import VARIANTS
from seg_perception.plain import to_plain

from .losses import CLASS_WEIGHTINGS, LOSSES

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("poly", "cosine", "none")
DEVICES = ("auto", "cpu", "cuda")

#: old dotted key -> its current name (configs, ``--set`` and checkpoints written before the rename)
RENAMED_KEYS: dict[str, str] = {"init.peer_tflite": "init.reference_tflite"}


class ConfigError(ValueError):
    """Unknown key, wrong type or out-of-range value in a training config."""


# --------------------------------------------------------------------------- field kinds


def _choice(default: str, options: tuple[str, ...]) -> Any:
    return field(default=default, metadata={"choices": options})


def _positive(default: Any) -> Any:
    return field(default=default, metadata={"bound": "positive"})


def _non_negative(default: Any) -> Any:
    return field(default=default, metadata={"bound": "non_negative"})


def _free_form() -> Any:
    """A mapping passed through to its owner, merged key by key across layers."""
    return field(default_factory=dict)


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class ModelSection:
    name: str = "deeplabv3plus_mobilenetv2"  # a name of training.models.MODEL_NAMES
    kwargs: dict[str, Any] = _free_form()  # constructor kwargs (width, p/q, ...), checked by the builder

    def validate(self) -> None:
        if not self.name:
            raise ConfigError("model.name must be a non-empty string")


@dataclass(frozen=True)
class DataSection:
    root: str = "../shared/datasets/atwork"  # real atWork photos (objects/image, objects/semantic_labels)
    variant: str = _choice("full", VARIANTS)  # class variant of config/classes.yaml
    height: int = _positive(256)
    width: int = _positive(320)
    split: str = _choice("run", SPLIT_KINDS)  # run: whole capture runs held out (config/atwork_runs.yaml)
    folds: int = 5  # run split: contiguous folds of capture runs per class
    val_fold: int = -1  # run split: the validation fold (-1 = the last: the latest runs)
    val_fraction: float = 0.2  # random split only
    split_seed: int = 0  # random split only
    synthetic: list[str] = field(default_factory=list)  # generator output folders mixed into the train split
    real_repeats: int = _positive(1)  # how often the real train photos appear per epoch (balances vs synthetic)
    # final-model mode: the validation photos join the training photos (recipe and epoch count chosen
    # beforehand on the split); validation still runs but then measures memory, so take last.pt
    train_on_val: bool = False
    preresize: bool = False  # resize photos to height x width before augmenting (faster, blurrier crops)
    augment: dict[str, Any] = _free_form()  # options of training.data.augment.build_train_transform
    num_workers: int = _non_negative(2)

    def split_spec(self) -> SplitSpec:
        return SplitSpec(
            kind=self.split,
            folds=self.folds,
            val_fold=self.val_fold,
            val_fraction=self.val_fraction,
            seed=self.split_seed,
        )

    def validate(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in (0, 1), got {self.val_fraction}")
        try:
            self.split_spec()
        except ValueError as e:
            raise ConfigError(f"data: {e}") from None


@dataclass(frozen=True)
class TrainSection:
    epochs: int = _positive(30)
    batch_size: int = _positive(8)
    val_batch_size: int = _positive(8)
    optimizer: str = _choice("adamw", OPTIMIZERS)
    lr: float = _positive(1.0e-3)
    weight_decay: float = _non_negative(1.0e-4)
    momentum: float = _non_negative(0.9)
    scheduler: str = _choice("poly", SCHEDULERS)
    poly_power: float = _non_negative(0.9)
    warmup_iters: int = _non_negative(0)
    min_lr: float = _non_negative(0.0)
    loss: str = _choice("ce+dice", LOSSES)
    dice_weight: float = _non_negative(1.0)
    class_weights: str = _choice("none", CLASS_WEIGHTINGS)
    ignore_index: int = 255
    grad_clip: float = _non_negative(0.0)  # max grad norm; 0 = off
    seed: int = 0
    threads: int = _non_negative(2)  # torch.set_num_threads per process; 0 = torch's default
    device: str = _choice("auto", DEVICES)  # auto: cuda if available
    amp: bool = False  # mixed precision, CUDA only
    sync_bn: bool = False  # SyncBatchNorm under DDP on CUDA
    max_iters_per_epoch: int = _non_negative(0)  # 0 = whole epoch; >0 for smoke runs / timing
    val_every: int = _positive(1)
    # submodules kept as initialised (no gradient, batch norm on its running statistics), e.g. the
    # pretrained early encoder blocks: less to overfit on few photos, and no backward pass through them
    freeze: list[str] = field(default_factory=list)

    def validate(self) -> None:
        if self.momentum >= 1.0:
            raise ConfigError("train.momentum must be < 1")


@dataclass(frozen=True)
class InitSection:
    # the official TFLite DeepLab v3 model whose encoder (+ ASPP when it fits) initialises deeplabv3plus_mobilenetv2
    reference_tflite: str | None = None
    espnet_weights: str | None = None  # the ESPNet authors' released .pth (training.models.espnet_import)
    checkpoint: str | None = None  # start from these model weights (fine-tuning), not a resume


@dataclass(frozen=True)
class DistillSection:
    teacher: str | None = None  # checkpoint of a trained model whose soft predictions the student also learns
    weight: float = 0.5  # loss = (1 - weight) * label loss + weight * T^2 * KL(teacher_T || student_T)
    temperature: float = _positive(2.0)

    def validate(self) -> None:
        if not 0.0 <= self.weight <= 1.0:
            raise ConfigError(f"distill.weight must be in [0, 1], got {self.weight}")


@dataclass(frozen=True)
class LogSection:
    out: str = "runs/default"
    progress: bool = True  # tqdm bar per epoch (rank 0 only)
    plots: bool = True


@dataclass(frozen=True)
class TrainingConfig:
    """The resolved training config; build it with :func:`build_config` (validated)."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    init: InitSection = field(default_factory=InitSection)
    distill: DistillSection = field(default_factory=DistillSection)
    log: LogSection = field(default_factory=LogSection)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> TrainingConfig:
        """From a plain mapping (a stored config; missing keys take their defaults)."""
        return build_config(base=values)

    def updated(self, changes: Mapping[str, Any]) -> TrainingConfig:
        """A copy with ``changes`` (a nested mapping) applied and validated."""
        return build_config(base=to_plain(self), flags=changes)


# --------------------------------------------------------------------------- schema helpers


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_section(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _is_free_form(hint: Any) -> bool:
    return hint == dict[str, Any]


def _keys_of(cls: type, prefix: str = "") -> list[str]:
    keys = []
    for name, hint in _hints(cls).items():
        keys.extend(_keys_of(hint, f"{prefix}{name}.") if _is_section(hint) else [f"{prefix}{name}"])
    return keys


def valid_keys() -> list[str]:
    """All settable dotted keys (free-form mappings as one key)."""
    return _keys_of(TrainingConfig)


# --------------------------------------------------------------------------- layering


def _unknown(key: str, cls: type, prefix: str) -> ConfigError:
    here = sorted(f"{prefix}{name}" for name in _hints(cls))
    return ConfigError(f"unknown config key {key!r}; valid keys here: {', '.join(here)}")


def _deep_update(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = copy.deepcopy(v)
    return base


def _merge(base: dict[str, Any], update: Mapping[str, Any], cls: type, prefix: str = "") -> None:
    """Merge ``update`` into the plain ``base`` in place, refusing keys that ``cls`` lacks."""
    hints = _hints(cls)
    for k, v in update.items():
        full = f"{prefix}{k}"
        if k not in hints:
            raise _unknown(full, cls, prefix)
        hint = hints[k]
        if _is_section(hint):
            if not isinstance(v, Mapping):
                raise ConfigError(f"{full} is a section; expected a mapping, got {v!r}")
            _merge(base[k], v, hint, full + ".")
        elif _is_free_form(hint):
            if v is None:
                v = {}
            if not isinstance(v, Mapping):
                raise ConfigError(f"{full} must be a mapping, got {type(v).__name__}")
            base[k] = _deep_update(copy.deepcopy(base.get(k) or {}), v)
        else:
            base[k] = copy.deepcopy(v)


def _renamed(layer: Mapping[str, Any], source: str) -> Mapping[str, Any]:
    """``layer`` with the old names of :data:`RENAMED_KEYS` moved to the current ones."""
    out: dict[str, Any] | None = None
    for old, new in RENAMED_KEYS.items():
        (old_section, old_key), (new_section, new_key) = old.split("."), new.split(".")
        section = layer.get(old_section)
        if not isinstance(section, Mapping) or old_key not in section:
            continue
        if out is None:
            out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in layer.items()}
        value = out[old_section].pop(old_key)
        target = out.setdefault(new_section, {})
        if new_key in target and target[new_key] != value:
            raise ConfigError(
                f"{source}: {old} (the old name of {new}) and {new} disagree: {value!r} vs {target[new_key]!r}"
            )
        target[new_key] = value
        log.warning("%s: config key %s is deprecated, read as %s", source, old, new)
    return layer if out is None else out


def parse_override(text: str) -> dict[str, Any]:
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
    nested: dict[str, Any] = {}
    cur = nested
    parts = key.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return nested


# --------------------------------------------------------------------------- values


def _path_or_none(key: str, value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise ConfigError(f"{key} must be a path string or null, got {value!r}")


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true/false, got {value!r}")
    return value


def _int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    return int(value)


def _float(key: str, value: Any) -> float:
    if isinstance(value, str):  # PyYAML reads "1e-3" (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    return float(value)


def _str(key: str, value: Any) -> str:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a string, got {value!r}")
    return value


def _paths(key: str, value: Any) -> list[str]:
    """A list of paths; one path or null are read as a list of one or none."""
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(f"{key} must be a list, got {value!r}")
    items = [os.fspath(v) if isinstance(v, os.PathLike) else v for v in value]
    if not all(isinstance(v, str) for v in items):
        raise ConfigError(f"{key} must be a list of paths, got {value!r}")
    return items


def _mapping(key: str, value: Any) -> dict[str, Any]:
    return copy.deepcopy(dict(value))  # a free-form mapping, already checked by _merge


#: a field's type -> the function that checks and converts a value for it
_COERCE: dict[Any, Callable[[str, Any], Any]] = {
    str | None: _path_or_none,
    bool: _bool,
    int: _int,
    float: _float,
    str: _str,
    list[str]: _paths,
    dict[str, Any]: _mapping,
}


def _check(key: str, value: Any, metadata: Mapping[str, Any]) -> None:
    choices = metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{key}={value!r} not in {list(choices)}")
    bound = metadata.get("bound")
    if bound == "positive" and not value > 0:
        raise ConfigError(f"{key} must be > 0, got {value!r}")
    if bound == "non_negative" and not value >= 0:
        raise ConfigError(f"{key} must be >= 0, got {value!r}")


def _build(cls: type, values: Mapping[str, Any], prefix: str = "") -> Any:
    """The (validated) dataclass ``cls`` from a merged plain mapping holding every key."""
    hints = _hints(cls)
    kwargs = {}
    for f in fields(cls):
        full, hint = f"{prefix}{f.name}", hints[f.name]
        if _is_section(hint):
            kwargs[f.name] = _build(hint, values[f.name], full + ".")
            continue
        kwargs[f.name] = _COERCE[hint](full, values[f.name])
        _check(full, kwargs[f.name], f.metadata)
    obj = cls(**kwargs)
    if hasattr(obj, "validate"):
        obj.validate()
    return obj


def build_config(
    file_cfg: Mapping[str, Any] | None = None,
    overrides: Iterable[str] = (),
    base: Mapping[str, Any] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> TrainingConfig:
    """Defaults < ``base`` (e.g. a checkpoint's config) < ``file_cfg`` < ``--set`` overrides < flags, validated."""
    merged = to_plain(TrainingConfig())
    layers = [("stored config", base), ("config file", file_cfg)]
    layers += [(f"--set {o}", parse_override(o)) for o in overrides]
    layers.append(("flags", flags))
    for source, layer in layers:
        if layer:
            if not isinstance(layer, Mapping):
                raise ConfigError(f"{source}: top level must be a mapping")
            _merge(merged, _renamed(layer, source), TrainingConfig)
    return _build(TrainingConfig, merged)


# --------------------------------------------------------------------------- files and storage


def load_yaml(path: os.PathLike) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f) or {}
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the file: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return doc


def load_config(path: os.PathLike | None = None, overrides: Iterable[str] = ()) -> TrainingConfig:
    """Load a YAML config file (optional) and apply ``key.sub=value`` overrides."""
    file_cfg = load_yaml(path) if path else None  # its errors name the file
    try:
        return build_config(file_cfg, overrides)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None


def save_config(cfg: Any, directory: os.PathLike, name: str = "config.yaml") -> Path:
    """Write the resolved config (a :class:`TrainingConfig` or its plain form) as ``config.yaml`` in ``directory``."""
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
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.lr=3e-4 (repeatable)",
    )
    parser.add_argument("--out", help="output folder (log.out)")
    parser.add_argument("--root", help="atWork dataset root (data.root)")
    parser.add_argument("--epochs", type=int, help="train.epochs")
    parser.add_argument("--batch-size", type=int, help="train.batch_size")
    parser.add_argument("--threads", type=int, help="train.threads (torch.set_num_threads)")
    parser.add_argument("--device", choices=DEVICES, help="train.device")


#: direct flag (argparse dest) -> the key it sets
FLAG_KEYS: dict[str, tuple[str, str]] = {
    "out": ("log", "out"),
    "root": ("data", "root"),
    "epochs": ("train", "epochs"),
    "batch_size": ("train", "batch_size"),
    "threads": ("train", "threads"),
    "device": ("train", "device"),
}


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Direct flags as a nested mapping (applied after ``--set``)."""
    out: dict[str, Any] = {}
    for attr, (section, key) in FLAG_KEYS.items():
        v = getattr(args, attr, None)
        if v is not None:
            out.setdefault(section, {})[key] = v
    return out
