"""seg-make-bag: a rosbag2 of camera frames (and ground truth, when known) for ``seg-replay``.

Sources: a folder of images (``--images``), an atWork dataset root (``--atwork``: photos
with hand-drawn masks, background 19 mapped to class 0 through the class file), or
``--demo N`` table-top scenes ray-cast by :mod:`seg_perception.demo_scene3d` (camera straight
down, 25 or 45 degrees tilted, by frame), with depth and exact 3D truth.

Topics (stamps start at ``--start-time`` and are ``1/--rate`` apart; the bag's log time of
each message equals its header stamp, as a recorder on the camera host would write):

* ``/camera/image_raw`` sensor_msgs/Image rgb8 (or ``--compressed``:
  ``/camera/image_raw/compressed`` sensor_msgs/CompressedImage JPEG)
* ``/camera/labels_gt`` sensor_msgs/Image mono8 class ids (255 = ignore), when there is ground truth
* ``/camera/camera_info`` sensor_msgs/CameraInfo: the rendering camera for ``--demo``, else a
  pinhole guess from the image size
* ``--demo`` only: ``/camera/depth`` sensor_msgs/Image 16UC1 (millimetres, registered to the
  colour image) and ``/camera/objects_gt`` std_msgs/String (JSON: every object's class, centre,
  axes and dimensions in the optical frame; ``seg_perception.geometry_eval``)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..stamps import ns_to_stamp, stamp_to_ns
from . import bags
from .errors import UsageError

LOG = logging.getLogger("seg_make_bag")
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "bmp")
DEMO_MIN_SIDE = 160  # smaller rendered frames leave little room for whole objects


@dataclass
class Frame:
    rgb: np.ndarray
    gt: np.ndarray | None  # class ids of the chosen variant, 255 = ignore
    name: str
    depth_mm: np.ndarray | None = None  # uint16 millimetres, registered to rgb
    camera: Any = None  # geometry.CameraModel of rgb (None: pinhole guess)
    truths: list | None = None  # demo_scene3d.Truth of each object


def _is_image(path: Path) -> bool:
    # atWork has names like "background_0120. png": compare the extension without dots/spaces.
    return path.is_file() and path.suffix.lower().strip(" .") in IMAGE_EXTENSIONS


def _read_rgb(path: Path) -> np.ndarray | None:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        LOG.warning("skipping %s: not a readable image", path)
        return None
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _read_mask(path: Path) -> np.ndarray | None:
    import cv2

    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None or mask.dtype != np.uint8:
        LOG.warning("skipping mask %s: not an 8-bit image", path)
        return None
    return mask[:, :, 0] if mask.ndim == 3 else mask  # a mask saved as colour holds the id in every channel


def image_folder_frames(folder: Path, limit: int = 0) -> Iterator[Frame]:
    """Images of one folder, sorted by name; no ground truth. The folder is checked now, not lazily."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"--images {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if _is_image(p))
    if not files:
        raise UsageError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")

    def gen() -> Iterator[Frame]:
        for path in files[: limit or None]:
            rgb = _read_rgb(path)
            if rgb is not None:
                yield Frame(rgb, None, path.name)

    return gen()


def atwork_pairs(root: Path, split: str = "all") -> list[tuple[Path, Path]]:
    """``(photo, mask)`` pairs of ``seg_perception.atwork.list_samples`` (sorted by class then
    name), optionally only the training's ``train`` or ``val`` photos (same split as training)."""
    from ..atwork import list_samples, split_samples

    if split not in ("all", "train", "val"):
        raise UsageError(f"split {split!r} is not one of ['all', 'train', 'val']")
    try:
        samples = list_samples(root)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(f"--atwork {root}: {e}") from e
    if split != "all":
        train, val = split_samples(samples)
        samples = train if split == "train" else val
    return [(s.image_path, s.label_path) for s in samples]


def atwork_frames(root: Path, variant: str = "full", limit: int = 0, split: str = "all") -> Iterator[Frame]:
    """atWork photos with masks remapped to the variant's class ids (dataset background 19 -> 0)."""
    from ..classes import load_classes

    classes = load_classes(variant)
    pairs = atwork_pairs(root, split)[: limit or None]

    def gen() -> Iterator[Frame]:
        for img_path, mask_path in pairs:
            rgb, mask = _read_rgb(img_path), _read_mask(mask_path)
            if rgb is None or mask is None:
                continue
            if mask.shape != rgb.shape[:2]:
                LOG.warning("skipping %s: mask %s is %s, photo is %s", img_path, mask_path, mask.shape, rgb.shape[:2])
                continue
            yield Frame(rgb, classes.remap_dataset_mask(mask), img_path.name)

    return gen()


def demo_frames(n: int, variant: str = "full", hw: tuple[int, int] = (480, 640)) -> Iterator[Frame]:
    """``n`` rendered scenes (seeds 0..n-1) with exact labels, depth and 3D truth."""
    from ..classes import load_classes
    from ..demo_scene3d import render_scene

    classes = load_classes(variant)
    for seed in range(n):
        sc = render_scene(seed, hw)
        yield Frame(sc.rgb, classes.remap_full(sc.labels), f"demo_{seed:04d}", sc.depth_mm, sc.camera, sc.truths)


def frame_stamp(start_ns: int, index: int, rate_hz: float) -> bags.Stamp:
    """Stamps from a fixed start, exactly ``1/rate`` apart (rounded to the nanosecond)."""
    return ns_to_stamp(start_ns + int(round(index * 1e9 / rate_hz)))


@dataclass
class BagSpec:
    out: Path
    storage: str = "mcap"
    rate_hz: float = 10.0
    start_ns: int = 1_700_000_000 * 1_000_000_000
    frame_id: str = "camera_color_optical_frame"
    compressed: bool = False
    jpeg_quality: int = 90
    encoding: str = "rgb8"
    gt_variant: str = "full"


def write_bag(frames: Iterator[Frame], spec: BagSpec) -> dict:
    """Write the frames; returns what was written (topics -> counts, first/last stamp)."""
    if spec.rate_hz <= 0:
        raise UsageError(f"--rate must be > 0, got {spec.rate_hz}")
    camera_topic = bags.COMPRESSED_TOPIC if spec.compressed else bags.CAMERA_TOPIC
    camera_type = bags.COMPRESSED_TYPE if spec.compressed else bags.IMAGE_TYPE
    n = 0
    stamps: list[bags.Stamp] = []
    with bags.BagWriter(spec.out, spec.storage, {bags.GT_VARIANT_KEY: spec.gt_variant}) as w:
        for frame in frames:
            stamp = frame_stamp(spec.start_ns, n, spec.rate_hz)
            t_ns = stamp_to_ns(stamp)
            if spec.compressed:
                cam = bags.compressed_message(frame.rgb, stamp, spec.frame_id, spec.jpeg_quality)
            else:
                pixels = frame.rgb if spec.encoding == "rgb8" else frame.rgb[:, :, ::-1]
                cam = bags.image_message(pixels, spec.encoding, stamp, spec.frame_id)
            w.write(camera_topic, camera_type, t_ns, cam)
            if frame.gt is not None:
                w.write(
                    bags.GT_TOPIC, bags.IMAGE_TYPE, t_ns, bags.image_message(frame.gt, "mono8", stamp, spec.frame_id)
                )
            h, wd = frame.rgb.shape[:2]
            w.write(
                bags.CAMERA_INFO_TOPIC,
                bags.CAMERA_INFO_TYPE,
                t_ns,
                bags.camera_info_message(h, wd, stamp, spec.frame_id, frame.camera),
            )
            if frame.depth_mm is not None:
                w.write(
                    bags.DEPTH_TOPIC,
                    bags.IMAGE_TYPE,
                    t_ns,
                    bags.image_message(frame.depth_mm.astype("<u2"), "16UC1", stamp, spec.frame_id),
                )
            if frame.truths is not None:
                from ..geometry_eval import truth_to_json

                w.write(
                    bags.OBJECTS_GT_TOPIC,
                    bags.STRING_TYPE,
                    t_ns,
                    bags.string_message(truth_to_json(frame.truths, stamp, spec.frame_id)),
                )
            stamps.append(stamp)
            n += 1
        if n == 0:
            raise bags.BagError("no frames were written (all inputs were skipped)")
        counts = dict(w.counts)
    return {
        "bag": str(spec.out),
        "storage": spec.storage,
        "frames": n,
        "topics": counts,
        "rate_hz": spec.rate_hz,
        "first_stamp": list(stamps[0]),
        "last_stamp": list(stamps[-1]),
    }


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} must be WIDTHxHEIGHT, e.g. 640x480") from None
    if w < 16 or h < 16:
        raise argparse.ArgumentTypeError("size must be at least 16x16")
    return h, w


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="seg-make-bag", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", type=Path, help="folder of *.jpg/*.png (sorted by name), no ground truth")
    src.add_argument("--atwork", type=Path, help="atWork dataset root (objects/image, objects/semantic_labels)")
    src.add_argument("--demo", type=int, metavar="N", help="N rendered demo frames with ground truth")
    ap.add_argument("--out", type=Path, required=True, help="bag folder to create")
    ap.add_argument("--storage", choices=bags.STORAGES, default="mcap")
    ap.add_argument("--rate", type=float, default=10.0, help="frame rate in Hz (stamps 1/rate apart)")
    ap.add_argument("--start-time", type=float, default=1_700_000_000.0, help="first stamp, seconds since epoch")
    ap.add_argument("--frame-id", default="camera_color_optical_frame")
    ap.add_argument("--compressed", action="store_true", help="JPEG CompressedImage on .../compressed")
    ap.add_argument("--jpeg-quality", type=int, default=90)
    ap.add_argument("--encoding", choices=("rgb8", "bgr8"), default="rgb8", help="raw Image encoding")
    ap.add_argument("--class-variant", default="full", help="class ids of the ground truth (class file variant)")
    ap.add_argument(
        "--split",
        choices=("all", "train", "val"),
        default="all",
        help="--atwork: all photos, or the training/validation split of training.data",
    )
    ap.add_argument("--limit", type=int, default=0, help="at most this many frames (0 = all)")
    ap.add_argument("--size", type=_parse_size, default=(480, 640), help="--demo frame size WIDTHxHEIGHT")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing bag at --out")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from ..classes import VARIANTS

    try:
        if args.class_variant not in VARIANTS:
            raise UsageError(f"--class-variant {args.class_variant!r} is not one of {list(VARIANTS)}")
        if args.atwork is not None:
            frames = atwork_frames(args.atwork, args.class_variant, args.limit, args.split)
        elif args.images is not None:
            frames = image_folder_frames(args.images, args.limit)
        else:
            if args.demo <= 0:
                raise UsageError("--demo N needs N >= 1")
            if min(args.size) <= DEMO_MIN_SIDE:
                raise UsageError(f"--size for --demo must be larger than {DEMO_MIN_SIDE} pixels on each side")
            frames = demo_frames(
                args.demo if not args.limit else min(args.demo, args.limit), args.class_variant, args.size
            )
        out = bags.prepare_output(args.out, args.overwrite)
        spec = BagSpec(
            out,
            args.storage,
            args.rate,
            int(round(args.start_time * 1e9)),
            args.frame_id,
            args.compressed,
            args.jpeg_quality,
            args.encoding,
            args.class_variant,
        )
        try:
            summary = write_bag(frames, spec)
        except (bags.BagError, UsageError, OSError):
            bags.remove_partial(out)
            raise
    except (bags.BagError, UsageError) as e:
        LOG.error("%s", e)
        return 2
    except OSError as e:  # e.g. --out under a file or on a read-only disk
        LOG.error("cannot write %s: %s", args.out, e)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
