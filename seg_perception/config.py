"""The node's parameters as one validated config object (no rclpy).

:data:`PARAMS` says, once, what each parameter of :class:`NodeConfig` means, its valid range
or choices and whether it can change only at start-up; the node turns each into a ROS
parameter descriptor (so ``ros2 param describe`` shows the rules) and builds the object with
:meth:`NodeConfig.from_dict` or, at start-up, :func:`startup_config` (bad values fall back to
their default one by one, each with its reason). Bad values raise :class:`ConfigError`
naming the valid options.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from .backends import FLIP_MODES, backend_names
from .classes import VARIANTS

TRANSPORTS = ("raw", "compressed")
RELIABILITIES = ("best_effort", "reliable")

Number = int | float


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ParamSpec:
    """What a parameter means and which values it takes."""

    description: str
    range: tuple[Number, Number] | None = None  # inclusive
    choices: tuple[str, ...] | None = None
    startup_only: bool = False  # read-only after start-up (needs a new subscription / timer)


PARAMS: dict[str, ParamSpec] = {
    "backend": ParamSpec("inference backend", choices=backend_names()),
    "model_path": ParamSpec("model file overriding the backend's shipped model ('' = shipped model)"),
    "input_width": ParamSpec(
        "model input width (0 = the model's own; fixed-shape models reject other values)", range=(0, 8192)
    ),
    "input_height": ParamSpec("model input height (0 = the model's own)", range=(0, 8192)),
    "num_threads": ParamSpec("CPU threads for the inference runtime", range=(1, 64)),
    "transport": ParamSpec(
        "raw (sensor_msgs/Image on 'image') or compressed (CompressedImage on 'image/compressed', JPEG or PNG data)",
        choices=TRANSPORTS,
        startup_only=True,
    ),
    "min_object_area": ParamSpec(
        "connected components smaller than this many pixels get no instance id", range=(0, 100_000_000)
    ),
    "overlay_alpha": ParamSpec("class colour weight in segmentation/overlay", range=(0.0, 1.0)),
    "class_variant": ParamSpec(
        "class set of a model_path outside the manifest (a manifest model must agree with its entry)", choices=VARIANTS
    ),
    "qos_reliability": ParamSpec(
        "input QoS reliability: best_effort (sensor data) or reliable", choices=RELIABILITIES, startup_only=True
    ),
    "qos_depth": ParamSpec("input QoS history depth", range=(1, 100), startup_only=True),
    "output_qos_reliability": ParamSpec(
        "outputs' QoS reliability: reliable, or best_effort for viewers on a "
        "lossy link (a reliable subscriber does not match best_effort)",
        choices=RELIABILITIES,
        startup_only=True,
    ),
    "max_image_pixels": ParamSpec("frames with more pixels are rejected before decoding", range=(1, 1 << 28)),
    "stall_timeout_s": ParamSpec(
        "no frame for this long while active = camera stall warning in diagnostics", range=(0.05, 3600.0)
    ),
    "diagnostics_period_s": ParamSpec("period of /diagnostics", range=(0.05, 60.0), startup_only=True),
    "autostart": ParamSpec(
        "configure and activate the lifecycle node at start-up (false: wait for lifecycle transitions)",
        startup_only=True,
    ),
    "use_depth": ParamSpec(
        "subscribe to 'depth' (registered to the colour image, 16UC1 mm or 32FC1 m) and "
        "'camera_info' and publish 3D boxes (segmentation/object_markers, object_poses, "
        "detections_3d)",
        startup_only=True,
    ),
    "depth_sync_tolerance_s": ParamSpec(
        "a depth image pairs with the colour frame of the same stamp, or the nearest one at most this far apart",
        range=(0.0, 1.0),
    ),
    "flip_average": ParamSpec(
        "also run the model on the mirror image and average the scores (twice the inference time): on, "
        "off, or auto = on where it paid on held-out capture runs (onnx_fcn8s_pruned)",
        choices=FLIP_MODES,
    ),
    "resolve_size_pairs": ParamSpec(
        "report an object of a size pair (f20_20/s40_40, m20/m30) as its twin when "
        "depth measures it closer to the twin's size"
    ),
}


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
    output_qos_reliability: str = "reliable"
    max_image_pixels: int = 4096 * 4096
    stall_timeout_s: float = 2.0
    diagnostics_period_s: float = 1.0
    autostart: bool = True
    use_depth: bool = False
    depth_sync_tolerance_s: float = 0.02
    resolve_size_pairs: bool = True
    flip_average: str = "auto"

    def validate(self) -> NodeConfig:
        for f in fields(self):
            check_value(f.name, getattr(self, f.name))
        return self

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> NodeConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown parameter(s) {unknown}; valid: {sorted(known)}")
        return cls(**{k: coerce(k, v) for k, v in values.items()}).validate()

    def replace(self, **changes: Any) -> NodeConfig:
        d = asdict(self)
        d.update(changes)
        return NodeConfig.from_dict(d)

    def backend_key(self) -> tuple[Any, ...]:
        """Fields whose change needs a new backend."""
        return (
            self.backend,
            self.model_path,
            self.num_threads,
            self.input_width,
            self.input_height,
            self.class_variant,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def field_type(name: str) -> type:
    return type(getattr(NodeConfig, name))


def coerce(name: str, value: Any) -> Any:
    """Accept ints for float fields and integral floats for int fields (as ROS users write them), and
    true/false for a choice of on/off (ROS reads ``-p flip_average:=off`` as YAML, a bool); nothing else."""
    typ = field_type(name)
    choices = PARAMS[name].choices or ()
    if typ is str and isinstance(value, bool) and "on" in choices and "off" in choices:
        return "on" if value else "off"
    if typ is bool:
        ok = isinstance(value, bool)
    else:
        ok = (not isinstance(value, bool)) and (
            (typ is str and isinstance(value, str))
            or (typ is int and (isinstance(value, int) or (isinstance(value, float) and value.is_integer())))
            or (typ is float and isinstance(value, (int, float)))
        )
    if not ok:
        raise ConfigError(f"parameter {name}={value!r} must be of type {typ.__name__}")
    return typ(value)


def check_value(name: str, value: Any) -> None:
    """One parameter against its :data:`PARAMS` rule; raises :class:`ConfigError` with the valid values."""
    spec = PARAMS[name]
    if spec.choices is not None and value not in spec.choices:
        raise ConfigError(f"{name} {value!r} is not one of {list(spec.choices)}")
    if spec.range is not None:
        lo, hi = spec.range
        if not lo <= value <= hi:
            raise ConfigError(f"{name} {value} must be in [{lo}, {hi}]")


def startup_config(values: Mapping[str, Any]) -> tuple[NodeConfig, dict[str, str]]:
    """The config to start with: each given value that is valid, the default for each that is not.

    Returns the config and ``{name: reason}`` for every value that was refused, so one bad value
    neither stops the node nor discards the valid ones beside it.
    """
    defaults = NodeConfig().as_dict()
    chosen: dict[str, Any] = {}
    faults: dict[str, str] = {}
    for name, value in values.items():
        if name not in defaults:
            faults[name] = f"unknown parameter {name!r}; valid: {sorted(defaults)}"
            continue
        try:
            v = coerce(name, value)
            check_value(name, v)
        except ConfigError as e:
            faults[name] = f"{e}; using the default {defaults[name]!r}"
            continue
        chosen[name] = v
    return NodeConfig(**{**defaults, **chosen}), faults
