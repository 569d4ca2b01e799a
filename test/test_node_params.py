"""Parameters, model faults and lifecycle on an in-process node (real rclpy, no mocks)."""

from __future__ import annotations

import gc
import time
import weakref

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from colour_model import make_colour_model  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from seg_perception.config import PARAMS, NodeConfig  # noqa: E402
from seg_perception.encodings import rgb_to_fields  # noqa: E402

ERROR, WARN, OK = b"\x02", b"\x01", b"\x00"


def _frame():
    from sensor_msgs.msg import Image

    f = rgb_to_fields(np.zeros((48, 64, 3), np.uint8))
    m = Image()
    m.height, m.width, m.encoding, m.step, m.data = f.height, f.width, f.encoding, f.step, f.data
    return m


@pytest.fixture()
def ctx():
    c = rclpy.Context()
    rclpy.init(context=c)
    yield c
    c.try_shutdown()


def _node(ctx, **params):
    from seg_perception.node import SegmentationNode

    return SegmentationNode(context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])


def _spin_until(node, ctx, cond, timeout=10.0) -> bool:
    ex = rclpy.executors.SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    end = time.monotonic() + timeout
    try:
        while not cond() and time.monotonic() < end:
            ex.spin_once(timeout_sec=0.05)
    finally:
        ex.remove_node(node)
    return cond()


@pytest.fixture()
def model_a(tmp_path):
    make_colour_model(tmp_path / "a", name="a")
    return str(tmp_path / "a" / "a.onnx")


def test_invalid_changes_rejected_with_reason_and_valid_switch_applies(ctx, tmp_path, model_a):
    make_colour_model(tmp_path / "b", name="b", hw=(96, 128))
    node = _node(ctx, backend="onnx", model_path=model_a)
    try:
        assert node._segmenter.backend.input_hw == (128, 160)
        r = node.set_parameters([Parameter("backend", value="resnet")])[0]
        assert not r.successful and "tflite_int8" in r.reason
        r = node.set_parameters([Parameter("overlay_alpha", value=3.0)])[0]
        assert not r.successful and "overlay_alpha" in r.reason
        r = node.set_parameters([Parameter("transport", value="compressed")])[0]
        assert not r.successful and "read-only" in r.reason
        r = node.set_parameters([Parameter("model_path", value=str(tmp_path / "missing.onnx"))])[0]
        assert not r.successful and "missing.onnx" in r.reason
        (tmp_path / "bad.onnx").write_bytes(b"\x00garbage")
        r = node.set_parameters([Parameter("model_path", value=str(tmp_path / "bad.onnx"))])[0]
        assert not r.successful and "cannot load model" in r.reason
        assert node.get_parameter("model_path").value == model_a
        node._process(_frame())
        assert node.counters.snapshot()["processed"] == 1  # old backend kept running
        r = node.set_parameters([Parameter("model_path", value=str(tmp_path / "b" / "b.onnx"))])[0]
        assert r.successful
        assert node._segmenter.backend.input_hw == (96, 128)
        node._process(_frame())
        assert node.counters.snapshot()["processed"] == 2
    finally:
        node.destroy_node()


def test_node_starts_without_model_reports_fault_and_recovers(ctx, tmp_path, model_a):
    node = _node(ctx, backend="onnx", model_path=str(tmp_path / "nope.onnx"))
    try:
        assert node._segmenter is None and node._lifecycle_state == "unconfigured"
        st = node.diagnostics_status()
        assert st.level == ERROR and "nope.onnx" in st.message
        node._process(_frame())
        assert node.counters.snapshot()["no_backend"] == 1
        r = node.set_parameters([Parameter("model_path", value=model_a)])[0]
        assert r.successful
        # autostart failed at start-up: the parameter change retries configure + activate
        assert _spin_until(node, ctx, lambda: node._lifecycle_state == "active")
        assert node.diagnostics_status().level == OK
        node._process(_frame())
        assert node.counters.snapshot()["processed"] == 1
    finally:
        node.destroy_node()


def test_bad_startup_value_falls_back_alone_and_the_parameter_says_what_runs(ctx, model_a):
    node = _node(ctx, backend="onnx", model_path=model_a, min_object_area=50, num_threads="two")
    try:
        assert node._lifecycle_state == "active"
        assert node.get_parameter("num_threads").value == 2  # the default that runs, not "two"
        assert node.get_parameter("min_object_area").value == 50  # a valid value beside it is kept
        assert node._segmenter.min_object_area == 50
        st = node.diagnostics_status()
        assert st.level == ERROR and "num_threads" in st.message and "'two'" in st.message
        # an unrelated change does not clear the error ...
        assert node.set_parameters([Parameter("overlay_alpha", value=0.3)])[0].successful
        assert node.diagnostics_status().level == ERROR
        # ... a valid value for the refused parameter does
        assert node.set_parameters([Parameter("num_threads", value=1)])[0].successful
        assert node.diagnostics_status().level == OK
    finally:
        node.destroy_node()


def _diag(node) -> dict[str, str]:
    return {kv.key: kv.value for kv in node.diagnostics_status().values}


def test_flip_average_switches_at_runtime_and_diagnostics_say_what_runs(ctx, model_a):
    node = _node(ctx, backend="onnx", model_path=model_a)
    try:
        seg = node._segmenter
        assert node.get_parameter("flip_average").value == "auto"
        assert not seg.flip_average and _diag(node)["flip_average"] == "off"  # auto: a generic backend
        calls = []
        infer = seg.backend.infer
        seg.backend.infer = lambda x: calls.append(x.shape) or infer(x)
        assert node.set_parameters([Parameter("flip_average", value="on")])[0].successful
        assert node._segmenter is seg and seg.flip_average and _diag(node)["flip_average"] == "on"  # no reload
        node._process(_frame())
        assert node.counters.snapshot()["processed"] == 1 and len(calls) == 2  # the frame and its mirror
        r = node.set_parameters([Parameter("flip_average", value="yes")])[0]
        assert not r.successful and "'auto', 'on', 'off'" in r.reason
        assert node.get_parameter("flip_average").value == "on" and seg.flip_average
        assert node.set_parameters([Parameter("flip_average", value="auto")])[0].successful
        assert not seg.flip_average and _diag(node)["flip_average"] == "off"
        # `ros2 param set ... flip_average on` arrives as a bool (YAML): taken as on, stored as "on"
        assert node.set_parameters([Parameter("flip_average", value=True)])[0].successful
        assert node.get_parameter("flip_average").value == "on" and seg.flip_average
    finally:
        node.destroy_node()


def test_flip_average_off_on_the_command_line_is_a_bool_and_still_means_off(ctx, model_a):
    node = _node(ctx, backend="onnx", model_path=model_a, flip_average=False)  # -p flip_average:=off
    try:
        assert node.get_parameter("flip_average").value == "off" and not node._segmenter.flip_average
        assert node.diagnostics_status().level == OK  # nothing refused
    finally:
        node.destroy_node()


def test_unknown_backend_at_startup_runs_the_default_and_says_so(ctx):
    node = _node(ctx, backend="does_not_exist")
    try:
        st = node.diagnostics_status()
        assert st.level == ERROR and "does_not_exist" in st.message
        assert node.get_parameter("backend").value == "tflite_int8" == node._segmenter.backend.name
    finally:
        node.destroy_node()


@pytest.mark.parametrize(
    "name, given, runs",
    [
        ("overlay_alpha", 1, 1.0),  # an int where a float is declared
        ("stall_timeout_s", 3, 3.0),
        ("num_threads", 1.0, 1),  # an integral float where an int is declared
        ("min_object_area", 50.0, 50),
    ],
)
def test_numbers_of_the_other_kind_are_accepted_at_startup_and_at_runtime(ctx, model_a, name, given, runs):
    node = _node(ctx, backend="onnx", model_path=model_a, **{name: given})
    try:
        assert node._lifecycle_state == "active" and not node._param_faults
        value = node.get_parameter(name).value
        assert value == runs and type(value) is type(runs)
        assert getattr(node.cfg, name) == runs
        r = node.set_parameters([Parameter(name, value=given)])[0]
        assert r.successful, r.reason
        value = node.get_parameter(name).value
        assert type(value) is type(runs)
    finally:
        node.destroy_node()


def test_wrong_types_at_runtime_get_a_clear_reason_and_the_descriptor_keeps_its_type(ctx, model_a):
    node = _node(ctx, backend="onnx", model_path=model_a)
    try:
        for name, bad in (("num_threads", 2.5), ("num_threads", "x"), ("backend", 7), ("overlay_alpha", "half")):
            before = node.describe_parameter(name).type
            r = node.set_parameters([Parameter(name, value=bad)])[0]
            assert not r.successful and name in r.reason and "must be of type" in r.reason, r.reason
            assert node.describe_parameter(name).type == before
            assert node.get_parameter(name).value == getattr(node.cfg, name)
    finally:
        node.destroy_node()


def test_descriptors_show_ranges_choices_and_startup_only(ctx, model_a):
    node = _node(ctx, backend="onnx", model_path=model_a)
    try:
        for name, spec in PARAMS.items():
            d = node.describe_parameter(name)
            assert d.read_only == spec.startup_only, name
            assert d.description.startswith(spec.description)
            if spec.range is not None:
                rng = d.integer_range or d.floating_point_range
                assert (rng[0].from_value, rng[0].to_value) == spec.range, name
            if spec.choices is not None:
                assert all(c in d.additional_constraints for c in spec.choices)
        r = node.set_parameters([Parameter("num_threads", value=65)])[0]
        assert not r.successful and "out of range" in r.reason
        for name in (
            "transport",
            "qos_reliability",
            "qos_depth",
            "output_qos_reliability",
            "diagnostics_period_s",
            "autostart",
        ):
            assert PARAMS[name].startup_only
        r = node.set_parameters([Parameter("class_names", value=["x"])])[0]
        assert not r.successful and "read-only" in r.reason
    finally:
        node.destroy_node()


def test_class_variant_is_applied_or_refused_and_never_breaks_later_changes(ctx, tmp_path, model_a):
    make_colour_model(tmp_path / "bin", name="bin", variant="binary")
    node = _node(ctx, backend="onnx", model_path=model_a)
    try:
        # 19-class model: a 2-class variant cannot apply, so it is refused (not stored unapplied) ...
        r = node.set_parameters([Parameter("class_variant", value="binary")])[0]
        assert not r.successful and "2" in r.reason and "19" in r.reason
        assert node.get_parameter("class_variant").value == "full"
        # ... and an unrelated change that reloads the backend still works
        assert node.set_parameters([Parameter("num_threads", value=1)])[0].successful
        # model and variant together: applied, class_names follow
        r = node.set_parameters_atomically(
            [
                Parameter("model_path", value=str(tmp_path / "bin" / "bin.onnx")),
                Parameter("class_variant", value="binary"),
            ]
        )
        assert r.successful, r.reason
        assert node._segmenter.classes.variant == "binary"
        assert node.get_parameter("class_names").value == list(node._segmenter.classes.names)
        assert len(node.get_parameter("class_names").value) == 2
    finally:
        node.destroy_node()


def test_manifest_model_refuses_a_contradicting_class_variant(ctx):
    node = _node(ctx)  # shipped tflite_int8, manifest variant "full"
    try:
        r = node.set_parameters([Parameter("class_variant", value="size_invariant")])[0]
        assert not r.successful and "manifest" in r.reason and "full" in r.reason
        assert node._segmenter.classes.variant == "full" == node.get_parameter("class_variant").value
    finally:
        node.destroy_node()


def test_camera_stall_is_a_warning_and_recovers(ctx, model_a):
    node = _node(ctx, backend="onnx", model_path=model_a, stall_timeout_s=0.2)
    try:
        node._on_image(_frame())
        time.sleep(0.3)
        st = node.diagnostics_status()
        assert st.level == WARN and "camera stall" in st.message
        node._on_image(_frame())
        assert node.diagnostics_status().level == OK
    finally:
        node.destroy_node()


def test_frames_the_camera_sent_but_the_node_never_got_are_counted_as_missed(ctx, model_a):
    node = _node(ctx, backend="onnx", model_path=model_a)
    try:

        def info(gid: bytes, seq: int) -> dict:
            return {"publication_sequence_number": seq, "publisher_gid": {"data": gid}}

        for seq in (7, 8, 12):  # 9, 10 and 11 were replaced in the input queue or lost
            node._on_image_with_info(_frame(), info(b"cam", seq))
        node._on_image_with_info(_frame(), info(b"other", 3))  # a second camera: counted apart
        node._on_image_with_info(_frame(), {"publication_sequence_number": None, "publisher_gid": None})
        c = node.counters.snapshot()
        assert (c["received"], c["missed"]) == (5, 3), c
        values = {kv.key: kv.value for kv in node.diagnostics_status().values}
        assert values["frames_missed"] == "3"
        node.trigger_deactivate()
        node.trigger_activate()  # a new subscription: frames sent while it was inactive are not missed
        node._on_image_with_info(_frame(), info(b"cam", 40))
        assert node.counters.snapshot()["missed"] == 3
    finally:
        node.destroy_node()


def test_lifecycle_deactivate_stops_inference_and_cleanup_frees_the_backend(ctx, model_a):
    node = _node(ctx, backend="onnx", model_path=model_a)
    try:
        assert node.sub is not None and node.frames.active
        node._on_image(_frame())
        assert _spin_until(node, ctx, lambda: node.counters.snapshot()["processed"] == 1)
        node.trigger_deactivate()
        assert node.sub is None and node._lifecycle_state == "inactive"
        # a frame that reached the worker anyway is not inferred while inactive
        node._on_image(_frame())
        time.sleep(0.2)
        assert node.counters.snapshot()["processed"] == 1 and not node.frames.waiting
        assert "inactive" in node.diagnostics_status().message
        backend = weakref.ref(node._segmenter.backend)
        node.trigger_cleanup()
        gc.collect()
        assert node._segmenter is None and node.pubs is None and backend() is None
        assert node.get_parameter("class_names").value == []
        assert node.diagnostics_status().level == OK
        node.trigger_configure()
        node.trigger_activate()
        assert node.sub is not None and node._segmenter is not None
    finally:
        node.destroy_node()


def test_autostart_false_waits_for_configure(ctx, model_a):
    node = _node(ctx, backend="onnx", model_path=model_a, autostart=False)
    try:
        assert node._lifecycle_state == "unconfigured" and node._segmenter is None and node.sub is None
        assert node.get_parameter("class_names").value == []
        # while unconfigured, a change is only checked and stored (the model loads at configure)
        assert node.set_parameters([Parameter("num_threads", value=1)])[0].successful
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node._segmenter.backend.num_threads == 1 and node.sub is None
    finally:
        node.destroy_node()


def test_node_config_defaults_match_the_shipped_params_file(repo_root):
    import yaml

    doc = yaml.safe_load((repo_root / "config" / "params.yaml").read_text())
    assert doc["/**"]["ros__parameters"] == NodeConfig().as_dict()


@pytest.mark.parametrize("reliability", ["reliable", "best_effort"])
def test_output_qos_follows_its_parameter(ctx, model_a, reliability):
    from rclpy.qos import ReliabilityPolicy

    node = _node(ctx, backend="onnx", model_path=model_a, output_qos_reliability=reliability)
    try:
        want = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
        assert all(
            p.qos_profile.reliability == want for p in (node.pubs.labels, node.pubs.instances, node.pubs.overlay)
        )
    finally:
        node.destroy_node()
