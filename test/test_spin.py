"""spin_until_signal: Ctrl-C acts at once even when the executor's wait never returns, and the
worker is stopped before the executor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("rclpy")

from rclpy.exceptions import InvalidHandle  # noqa: E402
from rclpy.executors import ExternalShutdownException  # noqa: E402

from seg_perception.spin import spin_until_signal  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class StuckExecutor:
    """spin() blocks until shutdown(), like an rcl_wait that nothing wakes; records the call order.
    ``raise_in_spin``: raised by that many first spin() calls (``times``)."""

    def __init__(self, calls: list[str], raise_in_spin: BaseException | None = None, times: int = 1):
        self.calls, self.raise_in_spin, self.times = calls, raise_in_spin, times
        self._woken = threading.Event()

    def spin(self) -> None:
        self.calls.append("spin")
        if self.raise_in_spin is not None and self.times > 0:
            self.times -= 1
            raise self.raise_in_spin
        self._woken.wait()
        self.calls.append("spin returned")

    def shutdown(self, timeout_sec: float | None = None) -> bool:
        self.calls.append("shutdown")
        self._woken.set()
        return True


def _signal_self_later(signum: int, delay_s: float) -> threading.Timer:
    t = threading.Timer(delay_s, os.kill, (os.getpid(), signum))
    t.start()
    return t


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_a_stuck_executor_worker_first(signum):
    calls: list[str] = []
    before = signal.getsignal(signum)
    _signal_self_later(signum, 0.3)
    t0 = time.monotonic()
    spin_until_signal(StuckExecutor(calls), stop_first=lambda: calls.append("stop worker"))
    assert time.monotonic() - t0 < 3.0
    assert calls[:3] == ["spin", "stop worker", "shutdown"]
    assert signal.getsignal(signum) is before  # the caller's handler is back


def test_an_exception_out_of_spin_is_raised_after_the_orderly_stop():
    calls: list[str] = []
    with pytest.raises(RuntimeError, match="callback failed"):
        spin_until_signal(
            StuckExecutor(calls, RuntimeError("callback failed")), stop_first=lambda: calls.append("stop worker")
        )
    assert calls == ["spin", "stop worker", "shutdown"]


def test_an_external_shutdown_ends_quietly():
    calls: list[str] = []
    spin_until_signal(StuckExecutor(calls, ExternalShutdownException()), stop_first=lambda: calls.append("stop"))
    assert calls == ["spin", "stop", "shutdown"]


def test_spinning_resumes_after_a_destroy_race_and_says_so():
    """rclpy raises InvalidHandle when another thread destroyed an entity while the wait set was
    gathered (a lifecycle deactivate): spinning goes on, and each recovery is reported."""
    calls: list[str] = []
    recovered: list[BaseException] = []
    ex = StuckExecutor(calls, InvalidHandle("cannot use Destroyable because destruction was requested"), times=2)
    _signal_self_later(signal.SIGINT, 0.5)
    spin_until_signal(ex, stop_first=lambda: calls.append("stop"), on_recovered=recovered.append)
    assert len(recovered) == 2 and all(isinstance(e, InvalidHandle) for e in recovered)
    assert calls[:5] == ["spin", "spin", "spin", "stop", "shutdown"]  # the third spin() waited for the signal


def test_a_handle_that_stays_broken_ends_spinning_as_a_failure():
    calls: list[str] = []
    recovered: list[BaseException] = []
    ex = StuckExecutor(calls, InvalidHandle("broken for good"), times=10_000)
    t0 = time.monotonic()
    with pytest.raises(InvalidHandle, match="broken for good"):
        spin_until_signal(ex, stop_first=lambda: calls.append("stop"), on_recovered=recovered.append)
    assert time.monotonic() - t0 < 3.0
    assert 0 < len(recovered) <= 20 and calls[-2:] == ["stop", "shutdown"]


@pytest.mark.dds
def test_ctrl_c_ends_a_real_executor_that_nothing_wakes(tmp_path):
    """A node with no timer and no subscription: rclpy's wait never returns by itself. Spinning in the
    main thread, Ctrl-C was never seen (the node hung); with spin_until_signal it exits at once."""
    script = textwrap.dedent(
        """
        import rclpy
        from rclpy.signals import SignalHandlerOptions
        from seg_perception.executor import InlineSubscriptionsExecutor
        from seg_perception.spin import spin_until_signal

        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
        node = rclpy.create_node("spin_probe")
        ex = InlineSubscriptionsExecutor(num_threads=2)  # the node's executor
        ex.add_node(node)
        print("spinning", flush=True)
        spin_until_signal(ex, stop_first=lambda: print("worker stopped", flush=True))
        node.destroy_node()
        rclpy.try_shutdown()
        print("clean exit", flush=True)
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        assert proc.stdout.readline().strip() == b"spinning"
        time.sleep(1.0)  # the executor is now blocked in its wait
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "worker stopped" in text and "clean exit" in text and "Traceback" not in text, text
