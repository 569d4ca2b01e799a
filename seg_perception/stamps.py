"""Header stamps as ``(sec, nanosec)`` tuples: the key that matches outputs, inputs and ground truth."""

from __future__ import annotations

from typing import Any

Stamp = tuple[int, int]


def stamp_of(msg: Any) -> Stamp:
    """Header stamp of any message with a ``header`` (rclpy's or rosbags')."""
    return int(msg.header.stamp.sec), int(msg.header.stamp.nanosec)


def stamp_to_ns(stamp: Stamp) -> int:
    return int(stamp[0]) * 1_000_000_000 + int(stamp[1])


def ns_to_stamp(ns: int) -> Stamp:
    return int(ns // 1_000_000_000), int(ns % 1_000_000_000)
