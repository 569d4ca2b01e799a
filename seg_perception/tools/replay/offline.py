"""Offline replay: the node's own pipeline (``make_segmenter``) on every frame of the bag, no DDS."""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from typing import Any

from ...stamps import Stamp, stamp_of
from .. import bags
from ..bag_plan import ReplayPlan, iter_bag
from ..errors import UsageError
from .scoring import Samples, StampJoin, accuracy_summary, label_digest, percentiles

LOG = logging.getLogger("seg_replay")


@dataclass
class OfflineResult:
    join: StampJoin
    processed: dict[Stamp, str]  # stamp -> label digest
    rejected: int
    pipeline_ms: list[float]
    model_sha256: str


def run_segmenter_over_bag(
    plan: ReplayPlan,
    cfg: Any,
    classes: Any,
    only: set | None = None,
    max_frames: int = 0,
    writer: bags.BagWriter | None = None,
    samples: Samples | None = None,
    geo: Any = None,
) -> OfflineResult:
    """``make_segmenter`` on the bag's frames (all, or the stamps in ``only``): the node's code, no DDS.

    ``geo`` (a :class:`~.geometry.GeometryReplay`, bags with depth): each frame's 3D boxes, as the node
    measures them."""
    from ...backends import BackendError
    from ...encodings import ImageDecodeError
    from ...pipeline import make_segmenter

    try:
        seg = make_segmenter(cfg)
    except BackendError as e:
        raise UsageError(f"backend {cfg.backend!r} not loaded: {e}") from e
    join = StampJoin(classes.num_classes)
    res = OfflineResult(join, {}, 0, [], seg.backend.sha256)
    index = -1
    for item in iter_bag(plan, max_frames):
        stamp = stamp_of(item.msg)
        if item.is_gt:
            if only is None or stamp in only:
                gt = bags.gt_to_array(item.msg)
                join.add_gt(stamp, gt)
                if samples is not None:
                    samples.offer_gt(stamp, gt)
            continue
        index += 1
        if only is not None and stamp not in only:
            continue
        try:
            rgb = bags.decode_camera(item.msg, plan.msgtype, cfg.max_image_pixels)
        except ImageDecodeError as e:
            res.rejected += 1
            LOG.warning("frame %d (stamp %s) rejected: %s", index, stamp, e)
            continue
        out = seg.run(rgb)
        if geo is not None:
            geo.offline_frame(stamp, item.t_ns, out, seg)
        res.pipeline_ms.append(out.total_ms)
        res.processed[stamp] = label_digest(out.labels)
        if plan.gt_topic:
            join.add_pred(stamp, out.labels)
            join.prune()
        if samples is not None and samples.wants(index):
            samples.add_rgb(stamp, rgb)
            samples.offer_pred(stamp, out.labels)
        if writer is not None:
            frame_id = str(item.msg.header.frame_id)
            writer.write(
                bags.LABELS_TOPIC, bags.IMAGE_TYPE, item.t_ns, bags.image_message(out.labels, "mono8", stamp, frame_id)
            )
            writer.write(
                bags.INSTANCES_TOPIC,
                bags.IMAGE_TYPE,
                item.t_ns,
                bags.image_message(out.instances.astype("<u2"), "mono16", stamp, frame_id),
            )
    return res


def offline_summary(plan: ReplayPlan, res: OfflineResult, classes: Any, sent: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "frames_sent": sent,
        "frames_processed": len(res.processed),
        "frames_dropped": sent - len(res.processed),
        "frames_rejected": res.rejected,
        "pipeline_ms": percentiles(res.pipeline_ms),
    }
    if plan.gt_topic:
        out["accuracy"] = accuracy_summary(res.join.total(), classes.names, len(res.join.cms))
    return out


def run_offline(
    plan: ReplayPlan, cfg: Any, classes: Any, args: argparse.Namespace, writer: bags.BagWriter | None, samples: Samples
) -> tuple[dict[str, Any], list[float]]:
    """The offline mode: its summary part and the per-frame pipeline times."""
    t0 = time.monotonic()
    res = run_segmenter_over_bag(
        plan, cfg, classes, max_frames=args.max_frames, writer=writer, samples=samples, geo=args.geometry
    )
    sent = len(res.processed) + res.rejected
    out = offline_summary(plan, res, classes, sent)
    out["seconds"] = round(time.monotonic() - t0, 3)
    return out, res.pipeline_ms
