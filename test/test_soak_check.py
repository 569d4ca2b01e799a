"""The soak bounds (seg_perception.tools.soak.check) with known answers, no DDS."""

from seg_perception.tools.soak import check


def _result(**kw):
    r = {"node_alive": True, "rss_mb_after_warmup": 200.0, "rss_mb_end": 205.0, "frame_ms_p99": 40.0}
    r.update(kw)
    return r


def test_age_within_two_frames_of_work_plus_transport_holds():
    assert check(_result(age_ms_p99=99.0), rss_growth_mb=20.0, age_slack_ms=0.0) == []


def test_age_of_a_queue_is_reported():
    assert check(_result(age_ms_p99=101.0), rss_growth_mb=20.0, age_slack_ms=0.0) == [
        "output age p99 101.0 ms > 100.0 ms"
    ]


def test_missing_frame_timing_is_a_violation_not_an_infinite_bound():
    assert check(_result(age_ms_p99=50.0, frame_ms_p99=float("nan")), 20.0, 0.0) != []


def test_memory_growth_and_a_dead_node_are_reported():
    bad = check(_result(age_ms_p99=50.0, rss_mb_end=230.0, node_alive=False), 20.0, 0.0)
    assert bad == ["node died", "RSS grew 30.0 MB > 20.0"]
