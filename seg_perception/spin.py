"""Run a node's executor until Ctrl-C / SIGTERM, then stop things in order (the node process's main).

Why the executor spins on its own thread: Python runs signal handlers only in the main thread,
and only when that thread is executing Python code. A main thread that spins sits in ``rcl_wait``
(C code) until some entity of the wait set is ready; while none is, Ctrl-C is not seen. That
is the normal case of a node with no timer and no frames, and under load we caught the node's
own wait outlasting its 0.25 s diagnostics timer by over 15 s after a Ctrl-C (thread dump: the
main thread in ``wait_set.wait``; why the timer did not wake it, inside rclpy's multi-threaded
executor, we did not find): the process hung. Here the main thread only waits for a signal, so a signal always
acts at once: the worker stops first (nothing publishes on a dead context), then the executor is
woken through its own guard condition and shut down, then the node and the context go.

Spinning also survives rclpy's destroy race: a subscription destroyed by a lifecycle transition
(a service callback on another thread) while the spinning thread gathers its wait set makes
``spin()`` raise ``InvalidHandle`` ("destruction was requested"; seen about once in 500 rapid
deactivate/activate cycles with frames flowing). Nothing is lost but that one wait: spinning
resumes and ``on_recovered`` is told (the node counts it in diagnostics). Only a burst of them
(a handle that stays broken) ends spinning as a failure.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from rclpy.exceptions import InvalidHandle
from rclpy.executors import ExternalShutdownException

log = logging.getLogger(__name__)

_POLL_S = 0.2  # how often the main thread looks at the spinning thread between signals
_SHUTDOWN_TIMEOUT_S = 2.0
_MAX_RECOVERIES_PER_S = 20  # more: the handle stays broken, spinning again would only spin on the error


def spin_until_signal(
    executor: Any,
    stop_first: Callable[[], None],
    signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM),
    on_recovered: Callable[[BaseException], None] = lambda e: None,
) -> None:
    """Spin ``executor`` on a thread until one of ``signals`` arrives (or spinning ends by itself),
    then call ``stop_first`` and shut the executor down. An exception that ended spinning is raised
    after that; ``on_recovered`` hears of each destroy race spinning survived (see the module doc).
    Must be called from the main thread."""
    stop = threading.Event()
    failure: list[BaseException] = []
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in signals}
    spinner = threading.Thread(target=_spin, args=(executor, failure, on_recovered), name="executor", daemon=True)
    try:
        spinner.start()
        while spinner.is_alive() and not stop.wait(_POLL_S):
            pass
    finally:
        try:
            stop_first()
        finally:
            if not executor.shutdown(timeout_sec=_SHUTDOWN_TIMEOUT_S):
                log.warning("executor callbacks still running %.1f s after shutdown", _SHUTDOWN_TIMEOUT_S)
            spinner.join(_SHUTDOWN_TIMEOUT_S)
            for s, handler in previous.items():
                signal.signal(s, handler)
    if failure:  # a callback raised out of spin(): the process fails with it, after the orderly stop
        raise failure[0]


def _spin(executor: Any, failure: list[BaseException], on_recovered: Callable[[BaseException], None]) -> None:
    recent: list[float] = []
    while True:
        try:
            executor.spin()  # returns once the executor is shut down
            return
        except ExternalShutdownException:  # the context was shut down from elsewhere: end quietly
            return
        except InvalidHandle as e:  # an entity destroyed by another thread mid-wait (see the module doc)
            now = time.monotonic()
            recent = [t for t in recent if now - t < 1.0] + [now]
            if len(recent) > _MAX_RECOVERIES_PER_S:
                failure.append(e)
                return
            on_recovered(e)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread, which re-raises it
            failure.append(e)
            return
