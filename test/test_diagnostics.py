"""The diagnostics status as a pure function: known answers, no ROS objects."""

import math

from seg_perception.diagnostics import ERROR, OK, WARN, DepthHealth, Health, status


def _health(**kw):
    base = dict(
        lifecycle_state="active",
        backend="tflite_int8",
        model_file="m.tflite",
        model_sha256="ab" * 32,
        seconds_since_last_frame=0.1,
        stall_timeout_s=2.0,
    )
    base.update(kw)
    return Health(**base)


def test_active_with_frames_is_ok():
    level, message, values = status(_health())
    assert (level, message) == (OK, "ok")
    assert values["lifecycle_state"] == "active" and values["backend"] == "tflite_int8"
    assert values["model_sha256"] == "ab" * 32 and values["seconds_since_last_frame"] == "0.10"


def test_no_frame_yet_is_ok_and_says_so():
    level, message, values = status(_health(seconds_since_last_frame=None))
    assert (level, message) == (OK, "waiting for the first frame")
    assert values["seconds_since_last_frame"] == "inf"


def test_stall_warns_only_past_the_timeout_and_only_while_active():
    assert status(_health(seconds_since_last_frame=2.0))[0] == OK
    level, message, _ = status(_health(seconds_since_last_frame=2.55))
    assert (level, message) == (WARN, "camera stall: no frame for 2.5 s")
    level, message, _ = status(_health(lifecycle_state="inactive", seconds_since_last_frame=60.0))
    assert (level, message) == (OK, "inactive: not subscribed, no inference")


def test_every_fault_is_an_error_and_listed_before_the_state():
    level, message, _ = status(
        _health(faults=("start-up value refused: x", "backend fault: y"), seconds_since_last_frame=5.0)
    )
    assert level == ERROR
    assert message == "start-up value refused: x; backend fault: y; camera stall: no frame for 5.0 s"
    level, message, _ = status(_health(lifecycle_state="unconfigured", faults=("backend fault: z",)))
    assert (level, message) == (ERROR, "backend fault: z; unconfigured: not subscribed, no inference")


def test_values_are_formatted_with_two_decimals_and_counters_prefixed():
    _, _, v = status(
        _health(
            counters={"received": 10, "dropped": 2},
            input_rate_hz=29.996,
            processed_rate_hz=15,
            inference_ms={50: 1.234, 95: 2.0, 99: 3.456},
            pipeline_ms={50: 4.0, 95: 5.0},
            frame_ms={50: 6.0, 95: 6.5, 99: 7.004},
            output_age_ms={50: 8.0, 95: 9.126},
            last_output_age_ms=7.5,
        )
    )
    assert v["frames_received"] == "10" and v["frames_dropped"] == "2"
    assert v["input_rate_hz"] == "30.00" and v["processed_rate_hz"] == "15.00"
    assert (v["inference_ms_p50"], v["inference_ms_p95"], v["inference_ms_p99"]) == ("1.23", "2.00", "3.46")
    assert (v["pipeline_ms_p50"], v["pipeline_ms_p95"]) == ("4.00", "5.00")
    assert (v["frame_ms_p50"], v["frame_ms_p95"], v["frame_ms_p99"]) == ("6.00", "6.50", "7.00")
    assert (v["output_age_ms_p50"], v["output_age_ms_p95"], v["output_age_ms_last"]) == ("8.00", "9.13", "7.50")


def test_missing_timings_read_nan():
    _, _, v = status(_health())
    assert v["inference_ms_p50"] == "nan" and math.isnan(float(v["output_age_ms_last"]))


def test_without_depth_no_depth_values():
    _, _, v = status(_health())
    assert not any(k.startswith(("depth_", "geometry_ms")) or k == "frames_3d" for k in v)


def test_depth_values_are_listed_unprefixed_with_geometry_times():
    depth = DepthHealth(
        counters={"depth_received": 12, "frames_3d": 11, "depth_rejected_size": 1}, geometry_ms={50: 1.234, 95: 5.0}
    )
    level, message, v = status(_health(depth=depth))
    assert (level, message) == (OK, "ok")
    assert (v["depth_received"], v["frames_3d"], v["depth_rejected_size"]) == ("12", "11", "1")
    assert (v["geometry_ms_p50"], v["geometry_ms_p95"]) == ("1.23", "5.00")
    assert status(_health(depth=DepthHealth()))[2]["geometry_ms_p50"] == "nan"


def test_a_frame_without_usable_depth_warns_after_the_faults_and_the_stall():
    depth = DepthHealth(problem="frame 3.000000500: depth not used: size 100x100 != 240x320")
    level, message, _ = status(_health(depth=depth))
    assert (level, message) == (WARN, "frame 3.000000500: depth not used: size 100x100 != 240x320")
    level, message, _ = status(_health(depth=depth, seconds_since_last_frame=5.0, faults=("backend fault: y",)))
    assert level == ERROR  # a depth warning never lowers an error
    assert message == (
        "backend fault: y; camera stall: no frame for 5.0 s; frame 3.000000500: depth not used: size 100x100 != 240x320"
    )


def test_executor_recoveries_are_reported_and_leave_the_level_alone():
    """A destroy race the spinning thread survived is counted, not a fault: frames kept flowing."""
    level, message, values = status(_health(executor_recoveries=3))
    assert (level, message) == (OK, "ok") and values["executor_recoveries"] == "3"
    assert status(_health())[2]["executor_recoveries"] == "0"


def test_flip_average_says_what_runs_and_nothing_without_a_model():
    assert status(Health(lifecycle_state="active", flip_average=True))[2]["flip_average"] == "on"
    assert status(Health(lifecycle_state="active", flip_average=False))[2]["flip_average"] == "off"
    assert status(Health(lifecycle_state="unconfigured"))[2]["flip_average"] == ""
