"""Known answers for the parameters' ROS side (seg_perception.node_params): descriptors and coercion."""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy")
from rclpy.parameter import Parameter  # noqa: E402

from seg_perception.config import PARAMS  # noqa: E402
from seg_perception.node_params import RCLPY_PARAMS, coerce_numbers, descriptor_type_of, parameter_descriptor  # noqa: E402


def test_descriptor_of_a_runtime_int_range():
    d = parameter_descriptor("num_threads")
    assert not d.read_only and d.dynamic_typing
    assert [(r.from_value, r.to_value) for r in d.integer_range] == [(1, 64)]
    assert not d.floating_point_range


def test_descriptor_of_a_startup_float_range_is_read_only_and_says_so():
    d = parameter_descriptor("diagnostics_period_s")
    assert d.read_only and d.description.endswith("(start-up only)")
    assert [(r.from_value, r.to_value) for r in d.floating_point_range] == [(0.05, 60.0)]
    assert not d.integer_range


def test_descriptor_of_a_choice_names_every_value():
    d = parameter_descriptor("flip_average")
    assert d.additional_constraints == "one of: " + ", ".join(PARAMS["flip_average"].choices)


def test_coerce_numbers_as_ros_users_type_them():
    out = coerce_numbers(
        [
            Parameter("overlay_alpha", value=1),  # int for a float
            Parameter("num_threads", value=3.0),  # integral float for an int
            Parameter("flip_average", value=False),  # `ros2 param set ... flip_average off` arrives as false
            Parameter("num_threads", value=2.5),  # not integral: left for the on-set callback to refuse
            Parameter("not_ours", value=1),
        ]
    )
    assert [(p.name, p.value) for p in out] == [
        ("overlay_alpha", 1.0),
        ("num_threads", 3),
        ("flip_average", "off"),
        ("num_threads", 2.5),
        ("not_ours", 1),
    ]
    assert out[0].type_ == Parameter.Type.DOUBLE and out[1].type_ == Parameter.Type.INTEGER


def test_descriptor_type_and_the_names_rclpy_owns():
    assert descriptor_type_of(0.5) == Parameter.Type.DOUBLE.value
    assert descriptor_type_of("tflite_int8") == Parameter.Type.STRING.value
    assert not RCLPY_PARAMS & set(PARAMS)
