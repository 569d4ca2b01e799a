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

Depth: a bag with ``/camera/depth`` and ``/camera/camera_info`` (``seg-make-bag --demo``) starts the
node with ``use_depth`` (unless ``-p use_depth=false``); each frame's depth and camera info are
published before it, the node's 3D boxes are collected and, with ``/camera/objects_gt`` (rendered
truth), scored: the summary's ``geometry`` (:mod:`.geometry`). ``--offline`` measures the same boxes
in-process.

Exit codes: 0 done, 1 the node failed or produced nothing, 2 a bad bag or argument (including a
backend the node or ``--offline`` cannot load).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ...plain import to_plain
from .. import bags
from ..bag_plan import plan_replay
from ..bags import BagError
from ..errors import UsageError
from .geometry import GeometryReplay, has_depth
from .live import ReplayFailed, run_live
from .node_config import check_gt_variant, class_set_for, node_config, parse_params
from .offline import run_offline
from .scoring import Samples

LOG = logging.getLogger("seg_replay")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="seg-replay", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("bag", type=Path, help="rosbag2 folder (sqlite3 or mcap) or a .db3/.mcap file")
    ap.add_argument("--topic", help="camera topic (default: first Image/CompressedImage topic)")
    ap.add_argument("--gt-topic", default=None, help=f"ground-truth labels topic (default {bags.GT_TOPIC}, if present)")
    ap.add_argument("--max-frames", type=int, default=0, help="replay only the first N frames (0 = all)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--offline", action="store_true", help="run make_segmenter on every frame, no DDS")
    mode.add_argument(
        "--as-fast-as-node",
        action="store_true",
        help="publish the next frame when the previous frame's labels arrived (or --frame-timeout)",
    )
    ap.add_argument("--rate", type=float, default=1.0, help="playback speed multiplier of the recorded rate")
    ap.add_argument("--frame-timeout", type=float, default=2.0, help="seconds to wait for a frame's output")
    ap.add_argument(
        "--backend",
        default="tflite_int8",
        help="node backend (with --no-start-node: the running node's, for class names and --compare-offline)",
    )
    ap.add_argument("--model-path", default="", help="model file overriding the backend's shipped model")
    ap.add_argument(
        "-p",
        "--param",
        dest="param_pairs",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="node parameter (repeatable), e.g. -p min_object_area=50",
    )
    ap.add_argument("--no-start-node", action="store_true", help="use an already running node")
    ap.add_argument("--node-namespace", default="", help="namespace of a running node's outputs")
    ap.add_argument("--publish-topic", default="", help="topic to publish frames on (default: the bag's topic)")
    ap.add_argument("--node-timeout", type=float, default=60.0, help="seconds to wait for the node to come up")
    ap.add_argument("--node-log", type=Path, default=None, help="log file of the started node")
    ap.add_argument(
        "--out-bag",
        type=Path,
        default=None,
        help="bag for the node's outputs (live default: <bag>_seg beside the input; offline: only when given)",
    )
    ap.add_argument("--storage", choices=bags.STORAGES, default=None, help="output storage (default: the input's)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing output bag")
    ap.add_argument(
        "--compare-offline",
        action="store_true",
        help="after a live run, rerun the processed frames offline and compare",
    )
    ap.add_argument("--report", type=Path, default=None, help="PNG report (IoU bars, latency, overlays)")
    ap.add_argument("--summary", type=Path, default=None, help="also write the JSON summary here")
    ap.add_argument(
        "--overlays",
        type=Path,
        default=None,
        help="folder for a few overlay_NN.png (frame with its predicted labels blended)",
    )
    return ap


def write_overlays(folder: Path, samples: Samples, classes: Any) -> list[Path]:
    """``overlay_NN.png`` for the sampled frames that got a prediction, in stamp order."""
    import cv2

    from .report import overlay_safe

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
        raise UsageError(f"--rate must be > 0, got {args.rate}")
    if args.frame_timeout <= 0:
        raise UsageError("--frame-timeout must be > 0")
    if args.offline and args.compare_offline:
        raise UsageError("--compare-offline only applies to a live replay")
    if args.offline and args.no_start_node:
        raise UsageError("--offline starts no node; --no-start-node makes no sense with it")


def _out_bag_path(args: argparse.Namespace) -> Path | None:
    if args.out_bag is not None:
        return args.out_bag
    if args.offline:
        return None
    src = args.bag.resolve()
    return src.parent / f"{src.stem if src.is_file() else src.name}_seg"


def _pacing(args: argparse.Namespace) -> str | None:
    if args.offline:
        return None
    return "as_fast_as_node" if args.as_fast_as_node else f"recorded_rate_x{args.rate:g}"


@contextmanager
def _output_bag(path: Path | None, storage: str) -> Iterator[bags.BagWriter | None]:
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


def replay(args: argparse.Namespace) -> dict[str, Any]:
    """Everything but argument parsing and printing; raises BagError / ReplayFailed."""
    _validate_args(args)
    gt_topic = args.gt_topic or bags.GT_TOPIC
    plan = plan_replay(args.bag, args.topic, gt_topic, gt_explicit=args.gt_topic is not None)
    if has_depth(plan):
        args.params.setdefault("use_depth", True)
    cfg = node_config(args.backend, args.model_path, args.params, plan.msgtype == bags.COMPRESSED_TYPE)
    classes = class_set_for(cfg)
    # the depth side of the run, handed to the offline / live runner; None without depth
    args.geometry = (
        GeometryReplay.for_plan(plan, list(classes.names), cfg.resolve_size_pairs, cfg.depth_sync_tolerance_s)
        if cfg.use_depth
        else None
    )
    warnings: list[str] = []
    check_gt_variant(plan, classes, warnings)
    out_path = _out_bag_path(args)
    storage = args.storage or plan.storage
    if out_path is not None:
        bags.prepare_output(out_path, args.overwrite)
    total = min(plan.frames, args.max_frames) if args.max_frames else plan.frames
    samples = Samples(total)
    summary: dict[str, Any] = {
        "bag": str(plan.bag),
        "storage": plan.storage,
        "topic": plan.topic,
        "msgtype": plan.msgtype,
        "gt_topic": plan.gt_topic,
        "mode": "offline" if args.offline else "live",
        "pacing": _pacing(args),
        "backend": cfg.backend,
        "model_path": cfg.model_path or None,
        "class_variant": classes.variant,
    }
    runner = run_offline if args.offline else run_live
    try:
        with _output_bag(out_path, storage) as writer:
            result, lat = runner(plan, cfg, classes, args, writer, samples)
    finally:
        if args.geometry is not None:
            args.geometry.close()
    if writer is not None:
        summary["out_bag"] = {"path": str(out_path), "storage": storage, "topics": dict(writer.counts)}
    summary.update(result)
    if args.geometry is not None:
        summary["geometry"] = args.geometry.summary()
    if warnings:
        summary["warnings"] = warnings
    if args.overlays is not None:
        summary["overlays"] = [str(p) for p in write_overlays(args.overlays, samples, classes)]
    if args.report is not None:
        from .report import write_report

        summary["report"] = str(write_report(args.report, summary, classes, lat, samples.frames()))
    return to_plain(summary)


def run_checked(args: argparse.Namespace) -> tuple[int, dict[str, Any] | None]:
    """:func:`replay` with its failures logged: (exit code, summary or None)."""
    try:
        args.params = parse_params(args.param_pairs)
        return 0, replay(args)
    except (BagError, UsageError) as e:
        LOG.error("%s", e)
        return 2, None
    except ReplayFailed as e:
        LOG.error("%s", e)
        return 1, None
    except KeyboardInterrupt:
        LOG.error("interrupted; the partial output bag was removed")
        return 130, None


def main(argv: list[str] | None = None) -> int:
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
