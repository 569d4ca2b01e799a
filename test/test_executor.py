"""InlineSubscriptionsExecutor: message callbacks on the spinning thread, the rest in its pool, and a
slow service or timer callback (a model load) never holds messages back. Real rclpy, one process."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("rclpy")

import rclpy  # noqa: E402
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup  # noqa: E402
from rclpy.task import Future  # noqa: E402
from std_msgs.msg import Int32  # noqa: E402
from waiting import wait_until as _wait  # noqa: E402

from seg_perception.executor import InlineSubscriptionsExecutor  # noqa: E402

pytestmark = pytest.mark.dds


@pytest.fixture
def ros():
    """A context, a node spun by the executor under test on a thread, and a publisher node."""
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("executor_under_test", context=ctx)
    talker = rclpy.create_node("executor_talker", context=ctx)
    ex = InlineSubscriptionsExecutor(num_threads=2, context=ctx)
    ex.add_node(node)
    yield ctx, node, talker, ex
    ex.shutdown(timeout_sec=2.0)
    node.destroy_node()
    talker.destroy_node()
    rclpy.try_shutdown(context=ctx)


def _spin_in_thread(ex: InlineSubscriptionsExecutor) -> threading.Thread:
    t = threading.Thread(target=ex.spin, name="spinner", daemon=True)
    t.start()
    return t


def test_messages_are_handled_on_the_spinning_thread_and_timers_in_the_pool(ros):
    _ctx, node, talker, ex = ros
    threads: dict[str, set[str]] = {"sub": set(), "timer": set()}
    node.create_subscription(Int32, "executor_probe", lambda m: threads["sub"].add(threading.current_thread().name), 10)
    node.create_timer(0.02, lambda: threads["timer"].add(threading.current_thread().name))
    pub = talker.create_publisher(Int32, "executor_probe", 10)
    spinner = _spin_in_thread(ex)
    assert _wait(lambda: pub.get_subscription_count() > 0)
    assert _wait(lambda: (pub.publish(Int32(data=1)) or bool(threads["sub"])) and bool(threads["timer"]))
    assert threads["sub"] == {spinner.name}
    assert threads["timer"] and all(n.startswith("executor_pool") for n in threads["timer"])


def test_a_slow_timer_callback_does_not_hold_messages_back(ros):
    """What the node needs: a model load (seconds, in a lifecycle or parameter service callback)
    while frames keep arriving. With SingleThreadedExecutor no message would get through."""
    _ctx, node, talker, ex = ros
    got: list[int] = []
    started, release = threading.Event(), threading.Event()

    def load_model() -> None:  # blocks until the test has seen the messages (or 10 s)
        if not started.is_set():
            started.set()
            release.wait(10.0)

    node.create_subscription(Int32, "executor_probe", lambda m: got.append(m.data), 50)
    node.create_timer(0.05, load_model, callback_group=MutuallyExclusiveCallbackGroup())
    pub = talker.create_publisher(Int32, "executor_probe", 50)
    _spin_in_thread(ex)
    try:
        assert _wait(lambda: pub.get_subscription_count() > 0 and started.is_set())
        for i in range(20):
            pub.publish(Int32(data=i))
            time.sleep(0.02)
        assert _wait(lambda: len(got) == 20), got  # all handled while the timer callback still blocks
        assert got == list(range(20))
    finally:
        release.set()


def test_an_exception_in_a_message_callback_comes_out_of_spin_once(ros):
    _ctx, node, talker, ex = ros

    def boom(_m) -> None:
        raise RuntimeError("callback failed")

    node.create_subscription(Int32, "executor_probe", boom, 10)
    pub = talker.create_publisher(Int32, "executor_probe", 10)
    assert _wait(lambda: pub.get_subscription_count() > 0)
    pub.publish(Int32(data=1))
    with pytest.raises(RuntimeError, match="callback failed"):
        for _ in range(50):
            ex.spin_once(timeout_sec=0.1)


def test_spin_until_future_complete_with_a_pool_callback(ros):
    _ctx, node, _talker, ex = ros
    fut: Future = Future()
    node.create_timer(0.05, lambda: fut.done() or fut.set_result(threading.current_thread().name))
    t0 = time.monotonic()
    ex.spin_until_future_complete(fut, timeout_sec=5.0)
    assert fut.done() and fut.result().startswith("executor_pool")
    assert time.monotonic() - t0 < 2.0


def test_shutdown_stops_spin_and_the_pool(ros):
    _ctx, node, _talker, ex = ros
    node.create_timer(0.01, lambda: None)
    spinner = _spin_in_thread(ex)
    time.sleep(0.2)
    assert ex.shutdown(timeout_sec=2.0)
    spinner.join(2.0)
    assert not spinner.is_alive()
    with pytest.raises(RuntimeError):  # the pool takes no more work
        ex._pool.submit(lambda: None)
