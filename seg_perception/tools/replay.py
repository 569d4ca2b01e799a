"""seg-replay: play a rosbag2 into the segmentation node over real DDS and score it.

The camera topic of the bag (``--topic``, default: the first sensor_msgs/Image or
CompressedImage topic) is republished byte for byte, so every frame keeps its ORIGINAL
header stamp and the node's outputs carry it too. The node is started in its own process
(``--backend``, ``--model-path``, ``-p key=value``) unless ``--no-start-node`` uses one that
is already running. Its ``/segmentation/labels`` and ``/segmentation/instances`` go into a
new bag (``--out-bag``), and one JSON summary is printed on stdout.

Pacing: the recorded rate (log-time spacing, divided by ``--rate``), or
``--as-fast-as-node``: the next frame goes out when the previous frame's labels arrived
or after ``--frame-timeout`` seconds.

Latency: the bag's stamps are in the past, so stamp-to-receipt would measure the bag's
age. Latency here is the time the labels arrived minus the time this tool published that
frame (same clock, same process): transport in, queueing, decoding, inference,
postprocessing and transport out.

Accuracy: with a ground-truth topic (``--gt-topic``, default ``/camera/labels_gt``: mono8
class ids, 255 = ignore, matched to frames by header stamp), mIoU and per-class IoU come
from one confusion matrix summed over the processed frames (a class absent from both
ground truth and prediction is left out of the mean). ``--offline`` runs the same backend
code (``make_segmenter``) on every frame without DDS: the pure accuracy number.
``--compare-offline`` reruns the frames the node processed through ``make_segmenter`` after
the live run and reports that mIoU and how many label maps were bit-identical: the two
numbers must agree. It is opt-in because it doubles the CPU time and, with
``--no-start-node``, the running node's model is not known to this tool.

Summary: ``frames_dropped`` = frames sent minus frames with output; ``node`` holds the node's
own /diagnostics counters over this replay (received, dropped = superseded by a newer frame,
rejected, ...); ``frames_lost_in_transport`` = sent minus received by the node (best-effort QoS).
Output bag: header stamps are the input's; the log time of each output is its input's log
time plus the measured latency, so both bags line up on one timeline. ``--offline`` writes
an output bag only when ``--out-bag`` is given (log time = the input's).

Exit codes: 0 done, 1 the node failed or produced nothing, 2 a bad bag or argument (including a
backend the node or ``--offline`` cannot load).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..metrics import confusion_matrix, iou_per_class

from . import bags, replay_geometry
from .bags import BagError, Stamp

LOG = logging.getLogger("seg_replay")

DIAG_COUNTERS = ("received", "processed", "dropped", "rejected", "inference_errors", "no_backend")
LATENCY_DEFINITION = ("receipt time of the labels minus publish time of the same frame by seg-replay "
                      "(the republished header stamps are the bag's original ones, in the past)")


class ReplayFailed(RuntimeError):
    """The node did not come up, died, or produced nothing (exit code 1)."""


# --- metrics (one dataset-wide confusion matrix, seg_perception.metrics) ----------------------------
def confusion(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``cm[i, j]``: pixels of ground truth ``i`` predicted ``j``; ground truth 255 ignored."""
    return confusion_matrix(pred, gt, num_classes)


def miou(cm: np.ndarray) -> Optional[float]:
    iou = iou_per_class(cm)
    return float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else None


def accuracy_summary(cm: np.ndarray, names: Sequence[str], frames: int) -> Dict[str, Any]:
    iou = iou_per_class(cm)
    total = int(cm.sum())
    return {
        "frames_evaluated": frames,
        "miou": miou(cm),
        "pixel_accuracy": float(np.trace(cm) / total) if total else None,
        "per_class_iou": {n: (None if math.isnan(v) else float(v)) for n, v in zip(names, iou)},
    }


def percentiles(values: Sequence[float]) -> Dict[str, Optional[float]]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None, "mean": None}
    a = np.asarray(values, np.float64)
    return {"n": int(a.size), "p50": round(float(np.percentile(a, 50)), 3),
            "p95": round(float(np.percentile(a, 95)), 3), "max": round(float(a.max()), 3),
            "mean": round(float(a.mean()), 3)}


def label_digest(labels: np.ndarray) -> str:
    """A short fingerprint of a label map: live and offline maps are compared without keeping them."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.asarray(labels.shape, np.int64).tobytes())
    h.update(np.ascontiguousarray(labels).tobytes())
    return h.hexdigest()


class StampJoin:
    """Pairs predictions with ground truth by header stamp, whichever arrives first.

    Only one small confusion matrix per evaluated frame is kept; unmatched maps are
    dropped after ``max_age_s`` so a long bag with many dropped frames stays bounded.
    """

    def __init__(self, num_classes: int, max_age_s: float = 30.0):
        self.n = num_classes
        self.max_age_s = max_age_s
        self.cms: Dict[Stamp, np.ndarray] = {}
        self._gt: Dict[Stamp, Tuple[float, np.ndarray]] = {}
        self._pred: Dict[Stamp, Tuple[float, np.ndarray]] = {}

    def add_gt(self, stamp: Stamp, gt: np.ndarray) -> None:
        if stamp in self._pred:
            self._score(stamp, gt, self._pred.pop(stamp)[1])
        else:
            self._gt[stamp] = (time.monotonic(), gt)

    def add_pred(self, stamp: Stamp, pred: np.ndarray) -> None:
        if stamp in self._gt:
            self._score(stamp, self._gt.pop(stamp)[1], pred)
        else:
            self._pred[stamp] = (time.monotonic(), pred)

    def _score(self, stamp: Stamp, gt: np.ndarray, pred: np.ndarray) -> None:
        if gt.shape != pred.shape:
            LOG.warning("frame %s: ground truth %s and labels %s differ in size; not scored", stamp, gt.shape,
                        pred.shape)
            return
        self.cms[stamp] = confusion(gt, pred, self.n)

    def prune(self) -> None:
        old = time.monotonic() - self.max_age_s
        for store in (self._gt, self._pred):
            for s in [s for s, (t, _) in list(store.items()) if t < old]:
                store.pop(s, None)

    def total(self, stamps: Optional[Sequence[Stamp]] = None) -> np.ndarray:
        keys = self.cms.keys() if stamps is None else [s for s in stamps if s in self.cms]
        cm = np.zeros((self.n, self.n), np.int64)
        for s in keys:
            cm += self.cms[s]
        return cm


class Samples:
    """A few frames spread over the bag (image, prediction, ground truth) for the report strip."""

    def __init__(self, total_frames: int, want: int = 4):
        step = max(1, total_frames // max(1, 2 * want))
        self.candidates = set(range(0, total_frames, step))
        self.want = want
        self.rgb: Dict[Stamp, np.ndarray] = {}
        self.gt: Dict[Stamp, np.ndarray] = {}
        self.pred: Dict[Stamp, np.ndarray] = {}
        self._pending_gt: Optional[Tuple[Stamp, np.ndarray]] = None

    def wants(self, index: int) -> bool:
        return index in self.candidates and len(self.pred) < self.want

    def add_rgb(self, stamp: Stamp, rgb: np.ndarray) -> None:
        self.rgb[stamp] = rgb
        if self._pending_gt is not None and self._pending_gt[0] == stamp:
            self.gt[stamp] = self._pending_gt[1]

    def offer_gt(self, stamp: Stamp, gt: np.ndarray) -> None:
        """Ground truth may come just before or after its frame in the bag: keep the latest one aside."""
        if stamp in self.rgb:
            self.gt.setdefault(stamp, gt)
        else:
            self._pending_gt = (stamp, gt)

    def offer_pred(self, stamp: Stamp, pred: np.ndarray) -> None:
        if stamp in self.rgb and len(self.pred) < self.want:
            self.pred[stamp] = pred

    def frames(self) -> List[Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]]:
        return [(self.rgb[s], self.pred[s], self.gt.get(s)) for s in sorted(self.pred)]


# --- the bag ------------------------------------------------------------------------------------
@dataclass
class ReplayPlan:
    """What to replay, checked before any process or DDS participant starts."""

    bag: Path
    storage: str
    topic: str
    msgtype: str
    gt_topic: Optional[str]
    frames: int
    first_hw: Tuple[int, int]
    gt_variant: Optional[str]
    topics: Dict[str, bags.TopicInfo] = field(default_factory=dict)


def plan_replay(bag: Path, topic: Optional[str], gt_topic: str, gt_explicit: bool) -> ReplayPlan:
    storage = bags.storage_of(bag)
    reader = bags.open_reader(bag)
    try:
        topics = bags.topics_of(reader)
        cam = bags.select_camera_topic(topics, topic)
        gt = bags.check_gt_topic(topics, gt_topic, gt_explicit)
        if gt == cam:
            raise BagError(f"camera topic and ground-truth topic are both {cam!r}")
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


# --- node configuration ---------------------------------------------------------------------------
def parse_params(pairs: Sequence[str]) -> Dict[str, Any]:
    """``key=value`` strings -> typed values following :class:`NodeConfig`'s field types."""
    from ..config import NodeConfig

    defaults = NodeConfig().as_dict()
    out: Dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or key not in defaults:
            raise BagError(f"-p {pair!r}: expected KEY=VALUE with KEY one of {sorted(defaults)}")
        typ = type(defaults[key])
        try:
            if typ is bool:
                if value.strip().lower() not in ("true", "false"):
                    raise ValueError(value)
                out[key] = value.strip().lower() == "true"
            else:
                out[key] = typ(float(value)) if typ is int else typ(value)
        except ValueError:
            raise BagError(f"-p {pair!r}: {key} needs a {typ.__name__}") from None
    return out


def node_config(backend: str, model_path: str, params: Dict[str, Any], compressed: bool) -> Any:
    """The NodeConfig both modes use: live passes the same values to the node as ROS parameters."""
    from ..config import ConfigError, NodeConfig

    values = {**params, "backend": backend, "model_path": model_path,
              "transport": "compressed" if compressed else "raw"}
    try:
        return NodeConfig.from_dict(values)
    except ConfigError as e:
        raise BagError(str(e)) from e


def ros_param_values(cfg: Any, given: Dict[str, Any]) -> Dict[str, str]:
    """The given -p values plus backend/model/transport, formatted so ROS parses the declared type."""
    keys = set(given) | {"backend", "model_path", "transport"}
    out = {}
    for k in sorted(keys):
        v = getattr(cfg, k)
        if k == "model_path" and not v:
            continue
        out[k] = repr(float(v)) if isinstance(v, float) else str(v)
    return out


def class_set_for(cfg: Any) -> Any:
    """The class set the node will use, without loading the model (same rule as make_segmenter)."""
    from ..backends import BACKENDS
    from ..classes import load_classes
    from ..manifest import Manifest, ManifestError

    variant = cfg.class_variant
    spec = BACKENDS.get(cfg.backend)
    if not cfg.model_path and spec is not None and spec.entry:
        try:
            entry = Manifest.load().entries.get(spec.entry)
        except ManifestError as e:
            LOG.warning("model manifest unreadable (%s); assuming class variant %s", e, variant)
            entry = None
        if entry is not None:
            variant = entry.class_variant
    return load_classes(variant)


def check_gt_variant(plan: ReplayPlan, classes: Any, warnings: List[str]) -> None:
    if plan.gt_topic and plan.gt_variant and plan.gt_variant != classes.variant:
        msg = (f"ground truth in the bag uses class variant {plan.gt_variant!r}, the model "
               f"{classes.variant!r}: IoU values compare different class sets")
        LOG.warning("%s", msg)
        warnings.append(msg)


# --- offline --------------------------------------------------------------------------------------
@dataclass
class OfflineResult:
    join: StampJoin
    processed: Dict[Stamp, str]  # stamp -> label digest
    rejected: int
    pipeline_ms: List[float]
    model_sha256: str


def run_segmenter_over_bag(plan: ReplayPlan, cfg: Any, classes: Any, only: Optional[set] = None,
                           max_frames: int = 0, writer: Optional[bags.BagWriter] = None,
                           samples: Optional[Samples] = None, geo: Any = None) -> OfflineResult:
    """``make_segmenter`` on the bag's frames (all, or the stamps in ``only``): the node's code, no DDS."""
    from ..backends import BackendError
    from ..encodings import ImageDecodeError
    from ..pipeline import make_segmenter

    try:
        seg = make_segmenter(cfg)
    except BackendError as e:
        raise BagError(f"backend {cfg.backend!r} not loaded: {e}") from e
    join = StampJoin(classes.num_classes)
    res = OfflineResult(join, {}, 0, [], seg.backend.sha256)
    index = -1
    for item in iter_bag(plan, max_frames):
        stamp = bags.stamp_of(item.msg)
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
        if geo is not None:  # depth in the bag: 3D boxes (replay_geometry)
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
            writer.write(bags.LABELS_TOPIC, bags.IMAGE_TYPE, item.t_ns,
                         bags.image_message(out.labels, "mono8", stamp, frame_id))
            writer.write(bags.INSTANCES_TOPIC, bags.IMAGE_TYPE, item.t_ns,
                         bags.image_message(out.instances.astype("<u2"), "mono16", stamp, frame_id))
    return res


def offline_summary(plan: ReplayPlan, res: OfflineResult, classes: Any, sent: int) -> Dict[str, Any]:
    out: Dict[str, Any] = {
        "frames_sent": sent,
        "frames_processed": len(res.processed),
        "frames_dropped": sent - len(res.processed),
        "frames_rejected": res.rejected,
        "pipeline_ms": percentiles(res.pipeline_ms),
    }
    if plan.gt_topic:
        out["accuracy"] = accuracy_summary(res.join.total(), classes.names, len(res.join.cms))
    return out


# --- live -------------------------------------------------------------------------------------------
@dataclass
class SentFrame:
    index: int
    log_ns: int
    t_pub: float


@dataclass
class LiveState:
    sent: Dict[Stamp, SentFrame] = field(default_factory=dict)
    done: Dict[Stamp, Tuple[float, str]] = field(default_factory=dict)  # stamp -> (latency ms, digest)
    instances: int = 0
    max_lag_s: float = 0.0  # how far publishing fell behind the recorded schedule
    foreign_outputs: int = 0
    duplicate_stamps: int = 0


class LiveReplay:
    """One replay into a node over DDS: publisher, output drain, pacing."""

    def __init__(self, plan: ReplayPlan, cfg: Any, args: argparse.Namespace, classes: Any,
                 writer: Optional[bags.BagWriter], samples: Samples):
        from .rosio import NodeProcess, StreamClient

        self.plan, self.cfg, self.args, self.writer, self.samples = plan, cfg, args, writer, samples
        self.compressed = plan.msgtype == bags.COMPRESSED_TYPE
        self.topic = args.publish_topic or plan.topic
        # Outputs come within about --frame-timeout; older unmatched maps are dropped frames.
        self.join = StampJoin(classes.num_classes, max_age_s=max(10.0, 3 * args.frame_timeout))
        self.state = LiveState()
        self.node = None
        self.geo = args.geometry  # depth in the bag: replay_geometry.GeometryReplay
        self.log_dir = Path(tempfile.mkdtemp(prefix="seg_replay_"))
        if not args.no_start_node:
            remap = f"{'image/compressed' if self.compressed else 'image'}:={self.topic}"
            self.node = NodeProcess(ros_param_values(cfg, args.params), args.node_log or self.log_dir / "node.log",
                                    remap=[remap, *(self.geo.remaps() if self.geo else [])])
        try:
            # StreamClient publishes sensor_msgs/Image; compressed frames need their own publisher.
            self.client = StreamClient(self.topic if not self.compressed else "/_seg_replay/unused_image",
                                       namespace=args.node_namespace, name="seg_replay")
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

    def wait_for_node(self, timeout: float) -> Dict[str, str]:
        """Block until the node subscribes to our topic and sends diagnostics; its first values."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.node is not None and not self.node.alive():
                raise ReplayFailed(f"the node exited during start-up; its log:\n{self.node_log_tail()}")
            diag = self.client.diag_values()
            if self.pub.get_subscription_count() > 0 and diag:
                if "backend fault" in diag.get("_message", ""):
                    # a --backend / --model-path the node cannot load: an argument problem (exit 2)
                    raise BagError(f"the node reports: {diag['_message']}")
                return diag
            time.sleep(0.05)
        raise ReplayFailed(f"no node subscribed to {self.topic} with diagnostics within {timeout:.0f} s; "
                           f"node log:\n{self.node_log_tail()}")

    def close(self) -> Optional[int]:
        self.client.close()
        return self.node.stop() if self.node is not None else None

    # -- outputs
    def drain(self) -> None:
        """Move arrived outputs out of the StreamClient: latency, metrics, output bag (bounded memory)."""
        from rclpy.serialization import serialize_message

        from .rosio import msg_to_array

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

    def _idle_until(self, deadline: float, stamp: Optional[Stamp] = None) -> None:
        """Drain outputs until ``deadline`` (monotonic), or until ``stamp`` has its labels."""
        while True:
            self.drain()
            now = time.monotonic()
            if now >= deadline or (stamp is not None and stamp in self.state.done):
                return
            time.sleep(min(0.005, deadline - now))

    # -- the replay
    def play(self) -> Tuple[int, float]:
        """Publish every camera frame; returns (frames sent, seconds spent publishing)."""
        args = self.args
        t0 = first_log = None
        index = -1
        for item in iter_bag(self.plan, args.max_frames):
            stamp = bags.stamp_of(item.msg)
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
            self.state.sent[stamp] = SentFrame(index, item.t_ns, time.time())
            if self.geo is not None:
                self.geo.before_frame(item.t_ns)  # the frame's depth and camera info first
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

    def _fresh_diagnostics(self, timeout: float) -> None:
        diags = self.client.received.diagnostics
        n0, end = len(diags), time.monotonic() + timeout
        while len(diags) <= n0 and time.monotonic() < end:
            time.sleep(0.05)


def diag_delta(before: Dict[str, str], after: Dict[str, str]) -> Dict[str, Any]:
    """The node's counters over this replay (a running node may have seen frames before)."""
    out: Dict[str, Any] = {}
    for k in DIAG_COUNTERS:
        key = f"frames_{k}"
        if key in after:
            out[key] = int(after[key]) - int(before.get(key, 0))
    for k in ("backend", "model_file", "model_sha256", "inference_ms_p50", "inference_ms_p95", "pipeline_ms_p50",
              "pipeline_ms_p95"):
        if k in after:
            out[k] = after[k]
    if int(after.get("_level", "0") or 0) >= 2:  # ERROR; a stall warning after the last frame is expected
        out["status"] = after.get("_message", "")
    return out


def live_summary(live: LiveReplay, sent: int, seconds: float, diag: Dict[str, Any], classes: Any) -> Dict[str, Any]:
    st = live.state
    processed = len(st.done)
    out: Dict[str, Any] = {
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


def compare_with_offline(plan: ReplayPlan, cfg: Any, classes: Any, live: LiveReplay,
                         node_sha: Optional[str]) -> Dict[str, Any]:
    """Rerun the processed frames through make_segmenter: same mIoU, same label maps expected."""
    processed = set(live.state.done)
    res = run_segmenter_over_bag(plan, cfg, classes, only=processed, max_frames=live.args.max_frames)
    same = sum(1 for s, d in res.processed.items() if live.state.done.get(s, (0, None))[1] == d)
    out: Dict[str, Any] = {"frames": len(res.processed), "frames_identical_labels": same}
    if node_sha:
        out["model_matches_node"] = node_sha == res.model_sha256
    if plan.gt_topic:
        stamps = sorted(set(live.join.cms) & set(res.join.cms))
        off, on = miou(res.join.total(stamps)), miou(live.join.total(stamps))
        out.update({"frames_evaluated": len(stamps), "miou": off, "live_miou_same_frames": on,
                    "miou_abs_diff": (abs(off - on) if off is not None and on is not None else None)})
    return out


# --- CLI -------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="seg-replay", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bag", type=Path, help="rosbag2 folder (sqlite3 or mcap) or a .db3/.mcap file")
    ap.add_argument("--topic", help="camera topic (default: first Image/CompressedImage topic)")
    ap.add_argument("--gt-topic", default=None, help=f"ground-truth labels topic (default {bags.GT_TOPIC}, if present)")
    ap.add_argument("--max-frames", type=int, default=0, help="replay only the first N frames (0 = all)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--offline", action="store_true", help="run make_segmenter on every frame, no DDS")
    mode.add_argument("--as-fast-as-node", action="store_true",
                      help="publish the next frame when the previous frame's labels arrived (or --frame-timeout)")
    ap.add_argument("--rate", type=float, default=1.0, help="playback speed multiplier of the recorded rate")
    ap.add_argument("--frame-timeout", type=float, default=2.0, help="seconds to wait for a frame's output")
    ap.add_argument("--backend", default="tflite_int8",
                    help="node backend (with --no-start-node: the running node's, for class names and "
                         "--compare-offline)")
    ap.add_argument("--model-path", default="", help="model file overriding the backend's shipped model")
    ap.add_argument("-p", "--param", dest="param_pairs", action="append", default=[], metavar="KEY=VALUE",
                    help="node parameter (repeatable), e.g. -p min_object_area=50")
    ap.add_argument("--no-start-node", action="store_true", help="use an already running node")
    ap.add_argument("--node-namespace", default="", help="namespace of a running node's outputs")
    ap.add_argument("--publish-topic", default="", help="topic to publish frames on (default: the bag's topic)")
    ap.add_argument("--node-timeout", type=float, default=60.0, help="seconds to wait for the node to come up")
    ap.add_argument("--node-log", type=Path, default=None, help="log file of the started node")
    ap.add_argument("--out-bag", type=Path, default=None,
                    help="bag for the node's outputs (live default: <bag>_seg beside the input; "
                         "offline: only when given)")
    ap.add_argument("--storage", choices=bags.STORAGES, default=None, help="output storage (default: the input's)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing output bag")
    ap.add_argument("--compare-offline", action="store_true",
                    help="after a live run, rerun the processed frames offline and compare")
    ap.add_argument("--report", type=Path, default=None, help="PNG report (IoU bars, latency, overlays)")
    ap.add_argument("--summary", type=Path, default=None, help="also write the JSON summary here")
    ap.add_argument("--overlays", type=Path, default=None,
                    help="folder for a few overlay_NN.png (frame with its predicted labels blended)")
    return ap


def write_overlays(folder: Path, samples: Samples, classes: Any) -> List[Path]:
    """``overlay_NN.png`` for the sampled frames that got a prediction, in stamp order."""
    import cv2

    from .replay_report import overlay_safe

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, stamp in enumerate(sorted(st for st in samples.pred if st in samples.rgb)):
        path = folder / f"overlay_{k:02d}.png"
        img = overlay_safe(samples.rgb[stamp], samples.pred[stamp], classes.palette())
        cv2.imwrite(str(path), img[:, :, ::-1])
        paths.append(path)
    return paths


def _validate_args(args: argparse.Namespace) -> None:
    if args.rate <= 0:
        raise BagError(f"--rate must be > 0, got {args.rate}")
    if args.frame_timeout <= 0:
        raise BagError("--frame-timeout must be > 0")
    if args.offline and args.compare_offline:
        raise BagError("--compare-offline only applies to a live replay")
    if args.offline and args.no_start_node:
        raise BagError("--offline starts no node; --no-start-node makes no sense with it")


def _out_bag_path(args: argparse.Namespace) -> Optional[Path]:
    if args.out_bag is not None:
        return args.out_bag
    if args.offline:
        return None
    src = args.bag.resolve()
    return src.parent / f"{src.stem if src.is_file() else src.name}_seg"


def _pacing(args: argparse.Namespace) -> Optional[str]:
    if args.offline:
        return None
    return "as_fast_as_node" if args.as_fast_as_node else f"recorded_rate_x{args.rate:g}"


@contextmanager
def _output_bag(path: Optional[Path], storage: str) -> Iterator[Optional[bags.BagWriter]]:
    """The output bag, finished on success; on any failure the partial bag is removed."""
    if path is None:
        yield None
        return
    try:
        with bags.BagWriter(path, storage) as writer:
            yield writer
    except BaseException:
        bags.remove_partial(path)
        raise


def _json_clean(obj: Any) -> Any:
    """NaN/inf are not JSON: they become null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_clean(v) for v in obj]
    return obj


def _run_offline(plan: ReplayPlan, cfg: Any, classes: Any, args: argparse.Namespace,
                 writer: Optional[bags.BagWriter], samples: Samples) -> Tuple[Dict[str, Any], List[float]]:
    t0 = time.monotonic()
    res = run_segmenter_over_bag(plan, cfg, classes, max_frames=args.max_frames, writer=writer, samples=samples,
                                 geo=args.geometry)
    sent = len(res.processed) + res.rejected
    out = offline_summary(plan, res, classes, sent)
    out["seconds"] = round(time.monotonic() - t0, 3)
    return out, res.pipeline_ms


def _run_live(plan: ReplayPlan, cfg: Any, classes: Any, args: argparse.Namespace,
              writer: Optional[bags.BagWriter], samples: Samples) -> Tuple[Dict[str, Any], List[float]]:
    live = LiveReplay(plan, cfg, args, classes, writer, samples)
    try:
        before = live.wait_for_node(args.node_timeout)
        LOG.info("node ready (%s %s); replaying %d frames from %s", before.get("backend"),
                 before.get("model_file"), plan.frames, plan.topic)
        sent, seconds = live.play()
        live.settle()
        diag = diag_delta(before, live.client.diag_values())
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


def replay(args: argparse.Namespace) -> Dict[str, Any]:
    """Everything but argument parsing and printing; raises BagError / ReplayFailed."""
    _validate_args(args)
    gt_topic = args.gt_topic or bags.GT_TOPIC
    plan = plan_replay(args.bag, args.topic, gt_topic, gt_explicit=args.gt_topic is not None)
    if replay_geometry.has_depth(plan):
        args.params.setdefault("use_depth", True)
    cfg = node_config(args.backend, args.model_path, args.params, plan.msgtype == bags.COMPRESSED_TYPE)
    classes = class_set_for(cfg)
    args.geometry = (replay_geometry.GeometryReplay.for_plan(plan, list(classes.names), cfg.resolve_size_pairs,
                                                             cfg.depth_sync_tolerance_s) if cfg.use_depth else None)
    warnings: List[str] = []
    check_gt_variant(plan, classes, warnings)
    out_path = _out_bag_path(args)
    storage = args.storage or plan.storage
    if out_path is not None:
        bags.prepare_output(out_path, args.overwrite)
    total = min(plan.frames, args.max_frames) if args.max_frames else plan.frames
    samples = Samples(total)
    summary: Dict[str, Any] = {
        "bag": str(plan.bag), "storage": plan.storage, "topic": plan.topic, "msgtype": plan.msgtype,
        "gt_topic": plan.gt_topic, "mode": "offline" if args.offline else "live",
        "pacing": _pacing(args),
        "backend": cfg.backend, "model_path": cfg.model_path or None, "class_variant": classes.variant,
    }
    runner = _run_offline if args.offline else _run_live
    with _output_bag(out_path, storage) as writer:
        result, lat = runner(plan, cfg, classes, args, writer, samples)
    if writer is not None:
        summary["out_bag"] = {"path": str(out_path), "storage": storage, "topics": dict(writer.counts)}
    summary.update(result)
    if args.geometry is not None:
        summary["geometry"] = args.geometry.summary()
        args.geometry.close()
    if warnings:
        summary["warnings"] = warnings
    if args.overlays is not None:
        summary["overlays"] = [str(p) for p in write_overlays(args.overlays, samples, classes)]
    if args.report is not None:
        from .replay_report import write_report

        summary["report"] = str(write_report(args.report, summary, classes, lat, samples.frames()))
    return _json_clean(summary)


def run_checked(args: argparse.Namespace) -> Tuple[int, Optional[Dict[str, Any]]]:
    """:func:`replay` with its failures logged: (exit code, summary or None)."""
    try:
        args.params = parse_params(args.param_pairs)
        return 0, replay(args)
    except BagError as e:
        LOG.error("%s", e)
        return 2, None
    except ReplayFailed as e:
        LOG.error("%s", e)
        return 1, None
    except KeyboardInterrupt:
        LOG.error("interrupted; the partial output bag was removed")
        return 130, None


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    rc, summary = run_checked(args)
    if summary is None:
        return rc
    text = json.dumps(summary, indent=2)
    if args.summary is not None:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
