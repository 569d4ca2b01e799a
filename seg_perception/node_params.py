"""How the node's parameters look to ROS (rclpy): descriptors, and values as ROS users type them.

The rules themselves (names, types, ranges, choices, start-up only) live in
:mod:`seg_perception.config`; this module only turns them into rclpy objects. What a change does to
the running node (a new backend, flip averaging) stays with the node
(``SegmentationNode._on_set_parameters``).
"""

from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.parameter import Parameter

from .config import PARAMS, ConfigError, coerce, field_type

#: parameters rclpy or the node itself declares, beside :data:`~seg_perception.config.PARAMS`
RCLPY_PARAMS = frozenset({"use_sim_time", "start_type_description_service", "class_names"})


def parameter_descriptor(name: str) -> ParameterDescriptor:
    """ROS descriptor of a :data:`~seg_perception.config.PARAMS` entry: ranges, choices, read-only."""
    spec = PARAMS[name]
    # Typed by the node, not by rclpy: its own type error names neither the parameter nor the types
    # (and an int for a float is fine here); see SegmentationNode._on_set_parameters.
    d = ParameterDescriptor(description=spec.description, read_only=spec.startup_only, dynamic_typing=True)
    if spec.choices is not None:
        d.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.range is not None:
        lo, hi = spec.range
        if field_type(name) is int:
            d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
        else:
            d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
    if spec.startup_only:
        d.description += " (start-up only)"
    return d


def coerce_numbers(params: list[Parameter]) -> list[Parameter]:
    """The node's pre-set callback: an int for a float parameter (or an integral float for an int) as
    ROS users write it, and a bool for an on/off choice (``ros2 param set ... flip_average off``
    arrives as false). Values that cannot be coerced pass unchanged: the on-set callback refuses them
    with the reason."""
    out = []
    for p in params:
        if p.name in PARAMS and (
            (field_type(p.name) in (int, float) and p.type_ in (Parameter.Type.INTEGER, Parameter.Type.DOUBLE))
            or (field_type(p.name) is str and p.type_ == Parameter.Type.BOOL)
        ):
            try:
                p = Parameter(p.name, value=coerce(p.name, p.value))
            except ConfigError:
                pass  # 2.5 for an int: the on-set callback answers with the reason
        out.append(p)
    return out


def descriptor_type_of(value: Any) -> int:
    """The ParameterType a descriptor should name for ``value`` (what the node runs with)."""
    return Parameter.Type.from_parameter_value(value).value
