"""Timing helpers shared by seg-bench and training.report, on a fake clock: known answers."""

from types import SimpleNamespace

import pytest

from seg_perception import stats
from seg_perception.stats import interleaved_ms, median_ms


class FakeClock:
    """``perf_counter`` for seg_perception.stats: each timed call advances it by its next duration."""

    def __init__(self):
        self.now = 0.0
        self.calls = []

    def perf_counter(self):
        return self.now

    def fn(self, name, durations_ms):
        it = iter(durations_ms)

        def call():
            self.calls.append(name)
            self.now += next(it) / 1e3

        return call


@pytest.fixture()
def clock(monkeypatch):
    c = FakeClock()
    monkeypatch.setattr(stats, "time", SimpleNamespace(perf_counter=c.perf_counter))
    return c


def test_interleaved_ms_warms_up_then_times_round_robin(clock):
    fns = {"a": clock.fn("a", [50, 50] + [1, 2, 3, 4, 10]), "b": clock.fn("b", [50, 50] + [5] * 5)}
    interleaved_ms(fns, runs=5, warmup=2)
    assert clock.calls == ["a", "a", "b", "b"] + ["a", "b"] * 5


def test_interleaved_ms_median_and_spread_exclude_the_warmup(clock):
    fns = {"a": clock.fn("a", [50, 50] + [1, 2, 3, 4, 10]), "b": clock.fn("b", [50, 50] + [5] * 5)}
    out = interleaved_ms(fns, runs=5, warmup=2)
    # median 3; 10th / 90th percentiles (linear) 1.4 and 7.6: spread 6.2
    assert out["a"] == pytest.approx((3.0, 6.2))
    assert out["b"] == pytest.approx((5.0, 0.0))


def test_median_ms_times_one_callable(clock):
    assert median_ms(clock.fn("f", [100, 100, 100, 2, 4, 6, 8]), runs=4, warmup=3) == pytest.approx((5.0, 4.8))
    assert clock.calls == ["f"] * 7


def test_sequence_gaps_count_what_each_publisher_skipped():
    gaps = stats.SequenceGaps(max_publishers=2)
    a, b, c = b"a", b"b", b"c"
    assert gaps.missed(a, 5) == 0  # first message of a publisher: nothing known before it
    assert gaps.missed(a, 6) == 0
    assert gaps.missed(a, 10) == 3  # 7, 8, 9 never arrived
    assert gaps.missed(b, 100) == 0 and gaps.missed(b, 102) == 1  # publishers counted apart
    assert gaps.missed(a, 11) == 0
    assert gaps.missed(a, 3) == 0 and gaps.missed(a, 5) == 1  # numbers went back: a new writer, recount
    assert gaps.missed(None, 7) == 0 and gaps.missed(a, None) == 0  # an rmw without ids / numbers
    assert gaps.missed(c, 1) == 0  # a third publisher: the least recent (b) is forgotten ...
    assert gaps.missed(b, 110) == 0  # ... and starts over
    assert gaps.missed(a, 6) == 0
