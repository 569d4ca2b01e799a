"""What seg-replay will replay, checked before any process or DDS participant starts, and the bag's
camera frames and ground truth in log-time order."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import bags
from .errors import UsageError


@dataclass
class ReplayPlan:
    """What to replay, checked before any process or DDS participant starts."""

    bag: Path
    storage: str
    topic: str
    msgtype: str
    gt_topic: str | None
    frames: int
    first_hw: tuple[int, int]
    gt_variant: str | None
    topics: dict[str, bags.TopicInfo] = field(default_factory=dict)


def plan_replay(bag: Path, topic: str | None, gt_topic: str, gt_explicit: bool) -> ReplayPlan:
    storage = bags.storage_of(bag)
    reader = bags.open_reader(bag)
    try:
        topics = bags.topics_of(reader)
        cam = bags.select_camera_topic(topics, topic)
        gt = bags.check_gt_topic(topics, gt_topic, gt_explicit)
        if gt == cam:
            raise UsageError(f"camera topic and ground-truth topic are both {cam!r}")
        hw = bags.check_first_frame(reader, cam, topics[cam].msgtype)
    finally:
        reader.close()
    variant = bags.custom_data(bag).get(bags.GT_VARIANT_KEY)
    return ReplayPlan(Path(bag), storage, cam, topics[cam].msgtype, gt, topics[cam].count, hw, variant, topics)


@dataclass
class BagItem:
    is_gt: bool
    t_ns: int
    raw: bytes
    msg: Any


def iter_bag(plan: ReplayPlan, max_frames: int = 0) -> Iterator[BagItem]:
    """Camera frames and ground truth in log-time order (stops after ``max_frames`` camera frames)."""
    reader = bags.open_reader(plan.bag)
    try:
        conns = bags.connections_for(reader, [plan.topic, plan.gt_topic])
        n = 0
        for conn, t_ns, raw in reader.messages(connections=conns):
            is_gt = conn.topic == plan.gt_topic
            if not is_gt:
                if max_frames and n >= max_frames:
                    break
                n += 1
            msgtype = bags.IMAGE_TYPE if is_gt else plan.msgtype
            yield BagItem(is_gt, int(t_ns), bytes(raw), bags.deserialize(raw, msgtype))
    finally:
        reader.close()
