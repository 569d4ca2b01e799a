"""The node's parameters as one validated config object (no rclpy).

The node declares every field of :class:`NodeConfig` as a ROS parameter with the
description below, and builds the object with :meth:`NodeConfig.from_dict`; bad
values raise :class:`ConfigError` naming the valid options.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Mapping, Tuple

from .backends import backend_names
from .classes import VARIANTS

TRANSPORTS = ("raw", "compressed")
RELIABILITIES = ("best_effort", "reliable")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class NodeConfig:
    backend: str = "tflite_int8"
    model_path: str = ""
    input_width: int = 0
    input_height: int = 0
    num_threads: int = 2
    transport: str = "raw"
    min_object_area: int = 200
    overlay_alpha: float = 0.5
    class_variant: str = "full"
    qos_reliability: str = "best_effort"
    qos_depth: int = 1
    max_image_pixels: int = 4096 * 4096
    stall_timeout_s: float = 2.0
    diagnostics_period_s: float = 1.0
    use_depth: bool = False
    depth_sync_tolerance_s: float = 0.02
    resolve_size_pairs: bool = True

    def validate(self) -> "NodeConfig":
        names = backend_names()
        if self.backend not in names:
            raise ConfigError(f"backend {self.backend!r} is not one of {list(names)}")
        if self.transport not in TRANSPORTS:
            raise ConfigError(f"transport {self.transport!r} is not one of {list(TRANSPORTS)}")
        if self.qos_reliability not in RELIABILITIES:
            raise ConfigError(f"qos_reliability {self.qos_reliability!r} is not one of {list(RELIABILITIES)}")
        if self.class_variant not in VARIANTS:
            raise ConfigError(f"class_variant {self.class_variant!r} is not one of {list(VARIANTS)}")
        if not 1 <= self.num_threads <= 64:
            raise ConfigError(f"num_threads {self.num_threads} must be in 1..64")
        for name in ("input_width", "input_height", "min_object_area"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0 (0 = model default), got {getattr(self, name)}")
        if not 0.0 <= self.overlay_alpha <= 1.0:
            raise ConfigError(f"overlay_alpha {self.overlay_alpha} must be in [0, 1]")
        if not 1 <= self.qos_depth <= 100:
            raise ConfigError(f"qos_depth {self.qos_depth} must be in 1..100")
        if self.max_image_pixels < 1:
            raise ConfigError("max_image_pixels must be >= 1")
        if self.stall_timeout_s <= 0 or self.diagnostics_period_s <= 0:
            raise ConfigError("stall_timeout_s and diagnostics_period_s must be > 0")
        if not 0.0 <= self.depth_sync_tolerance_s <= 1.0:
            raise ConfigError(f"depth_sync_tolerance_s {self.depth_sync_tolerance_s} must be in [0, 1]")
        return self

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "NodeConfig":
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown parameter(s) {unknown}; valid: {sorted(known)}")
        kwargs = {k: _coerce(k, v, type(getattr(cls, k))) for k, v in values.items()}
        return cls(**kwargs).validate()

    def replace(self, **changes: Any) -> "NodeConfig":
        d = asdict(self)
        d.update(changes)
        return NodeConfig.from_dict(d)

    def backend_key(self) -> Tuple[Any, ...]:
        """Fields whose change needs a new backend."""
        return (self.backend, self.model_path, self.num_threads, self.input_width, self.input_height)

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _coerce(name: str, value: Any, typ: type) -> Any:
    """Accept ints for float fields and integral floats for int fields; bools only for bool fields."""
    ok = (typ is bool and isinstance(value, bool)) or (not isinstance(value, bool)) and (
        (typ is str and isinstance(value, str))
        or (typ is int and (isinstance(value, int) or (isinstance(value, float) and value.is_integer())))
        or (typ is float and isinstance(value, (int, float))))
    if not ok:
        raise ConfigError(f"parameter {name}={value!r} must be of type {typ.__name__}")
    return typ(value)


DESCRIPTIONS: Dict[str, str] = {
    "backend": "inference backend; one of " + ", ".join(backend_names()),
    "model_path": "model file overriding the backend's shipped model ('' = shipped model)",
    "input_width": "model input width (0 = the model's own; fixed-shape models reject other values)",
    "input_height": "model input height (0 = the model's own)",
    "num_threads": "CPU threads for the inference runtime",
    "transport": "raw (sensor_msgs/Image on 'image') or compressed (CompressedImage on 'image/compressed')",
    "min_object_area": "connected components smaller than this many pixels get no instance id",
    "overlay_alpha": "class colour weight in /segmentation/overlay",
    "class_variant": "class set of the model: " + ", ".join(VARIANTS),
    "qos_reliability": "input QoS reliability: best_effort (sensor data) or reliable",
    "qos_depth": "input QoS history depth",
    "max_image_pixels": "frames with more pixels are rejected before decoding",
    "stall_timeout_s": "no frame for this long = camera stall warning in diagnostics",
    "diagnostics_period_s": "period of /diagnostics",
    "use_depth": "subscribe to 'depth' (registered to the colour image, 16UC1 mm or 32FC1 m) and 'camera_info' and "
                 "publish 3D boxes (segmentation/object_markers, object_poses, detections_3d); start-up only",
    "depth_sync_tolerance_s": "a depth image pairs with the colour frame of the same stamp, or the nearest one at "
                              "most this far apart",
    "resolve_size_pairs": "report an object of a size pair (f20_20/s40_40, m20/m30) as its twin when depth measures "
                          "it closer to the twin's size",
}
