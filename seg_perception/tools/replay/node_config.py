"""The node configuration a replay uses: ``-p KEY=VALUE`` parsing, the NodeConfig both modes share,
the ROS parameter strings for a started node and the class set it will use."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ..bag_plan import ReplayPlan
from ..errors import UsageError

LOG = logging.getLogger("seg_replay")


def parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    """``key=value`` strings -> typed values following :class:`NodeConfig`'s field types."""
    from ...config import NodeConfig

    defaults = NodeConfig().as_dict()
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or key not in defaults:
            raise UsageError(f"-p {pair!r}: expected KEY=VALUE with KEY one of {sorted(defaults)}")
        typ = type(defaults[key])
        try:
            if typ is bool:  # bool("false") is True
                if value.strip().lower() not in ("true", "false"):
                    raise ValueError(value)
                out[key] = value.strip().lower() == "true"
            else:
                out[key] = typ(float(value)) if typ is int else typ(value)
        except ValueError:
            raise UsageError(f"-p {pair!r}: {key} needs a {typ.__name__}") from None
    return out


def node_config(backend: str, model_path: str, params: dict[str, Any], compressed: bool) -> Any:
    """The NodeConfig both modes use: live passes the same values to the node as ROS parameters."""
    from ...config import ConfigError, NodeConfig

    values = {
        **params,
        "backend": backend,
        "model_path": model_path,
        "transport": "compressed" if compressed else "raw",
    }
    try:
        return NodeConfig.from_dict(values)
    except ConfigError as e:
        raise UsageError(str(e)) from e


def ros_param_values(cfg: Any, given: dict[str, Any]) -> dict[str, str]:
    """The given -p values plus backend/model/transport, formatted so ROS parses the declared type."""
    keys = set(given) | {"backend", "model_path", "transport"}
    out = {}
    for k in sorted(keys):
        v = getattr(cfg, k)
        if k == "model_path" and not v:
            continue
        out[k] = repr(float(v)) if isinstance(v, float) else str(v)
    return out


def class_set_for(cfg: Any) -> Any:
    """The class set the node will use, without loading the model (same rule as make_segmenter)."""
    from ...backends import BACKENDS
    from ...classes import load_classes
    from ...manifest import Manifest, ManifestError

    variant = cfg.class_variant
    spec = BACKENDS.get(cfg.backend)
    if not cfg.model_path and spec is not None and spec.entry:
        try:
            entry = Manifest.load().entries.get(spec.entry)
        except ManifestError as e:
            LOG.warning("model manifest unreadable (%s); assuming class variant %s", e, variant)
            entry = None
        if entry is not None:
            variant = entry.class_variant
    return load_classes(variant)


def check_gt_variant(plan: ReplayPlan, classes: Any, warnings: list[str]) -> None:
    if plan.gt_topic and plan.gt_variant and plan.gt_variant != classes.variant:
        msg = (
            f"ground truth in the bag uses class variant {plan.gt_variant!r}, the model "
            f"{classes.variant!r}: IoU values compare different class sets"
        )
        LOG.warning("%s", msg)
        warnings.append(msg)
