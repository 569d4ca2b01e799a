"""seg-demo: the whole pipeline on a stream the project makes itself (README command 1).

1. builds a rosbag2 camera stream: table scenes ray-cast by ``seg_perception.demo_scene3d`` (no
   dataset pixels; exact labels, depth, camera info and 3D truth), or with ``--dataset PATH``
   the photos of an atWork-layout folder with their masks;
2. replays it at its recorded rate into a node started in its own process (default backend)
   over real DDS, records the node's outputs into a second bag;
3. writes the seg-replay JSON summary (frames sent/processed/dropped, latency from publish to
   labels, mIoU against the ground truth; with rendered depth also the 3D boxes' position,
   size and yaw errors) to ``summary.json`` and a PNG report with overlays, and ends with a
   short summary in words.

Rendered frames show made-up shapes the models never saw in training: their mIoU checks the
plumbing, not the model. Use ``--dataset`` for an accuracy number.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from . import bags
from .errors import UsageError
from .make_bag import BagSpec, atwork_frames, demo_frames, write_bag
from .replay import build_parser as replay_parser
from .replay import run_checked

LOG = logging.getLogger("seg_demo")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="seg-demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--dataset",
        type=Path,
        default=None,
        help="atWork-layout root (objects/image, objects/semantic_labels): replay its validation photos "
        "(the split training holds out; a final model learnt them too, and the summary says so)",
    )
    ap.add_argument(
        "--frames",
        type=int,
        default=None,
        help="frames to render (default 60), or validation photos to take (default: all)",
    )
    ap.add_argument("--rate", type=float, default=15.0, help="camera frame rate of the bag (Hz)")
    ap.add_argument("--storage", choices=bags.STORAGES, default="mcap")
    ap.add_argument("--backend", default="tflite_int8")
    ap.add_argument("--model-path", default="", help="model file overriding the backend's shipped model")
    ap.add_argument(
        "--out",
        type=Path,
        default=Path("out/demo"),
        help="folder for the camera bag, the output bag, summary.json and report.png",
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    camera_bag, seg_bag = out / "camera_bag", out / "segmentation_bag"
    try:
        if args.dataset is not None:
            frames = atwork_frames(args.dataset, "full", max(0, args.frames or 0), split="val")
        else:
            n = 60 if args.frames is None else args.frames
            if n <= 0:
                raise UsageError("--frames must be >= 1 for rendered frames")
            frames = demo_frames(n)
        bags.prepare_output(camera_bag, overwrite=True)
        made = write_bag(frames, BagSpec(camera_bag, args.storage, args.rate))
        LOG.info("wrote %d frames to %s", made["frames"], camera_bag)
        rargs = replay_parser().parse_args(
            [
                str(camera_bag),
                "--backend",
                args.backend,
                "--out-bag",
                str(seg_bag),
                "--overwrite",
                "--report",
                str(out / "report.png"),
                "--overlays",
                str(out),
                "--node-log",
                str(out / "node.log"),
                *(["--model-path", args.model_path] if args.model_path else []),
            ]
        )
    except (bags.BagError, UsageError) as e:
        LOG.error("%s", e)
        return 2
    rc, summary = run_checked(rargs)
    if summary is None:
        return rc
    summary["source"] = str(args.dataset) if args.dataset else "rendered demo scenes (seg_perception.demo_scene3d)"
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(plain_summary(summary, out, rendered=args.dataset is None, final_model=_final_model(args)))
    LOG.info("node outputs: %s", seg_bag)
    return 0


def _num(stats: dict[str, Any] | None, unit: str, scale: float = 1.0) -> str:
    v = (stats or {}).get("median")
    return "n/a" if v is None else f"{scale * v:.1f}{unit}"


def _ms(latency: dict[str, Any], key: str) -> str:
    v = latency.get(key)
    return "n/a" if v is None else f"{v:.1f} ms"


def _final_model(args: argparse.Namespace) -> bool | None:
    """Whether the node's model learnt the validation photos too, from the entry the backend would use
    (manifest, or a model_path's manifest hash or ``<file>.json`` sidecar); None when nothing says."""
    from ..backends import BackendError, find_model

    try:
        found = find_model(args.backend, args.model_path)
    except BackendError:
        return None
    if found.source == "file" or "split" not in found.entry.provenance:
        return None  # a file of unknown training
    return found.entry.trained_on_val


def plain_summary(summary: dict[str, Any], out: Path, rendered: bool, final_model: bool | None = False) -> str:
    """The demo's last lines: what happened, in words, and where the numbers are.

    ``final_model``: the model was trained on the validation photos too (True), not (False), unknown (None).
    """
    node = summary.get("node", {})
    lat = summary.get("latency_ms", {})
    source = "rendered scenes" if rendered else "validation photos"
    lines = [
        f"seg-demo: {summary.get('frames_sent', 0)} frames from {source} -> node ({summary.get('backend')}) over DDS",
        f"  frames: {summary.get('frames_sent', 0)} sent, {summary.get('frames_processed', 0)} with labels, "
        f"{summary.get('frames_dropped', 0)} without (rejected by the node: {node.get('frames_rejected', 0)})",
        f"  latency publish -> labels: p50 {_ms(lat, 'p50')}, p95 {_ms(lat, 'p95')} "
        f"(inference alone p50 {node.get('inference_ms_p50', 'n/a')} ms)",
    ]
    acc = summary.get("accuracy") or {}
    miou = acc.get("miou")
    frames = acc.get("frames_evaluated", 0)
    score = "no ground truth" if miou is None else f"mIoU {100 * miou:.1f} % on {frames} frames"
    if rendered:
        lines += [
            f"  {score}: the rendered objects are made-up look-alikes the models never saw in training,",
            "    so this checks the plumbing (frames in, labels out, stamps matched), not the model's accuracy.",
            "  accuracy on real photos: bash scripts/demo.sh --dataset ../shared/datasets/atwork",
        ]
    elif final_model:
        lines += [
            f"  {score} on the validation photos, which this final model was trained on too: memory, not",
            "    accuracy on new capture runs; its held-out twin's number is in the README (Results).",
        ]
    elif final_model is None:
        lines.append(f"  {score} (validation photos; a model given by path: held out only if it did not train on them)")
    else:
        lines.append(f"  {score} (validation photos, held out from training): the model's accuracy on a real stream")
    boxes = (summary.get("geometry") or {}).get("accuracy_3d")
    if boxes:
        lines.append(
            f"  3D boxes: {boxes.get('matched', 0)} of {boxes.get('objects_true', 0)} rendered objects found, "
            f"centre error median {_num(boxes.get('position_error_mm'), ' mm')}, "
            f"size error median {_num(boxes.get('dimension_error_rel'), ' %', 100)}"
        )
    lines.append(f"  full summary: {out / 'summary.json'}; report: {summary.get('report', out / 'report.png')}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
