"""rosbag2 access for the bag tools, through ``rosbags`` (no ROS distro, no rclpy).

Why a module of its own: ``seg-make-bag`` writes bags, ``seg-replay`` reads them (and
writes the node's outputs into a new one); both need the same topic names, message
builders, storage names and error texts. Both storages (``sqlite3``, ``mcap``) and bags
recorded by ``ros2 bag record`` (a folder with ``metadata.yaml``, or a bare ``.db3`` /
``.mcap`` file) are handled by ``rosbags``' reader.

Every problem of a bag a user can fix (missing topic, wrong type, unsupported encoding, an
unreadable metadata.yaml, an existing output path) raises :class:`BagError`; the CLIs turn it
into exit code 2 (argument errors are :class:`~seg_perception.tools.errors.UsageError`).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..encodings import ImageDecodeError, array_to_fields, compressed_to_rgb, image_to_rgb
from ..stamps import Stamp, stamp_of

LOG = logging.getLogger(__name__)

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
STRING_TYPE = "std_msgs/msg/String"
MARKERS_TYPE = "visualization_msgs/msg/MarkerArray"
CAMERA_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)

CAMERA_TOPIC = "/camera/image_raw"
COMPRESSED_TOPIC = CAMERA_TOPIC + "/compressed"
GT_TOPIC = "/camera/labels_gt"
CAMERA_INFO_TOPIC = "/camera/camera_info"
DEPTH_TOPIC = "/camera/depth"  # 16UC1 millimetres, registered to the colour image
OBJECTS_GT_TOPIC = "/camera/objects_gt"  # std_msgs/String JSON: rendered 3D truth (geometry_eval.truth_to_json)
MARKERS_TOPIC = "/segmentation/object_markers"
LABELS_TOPIC = "/segmentation/labels"
INSTANCES_TOPIC = "/segmentation/instances"

STORAGES = ("mcap", "sqlite3")
GT_ENCODINGS = ("mono8", "8UC1")
#: ``metadata.yaml`` custom_data key: the class variant of the ground-truth ids.
GT_VARIANT_KEY = "seg_perception.gt_class_variant"


class BagError(ValueError):
    """The bag cannot be read or written as asked; the text says what to change."""


@lru_cache(maxsize=1)
def typestore() -> Any:
    """The message definitions used to (de)serialise: the newest ROS 2 store available.

    Image, CompressedImage and CameraInfo are identical in every ROS 2 distro, so bags
    recorded on Humble or Jazzy read the same.
    """
    from rosbags.typesys import Stores, get_typestore

    store = getattr(Stores, "ROS2_KILTED", None) or getattr(Stores, "ROS2_JAZZY", None) or Stores.ROS2_HUMBLE
    return get_typestore(store)


# --- reading ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TopicInfo:
    msgtype: str
    count: int


def bag_information(folder: Path) -> dict[str, Any]:
    """``rosbag2_bagfile_information`` of a bag folder's metadata.yaml; a broken file is a BagError."""
    import yaml

    meta = Path(folder) / "metadata.yaml"
    try:
        doc = yaml.safe_load(meta.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise BagError(f"{meta}: not a readable metadata.yaml ({' '.join(str(e).split())})") from None
    info = doc.get("rosbag2_bagfile_information") if isinstance(doc, dict) else None
    if not isinstance(info, dict):
        raise BagError(f"{meta}: no rosbag2_bagfile_information mapping; not a rosbag2 metadata file")
    return info


def storage_of(path: Path) -> str:
    """``sqlite3`` or ``mcap`` for a bag folder (from metadata.yaml or its files) or a bare file."""
    path = Path(path)
    if path.is_file():
        suffixes = {".db3": "sqlite3", ".mcap": "mcap"}
        if path.suffix in suffixes:
            return suffixes[path.suffix]
        raise BagError(f"{path}: not a rosbag2 file (expected .db3 or .mcap)")
    if (path / "metadata.yaml").is_file():
        ident = str(bag_information(path).get("storage_identifier", ""))
        if ident in STORAGES:
            return ident
    if any(path.glob("*.mcap")):
        return "mcap"
    if any(path.glob("*.db3")):
        return "sqlite3"
    raise BagError(f"{path}: no rosbag2 bag here (no metadata.yaml, .db3 or .mcap)")


def open_reader(path: Path) -> Any:
    """An opened ``rosbags`` Reader; unreadable paths become :class:`BagError`."""
    from rosbags.rosbag2 import Reader, ReaderError

    path = Path(path)
    if not path.exists():
        raise BagError(f"bag {path} does not exist")
    try:
        reader = Reader(path)
        reader.open()
    except (ReaderError, OSError, KeyError, TypeError, ValueError) as e:  # rosbags trusts metadata.yaml's layout
        raise BagError(f"cannot open bag {path}: {type(e).__name__}: {e}") from e
    return reader


def topics_of(reader: Any) -> dict[str, TopicInfo]:
    return {name: TopicInfo(str(t.msgtype), int(t.msgcount)) for name, t in reader.topics.items()}


def describe_topics(topics: Mapping[str, TopicInfo]) -> str:
    """One line per topic, for error messages."""
    if not topics:
        return "  (the bag has no topics)"
    return "\n".join(f"  {name}  [{t.msgtype}]  {t.count} msgs" for name, t in sorted(topics.items()))


def select_camera_topic(topics: Mapping[str, TopicInfo], requested: str | None = None) -> str:
    """The requested topic (checked), else the first Image/CompressedImage topic by name.

    Labels-like topics (ground truth, a recorded node output) are skipped by the default
    choice, so a bag with both camera and ``/camera/labels_gt`` picks the camera.
    """
    if requested:
        if requested not in topics:
            raise BagError(f"topic {requested!r} is not in the bag; its topics:\n{describe_topics(topics)}")
        if topics[requested].msgtype not in CAMERA_TYPES:
            raise BagError(
                f"topic {requested!r} is {topics[requested].msgtype}, expected one of "
                f"{list(CAMERA_TYPES)}; the bag's topics:\n{describe_topics(topics)}"
            )
        return requested
    candidates = [n for n in sorted(topics) if topics[n].msgtype in CAMERA_TYPES]
    cameras = [n for n in candidates if not _looks_like_labels(n)]
    chosen = cameras or candidates
    if not chosen:
        raise BagError(f"no {IMAGE_TYPE} or {COMPRESSED_TYPE} topic in the bag; its topics:\n{describe_topics(topics)}")
    return chosen[0]


def _looks_like_labels(topic: str) -> bool:
    """Image topics that are not the colour camera: labels, node outputs, ground truth, depth."""
    low = topic.lower()
    return any(k in low for k in ("label", "segmentation", "mask", "_gt", "instances", "depth"))


def check_gt_topic(topics: Mapping[str, TopicInfo], gt_topic: str, explicit: bool) -> str | None:
    """The ground-truth topic if usable; ``None`` when the default one is absent."""
    if gt_topic not in topics:
        if explicit:
            raise BagError(f"ground-truth topic {gt_topic!r} is not in the bag; its topics:\n{describe_topics(topics)}")
        return None
    if topics[gt_topic].msgtype != IMAGE_TYPE:
        raise BagError(
            f"ground-truth topic {gt_topic!r} is {topics[gt_topic].msgtype}, expected {IMAGE_TYPE} (mono8 class ids)"
        )
    return gt_topic


def connections_for(reader: Any, topics: Iterable[str | None]) -> list:
    wanted = {t for t in topics if t}
    return [c for c in reader.connections if c.topic in wanted]


def deserialize(raw: bytes, msgtype: str) -> Any:
    return typestore().deserialize_cdr(raw, msgtype)


def decode_camera(msg: Any, msgtype: str, max_pixels: int = 0) -> np.ndarray:
    """A bag camera message -> HxWx3 RGB, by the same functions the node uses."""
    if msgtype == COMPRESSED_TYPE:
        return compressed_to_rgb(msg, max_pixels)
    return image_to_rgb(msg, max_pixels)


def check_first_frame(reader: Any, topic: str, msgtype: str) -> tuple[int, int]:
    """Decode the topic's first message; unsupported encodings fail here, before any DDS work.

    Returns the first frame's ``(height, width)``.
    """
    conns = connections_for(reader, [topic])
    for _, _, raw in reader.messages(connections=conns):
        msg = deserialize(raw, msgtype)
        try:
            rgb = decode_camera(msg, msgtype)
        except ImageDecodeError as e:
            what = f"format {msg.format!r}" if msgtype == COMPRESSED_TYPE else f"encoding {msg.encoding!r}"
            raise BagError(f"topic {topic!r}: first message ({what}) cannot be decoded: {e}") from e
        return int(rgb.shape[0]), int(rgb.shape[1])
    raise BagError(f"topic {topic!r} has no messages")


def gt_to_array(msg: Any) -> np.ndarray:
    """A ground-truth mono8 Image (class ids, 255 = ignore) -> HxW uint8."""
    from .rosio import msg_to_array

    if str(msg.encoding) not in GT_ENCODINGS:
        raise BagError(f"ground-truth encoding {msg.encoding!r} not supported; expected one of {list(GT_ENCODINGS)}")
    return msg_to_array(msg)


def custom_data(path: Path) -> dict[str, str]:
    """``custom_data`` of a bag folder's metadata.yaml (empty for bare files and old bags)."""
    if not (Path(path) / "metadata.yaml").is_file():
        return {}
    custom = bag_information(Path(path)).get("custom_data") or {}
    if not isinstance(custom, dict):
        raise BagError(f"{Path(path) / 'metadata.yaml'}: custom_data is not a mapping")
    return {str(k): str(v) for k, v in custom.items()}


# --- message builders (rosbags types) ---------------------------------------------------------
def make_header(stamp: Stamp, frame_id: str) -> Any:
    ts = typestore()
    Time = ts.types["builtin_interfaces/msg/Time"]
    Header = ts.types["std_msgs/msg/Header"]
    return Header(stamp=Time(sec=int(stamp[0]), nanosec=int(stamp[1])), frame_id=frame_id)


def image_message(arr: np.ndarray, encoding: str, stamp: Stamp, frame_id: str) -> Any:
    """numpy (rgb8 / bgr8 HxWx3, mono8 HxW, mono16 HxW) -> a rosbags sensor_msgs/Image."""
    f = array_to_fields(arr, encoding)
    Image = typestore().types[IMAGE_TYPE]
    return Image(
        header=make_header(stamp, frame_id),
        height=f.height,
        width=f.width,
        encoding=f.encoding,
        is_bigendian=0,
        step=f.step,
        data=np.frombuffer(f.data, np.uint8),
    )


def compressed_message(rgb: np.ndarray, stamp: Stamp, frame_id: str, quality: int = 90) -> Any:
    """RGB -> a JPEG sensor_msgs/CompressedImage, format string as image_transport writes it."""
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise BagError("JPEG encoding failed")
    Compressed = typestore().types[COMPRESSED_TYPE]
    return Compressed(
        header=make_header(stamp, frame_id),
        format="rgb8; jpeg compressed bgr8",
        data=np.asarray(buf, np.uint8).reshape(-1),
    )


def camera_info_message(height: int, width: int, stamp: Stamp, frame_id: str, camera: Any = None) -> Any:
    """CameraInfo of ``camera`` (a :class:`~seg_perception.geometry.CameraModel`), or without one a
    pinhole guess (``geometry.default_camera``: principal point at the centre, square pixels, 69
    degrees wide, no distortion): what rendered frames use, and near enough for photos."""
    from ..geometry import default_camera

    cam = camera or default_camera(width, height)
    ts = typestore()
    Info = ts.types[CAMERA_INFO_TYPE]
    Roi = ts.types["sensor_msgs/msg/RegionOfInterest"]
    k = cam.k().reshape(-1)
    p = np.array([cam.fx, 0, cam.cx, 0, 0, cam.fy, cam.cy, 0, 0, 0, 1, 0], np.float64)
    return Info(
        header=make_header(stamp, frame_id),
        height=int(height),
        width=int(width),
        distortion_model="plumb_bob",
        d=np.zeros(5, np.float64),
        k=k,
        r=np.eye(3, dtype=np.float64).reshape(-1),
        p=p,
        binning_x=0,
        binning_y=0,
        roi=Roi(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


def string_message(text: str) -> Any:
    return typestore().types[STRING_TYPE](data=text)


# --- writing ------------------------------------------------------------------------------
def prepare_output(path: Path, overwrite: bool) -> Path:
    """Refuse to clobber anything but an old bag, and only when asked."""
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise BagError(f"output {path} exists; choose another path or pass --overwrite")
        if not (path.is_dir() and (path / "metadata.yaml").is_file()):
            raise BagError(f"output {path} exists and is not a rosbag2 folder; not removing it")
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def remove_partial(path: Path) -> None:
    """Remove a bag folder this process started but could not finish (no metadata.yaml yet)."""
    path = Path(path)
    if (
        path.is_dir()
        and not (path / "metadata.yaml").exists()
        and all(p.suffix in (".mcap", ".db3", ".db3-journal", ".db3-shm", ".db3-wal") for p in path.iterdir())
    ):
        shutil.rmtree(path)


class BagWriter:
    """A rosbag2 writer that adds a connection the first time a topic is written.

    ``write`` takes a rosbags message (serialised here) or CDR bytes (e.g. from
    ``rclpy.serialization.serialize_message``), so recorded rclpy outputs go in unchanged.
    """

    VERSION = 9  # the rosbag2 format of Jazzy and Kilted

    def __init__(self, path: Path, storage: str = "mcap", custom: Mapping[str, str] | None = None):
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGES:
            raise BagError(f"storage {storage!r} is not one of {list(STORAGES)}")
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self.path = Path(path)
        self.storage = storage
        self._writer = Writer(self.path, version=self.VERSION, storage_plugin=plugin)
        for k, v in (custom or {}).items():
            self._writer.set_custom_data(k, str(v))
        self._conns: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> BagWriter:
        self._writer.open()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._writer.__exit__(exc_type, exc, tb)

    def write(self, topic: str, msgtype: str, t_ns: int, msg: Any) -> None:
        conn = self._conns.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=typestore())
            self._conns[topic] = conn
            self.counts[topic] = 0
        raw = msg if isinstance(msg, (bytes, bytearray, memoryview)) else typestore().serialize_cdr(msg, msgtype)
        self._writer.write(conn, int(t_ns), raw)
        self.counts[topic] += 1


def read_topic(path: Path, topic: str) -> Iterator[tuple[int, Any]]:
    """``(log time ns, deserialised message)`` of one topic in log-time order (for tests and reports)."""
    reader = open_reader(path)
    try:
        topics = topics_of(reader)
        if topic not in topics:
            raise BagError(f"topic {topic!r} is not in {path}; its topics:\n{describe_topics(topics)}")
        msgtype = topics[topic].msgtype
        for _, t_ns, raw in reader.messages(connections=connections_for(reader, [topic])):
            yield int(t_ns), deserialize(raw, msgtype)
    finally:
        reader.close()


def stamps_of(path: Path, topic: str) -> Sequence[Stamp]:
    return [stamp_of(m) for _, m in read_topic(path, topic)]
