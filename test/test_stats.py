"""Timing helpers shared by seg-bench and training.report."""
import time

from seg_perception.stats import interleaved_ms, median_ms


def test_interleaved_ms_times_round_robin_after_warmup():
    calls = []

    def make(name, seconds):
        def fn():
            calls.append(name)
            time.sleep(seconds)
        return fn
    out = interleaved_ms({"fast": make("fast", 0.001), "slow": make("slow", 0.008)}, runs=5, warmup=2)
    assert calls == ["fast", "fast", "slow", "slow"] + ["fast", "slow"] * 5
    assert set(out) == {"fast", "slow"}
    assert 1.0 <= out["fast"][0] < out["slow"][0] and out["slow"][0] >= 8.0
    assert all(spread >= 0 for _, spread in out.values())


def test_median_ms_is_one_callable_interleaved():
    n = []
    med, spread = median_ms(lambda: n.append(1), runs=4, warmup=3)
    assert len(n) == 7 and med >= 0 and spread >= 0
