"""Launch arguments -> node name, parameters, remappings and environment, as plain data.

``launch/seg.launch.py`` only forwards to :func:`node_settings` and :func:`fastdds_profile_to_set`,
so the mapping is tested in plain Python (the ``launch`` packages exist only in a ROS distro).

A launch argument left at its default ('') sets nothing: the parameters file decides. Only a
value given on the command line (``backend:=espnet``) overrides the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

LAUNCH_ARGUMENTS: dict[str, tuple[str, str]] = {
    # name: (default, description)
    "backend": ("", "inference backend; '' = the params file's (tflite_int8 in config/params.yaml)"),
    "image_topic": ("/camera/image_raw", "camera topic (compressed frames are read from <image_topic>/compressed)"),
    "params_file": ("", "parameter YAML replacing config/params.yaml ('' = package default)"),
    "namespace": ("", "namespace of the node and its outputs"),
    "node_name": ("seg_perception", "name of the node"),
    "use_compressed": (
        "",
        "true: sensor_msgs/CompressedImage on <image_topic>/compressed; false: raw Image; "
        "'' = the params file's transport",
    ),
    "use_sim_time": ("", "true: follow /clock (bag replay with --clock); '' = the params file's (false)"),
    "autostart": ("", "false: wait for lifecycle configure/activate; '' = the params file's (true)"),
    "log_level": ("info", "log level: debug, info, warn, error or fatal"),
    "use_depth": (
        "",
        "true: also read depth + camera info and publish 3D boxes per object; '' = the params file's (false)",
    ),
    "depth_topic": (
        "/camera/depth",
        "depth image registered to the colour image (16UC1 mm or 32FC1 m), read with use_depth",
    ),
    "camera_info_topic": ("/camera/camera_info", "the colour camera's CameraInfo, read with use_depth"),
}

LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
FASTDDS_PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"


def _flag(args: Mapping[str, str], name: str) -> bool | None:
    """True/False for an explicit value, None for '' (left to the params file)."""
    text = args[name].strip().lower()
    if not text:
        return None
    if text not in _TRUE + _FALSE:
        raise ValueError(f"{name}={args[name]!r}: use true or false")
    return text in _TRUE


def node_settings(args: Mapping[str, str], default_params_file: str) -> dict[str, object]:
    """``{"name", "namespace", "parameters", "remappings", "ros_arguments"}`` for the seg_perception node."""
    unknown = sorted(set(args) - set(LAUNCH_ARGUMENTS))
    if unknown:
        raise ValueError(f"unknown launch argument(s) {unknown}; valid: {sorted(LAUNCH_ARGUMENTS)}")
    a = {k: str(args.get(k, d)) for k, (d, _) in LAUNCH_ARGUMENTS.items()}
    overrides: dict[str, object] = {}
    if a["backend"].strip():
        overrides["backend"] = a["backend"].strip()
    compressed = _flag(a, "use_compressed")
    if compressed is not None:
        overrides["transport"] = "compressed" if compressed else "raw"
    for name in ("use_sim_time", "autostart", "use_depth"):
        value = _flag(a, name)
        if value is not None:
            overrides[name] = value
    level = a["log_level"].strip().lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"log_level={a['log_level']!r} is not one of {list(LOG_LEVELS)}")
    if not a["node_name"].strip():
        raise ValueError("node_name must not be empty")
    topic = a["image_topic"].rstrip("/")
    # Both remappings: the node subscribes to one of them, whichever transport the parameters choose.
    remappings: list[tuple[str, str]] = [("image", topic), ("image/compressed", topic + "/compressed")]
    # Depth remappings always: whether the node reads them is use_depth's (the argument or the file).
    for node_topic, arg in (("depth", "depth_topic"), ("camera_info", "camera_info_topic")):
        remapped = a[arg].strip().rstrip("/")
        if not remapped:
            raise ValueError(f"{arg} must not be empty (default {LAUNCH_ARGUMENTS[arg][0]})")
        remappings.append((node_topic, remapped))
    parameters: list[object] = [a["params_file"] or default_params_file]
    if overrides:
        parameters.append(overrides)
    return {
        "name": a["node_name"].strip(),
        "namespace": a["namespace"],
        "parameters": parameters,
        "remappings": remappings,
        "ros_arguments": ["--log-level", level],
    }


def fastdds_profile_to_set(environ: Mapping[str, str], share_dir: str) -> str | None:
    """The shipped Fast DDS profile when the user has not chosen one, else None (theirs is kept).

    Why: with Fast DDS's default transports a 640x480 frame on best-effort QoS is split into UDP
    fragments and most frames are lost; the profile carries each frame whole through shared memory.
    """
    if environ.get(FASTDDS_PROFILE_VARIABLE, "").strip():
        return None
    return os.path.join(share_dir, "config", "fastdds_shm.xml")
