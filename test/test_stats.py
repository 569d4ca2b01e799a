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
