"""Launch arguments -> node parameters and remappings, as plain data.

``launch/seg.launch.py`` only forwards to :func:`node_settings`, so the mapping is
tested in plain Python (the ``launch`` packages exist only in a ROS distro).
"""
from __future__ import annotations

from typing import Dict, List, Tuple

LAUNCH_ARGUMENTS: Dict[str, Tuple[str, str]] = {
    # name: (default, description)
    "backend": ("tflite_int8", "inference backend (see config/params.yaml)"),
    "image_topic": ("/camera/image_raw", "camera topic (for compressed: its base name, /compressed is appended)"),
    "params_file": ("", "parameter YAML overriding config/params.yaml ('' = package default)"),
    "namespace": ("", "namespace of the node and its outputs"),
    "use_compressed": ("false", "subscribe to sensor_msgs/CompressedImage on <image_topic>/compressed"),
}

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "")


def node_settings(args: Dict[str, str], default_params_file: str) -> Dict[str, object]:
    """Return ``{"namespace", "parameters", "remappings"}`` for the seg_perception node."""
    unknown = sorted(set(args) - set(LAUNCH_ARGUMENTS))
    if unknown:
        raise ValueError(f"unknown launch argument(s) {unknown}; valid: {sorted(LAUNCH_ARGUMENTS)}")
    a = {k: str(args.get(k, d)) for k, (d, _) in LAUNCH_ARGUMENTS.items()}
    compressed = a["use_compressed"].strip().lower()
    if compressed not in _TRUE + _FALSE:
        raise ValueError(f"use_compressed={a['use_compressed']!r}: use true or false")
    use_compressed = compressed in _TRUE
    topic = a["image_topic"]
    remappings: List[Tuple[str, str]] = (
        [("image/compressed", topic.rstrip("/") + "/compressed")] if use_compressed else [("image", topic)])
    params: List[object] = [a["params_file"] or default_params_file,
                            {"backend": a["backend"], "transport": "compressed" if use_compressed else "raw"}]
    return {"namespace": a["namespace"], "parameters": params, "remappings": remappings}
