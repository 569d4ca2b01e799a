"""Live replay: the bag's frames published over DDS into a node, its outputs drained, paced and scored."""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...stamps import Stamp, stamp_of
from .. import bags
from ..bag_plan import BagItem, ReplayPlan, iter_bag
from ..errors import UsageError
from .node_config import ros_param_values
from .offline import run_segmenter_over_bag
from .scoring import Samples, StampJoin, accuracy_summary, label_digest, miou, percentiles

LOG = logging.getLogger("seg_replay")

DIAG_COUNTERS = ("received", "processed", "dropped", "missed", "rejected", "inference_errors", "no_backend")
LATENCY_DEFINITION = (
    "receipt time of the labels minus publish time of the same frame by seg-replay "
    "(the republished header stamps are the bag's original ones, in the past)"
)


class ReplayFailed(RuntimeError):
    """The node did not come up, died, or produced nothing (exit code 1)."""


@dataclass
class SentFrame:
    index: int
    log_ns: int
    t_pub: float


@dataclass
class LiveState:
    sent: dict[Stamp, SentFrame] = field(default_factory=dict)
    done: dict[Stamp, tuple[float, str]] = field(default_factory=dict)  # stamp -> (latency ms, digest)
    instances: int = 0
    max_lag_s: float = 0.0  # how far publishing fell behind the recorded schedule
    foreign_outputs: int = 0
    duplicate_stamps: int = 0


class LiveReplay:
    """One replay into a node over DDS: publisher, output drain, pacing."""

    def __init__(
        self,
        plan: ReplayPlan,
        cfg: Any,
        args: argparse.Namespace,
        classes: Any,
        writer: bags.BagWriter | None,
        samples: Samples,
    ):
        from ..rosio import NodeProcess, StreamClient

        self.plan, self.cfg, self.args, self.writer, self.samples = plan, cfg, args, writer, samples
        self.compressed = plan.msgtype == bags.COMPRESSED_TYPE
        self.topic = args.publish_topic or plan.topic
        # Outputs come within about --frame-timeout; older unmatched maps are dropped frames.
        self.join = StampJoin(classes.num_classes, max_age_s=max(10.0, 3 * args.frame_timeout))
        self.state = LiveState()
        self.node = None
        self.geo = args.geometry  # depth in the bag: geometry.GeometryReplay
        self.log_dir = Path(tempfile.mkdtemp(prefix="seg_replay_"))
        if not args.no_start_node:
            remap = f"{'image/compressed' if self.compressed else 'image'}:={self.topic}"
            self.node = NodeProcess(
                ros_param_values(cfg, args.params),
                args.node_log or self.log_dir / "node.log",
                remap=[remap, *(self.geo.remaps() if self.geo else [])],
            )
        try:
            # StreamClient publishes sensor_msgs/Image; compressed frames need their own publisher.
            self.client = StreamClient(
                self.topic if not self.compressed else "/_seg_replay/unused_image",
                namespace=args.node_namespace,
                name="seg_replay",
            )
            self.pub = self.client.pub if not self.compressed else self._compressed_publisher()
            if self.geo is not None:
                self.geo.attach(self.client.node, args.node_namespace)
        except BaseException:
            if self.node is not None:
                self.node.stop()
            raise

    def _compressed_publisher(self) -> Any:
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CompressedImage

        return self.client.node.create_publisher(CompressedImage, self.topic, qos_profile_sensor_data)

    # -- lifecycle
    def node_log_tail(self, lines: int = 40) -> str:
        if self.node is None:
            return "(node not started by seg-replay)"
        return "\n".join(self.node.log().splitlines()[-lines:])

    def wait_for_node(self, timeout: float) -> dict[str, str]:
        """Block until the node subscribes to our topic and sends diagnostics; its first values."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.node is not None and not self.node.alive():
                raise ReplayFailed(f"the node exited during start-up; its log:\n{self.node_log_tail()}")
            diag = self.client.diag_values()
            if self.pub.get_subscription_count() > 0 and diag:
                if "backend fault" in diag.get("_message", ""):
                    # a --backend / --model-path the node cannot load: an argument problem (exit 2)
                    raise UsageError(f"the node reports: {diag['_message']}")
                return diag
            time.sleep(0.05)
        raise ReplayFailed(
            f"no node subscribed to {self.topic} with diagnostics within {timeout:.0f} s; "
            f"node log:\n{self.node_log_tail()}"
        )

    def close(self) -> int | None:
        self.client.close()
        return self.node.stop() if self.node is not None else None

    # -- outputs
    def drain(self) -> None:
        """Move arrived outputs out of the StreamClient: latency, metrics, output bag (bounded memory)."""
        from rclpy.serialization import serialize_message

        from ..rosio import msg_to_array

        rec = self.client.received
        for stamp in list(rec.labels):
            t_recv, msg = rec.labels.pop(stamp)
            sent = self.state.sent.get(stamp)
            if sent is None:
                self.state.foreign_outputs += 1
                continue
            labels = msg_to_array(msg)
            latency_s = t_recv - sent.t_pub
            self.state.done[stamp] = (1e3 * latency_s, label_digest(labels))
            if self.plan.gt_topic:
                self.join.add_pred(stamp, labels)
            self.samples.offer_pred(stamp, labels)
            self._record(bags.LABELS_TOPIC, sent, latency_s, serialize_message(msg))
        for stamp in list(rec.instances):
            t_recv, msg = rec.instances.pop(stamp)
            sent = self.state.sent.get(stamp)
            if sent is not None:
                self.state.instances += 1
                self._record(bags.INSTANCES_TOPIC, sent, t_recv - sent.t_pub, serialize_message(msg))
        self.join.prune()

    def _record(self, topic: str, sent: SentFrame, latency_s: float, raw: bytes) -> None:
        """Output bag log time = the input's log time + measured latency: it lines up with the input bag."""
        if self.writer is not None:
            self.writer.write(topic, bags.IMAGE_TYPE, sent.log_ns + int(round(latency_s * 1e9)), raw)

    def _idle_until(self, deadline: float, stamp: Stamp | None = None) -> None:
        """Drain outputs until ``deadline`` (monotonic), or until ``stamp`` has its labels."""
        while True:
            self.drain()
            now = time.monotonic()
            if now >= deadline or (stamp is not None and stamp in self.state.done):
                return
            time.sleep(min(0.005, deadline - now))

    # -- the replay
    def play(self) -> tuple[int, float]:
        """Publish every camera frame; returns (frames sent, seconds spent publishing)."""
        args = self.args
        t0 = first_log = None
        index = -1
        for item in iter_bag(self.plan, args.max_frames):
            stamp = stamp_of(item.msg)
            if item.is_gt:
                gt = bags.gt_to_array(item.msg)
                self.join.add_gt(stamp, gt)
                self.samples.offer_gt(stamp, gt)
                continue
            index += 1
            if t0 is None:
                t0, first_log = time.monotonic(), item.t_ns
            elif not args.as_fast_as_node:
                target = t0 + (item.t_ns - first_log) / 1e9 / args.rate
                self._idle_until(target)
                self.state.max_lag_s = max(self.state.max_lag_s, time.monotonic() - target)
            self._remember(index, stamp, item)
            if self.geo is not None:
                self.geo.before_frame(item.t_ns)  # the frame's depth and camera info first
            self.state.sent[stamp] = SentFrame(index, item.t_ns, time.time())
            self.pub.publish(item.raw)
            if args.as_fast_as_node:
                self._idle_until(time.monotonic() + args.frame_timeout, stamp)
            if self.node is not None and not self.node.alive():
                raise ReplayFailed(f"the node died during the replay; its log:\n{self.node_log_tail()}")
        return index + 1, (time.monotonic() - t0) if t0 is not None else 0.0

    def _remember(self, index: int, stamp: Stamp, item: BagItem) -> None:
        if stamp in self.state.sent:
            self.state.duplicate_stamps += 1
            LOG.warning("frame %d repeats stamp %s: its output cannot be told apart", index, stamp)
        if self.samples.wants(index):
            self.samples.add_rgb(stamp, bags.decode_camera(item.msg, self.plan.msgtype))

    def settle(self, quiet_s: float = 1.0) -> None:
        """After the last frame: wait for stragglers, then for diagnostics sent after them."""
        end = time.monotonic() + max(quiet_s, self.args.frame_timeout) + 5.0
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() < end:
            self.drain()
            n = len(self.state.done) + self.state.instances
            if n != last:
                last, quiet_since = n, time.monotonic()
            if len(self.state.done) == len(self.state.sent) and self.state.instances >= len(self.state.done):
                break
            if time.monotonic() - quiet_since > quiet_s:
                break
            time.sleep(0.02)
        self._fresh_diagnostics(timeout=self.cfg.diagnostics_period_s * 2.5 + 0.5)
        self.drain()

    def node_counters(self, before: dict[str, str]) -> dict[str, Any]:
        """The node's counters over this replay, once they count every output received. The node counts
        a frame after publishing its outputs, so a status read in between trails by one (a fresh-clone
        CI run met it); wait for one that caught up, at most a few diagnostics periods."""
        end = time.monotonic() + self.cfg.diagnostics_period_s * 2.5 + 0.5
        while True:
            diag = diag_delta(before, self.client.diag_values())
            if diag.get("frames_processed", 0) >= len(self.state.done) or time.monotonic() > end:
                return diag
            time.sleep(0.05)

    def _fresh_diagnostics(self, timeout: float) -> None:
        diags = self.client.received.diagnostics
        n0, end = len(diags), time.monotonic() + timeout
        while len(diags) <= n0 and time.monotonic() < end:
            time.sleep(0.05)


def diag_delta(before: dict[str, str], after: dict[str, str]) -> dict[str, Any]:
    """The node's counters over this replay (a running node may have seen frames before)."""
    out: dict[str, Any] = {}
    for k in DIAG_COUNTERS:
        key = f"frames_{k}"
        if key in after:
            out[key] = int(after[key]) - int(before.get(key, 0))
    for k in (
        "backend",
        "model_file",
        "model_sha256",
        "inference_ms_p50",
        "inference_ms_p95",
        "pipeline_ms_p50",
        "pipeline_ms_p95",
    ):
        if k in after:
            out[k] = after[k]
    if int(after.get("_level", "0") or 0) >= 2:  # ERROR; a stall warning after the last frame is expected
        out["status"] = after.get("_message", "")
    return out


def live_summary(live: LiveReplay, sent: int, seconds: float, diag: dict[str, Any], classes: Any) -> dict[str, Any]:
    st = live.state
    processed = len(st.done)
    out: dict[str, Any] = {
        "frames_sent": sent,
        "frames_processed": processed,
        "frames_dropped": sent - processed,
        "node": diag,
        "publish_rate_hz": round((sent - 1) / seconds, 3) if sent > 1 and seconds > 0 else None,
        "replay_seconds": round(seconds, 3),
        "max_publish_lag_ms": None if live.args.as_fast_as_node else round(1e3 * st.max_lag_s, 3),
        "latency_ms": percentiles([lat for lat, _ in st.done.values()]),
        "latency_definition": LATENCY_DEFINITION,
    }
    if "frames_received" in diag:
        out["frames_lost_in_transport"] = max(0, sent - diag["frames_received"])
    if st.foreign_outputs:
        out["foreign_outputs"] = st.foreign_outputs
    if st.duplicate_stamps:
        out["duplicate_stamps"] = st.duplicate_stamps
    if live.plan.gt_topic:
        out["accuracy"] = accuracy_summary(live.join.total(), classes.names, len(live.join.cms))
    return out


def compare_with_offline(
    plan: ReplayPlan, cfg: Any, classes: Any, live: LiveReplay, node_sha: str | None
) -> dict[str, Any]:
    """Rerun the processed frames through make_segmenter: same mIoU, same label maps expected."""
    processed = set(live.state.done)
    res = run_segmenter_over_bag(plan, cfg, classes, only=processed, max_frames=live.args.max_frames)
    same = sum(1 for s, d in res.processed.items() if live.state.done.get(s, (0, None))[1] == d)
    out: dict[str, Any] = {"frames": len(res.processed), "frames_identical_labels": same}
    if node_sha:
        out["model_matches_node"] = node_sha == res.model_sha256
    if plan.gt_topic:
        stamps = sorted(set(live.join.cms) & set(res.join.cms))
        off, on = miou(res.join.total(stamps)), miou(live.join.total(stamps))
        out.update(
            {
                "frames_evaluated": len(stamps),
                "miou": off,
                "live_miou_same_frames": on,
                "miou_abs_diff": (abs(off - on) if off is not None and on is not None else None),
            }
        )
    return out


def run_live(
    plan: ReplayPlan, cfg: Any, classes: Any, args: argparse.Namespace, writer: bags.BagWriter | None, samples: Samples
) -> tuple[dict[str, Any], list[float]]:
    """The live mode: its summary part and the per-frame latencies."""
    live = LiveReplay(plan, cfg, args, classes, writer, samples)
    try:
        before = live.wait_for_node(args.node_timeout)
        LOG.info(
            "node ready (%s %s); replaying %d frames from %s",
            before.get("backend"),
            before.get("model_file"),
            plan.frames,
            plan.topic,
        )
        sent, seconds = live.play()
        live.settle()
        diag = live.node_counters(before)
    finally:
        rc = live.close()
    if rc not in (None, 0):
        LOG.warning("node exited with %s", rc)
    out = live_summary(live, sent, seconds, diag, classes)
    if live.node is not None:
        out["node_log"] = str(live.node.log_path)
    if out["frames_processed"] == 0:
        raise ReplayFailed(f"the node produced no output for {sent} frames; node log:\n{live.node_log_tail()}")
    if args.compare_offline:
        out["offline_on_processed"] = compare_with_offline(plan, cfg, classes, live, diag.get("model_sha256"))
    return out, [lat for lat, _ in live.state.done.values()]
