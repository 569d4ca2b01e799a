"""What the node says on /diagnostics, as a pure function of plain values (no rclpy).

The node gathers a :class:`Health` snapshot and publishes what :func:`status` returns, so the
rules (which faults are errors, when a stall warns, what an inactive node says) are tested
with known answers and no ROS objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

OK, WARN, ERROR = 0, 1, 2


@dataclass(frozen=True)
class DepthHealth:
    """The depth side of a node with ``use_depth``."""

    problem: str = ""  # why the last frame got no 3D boxes; '' when it got them
    counters: Mapping[str, int] = field(default_factory=dict)  # node_depth.COUNTERS
    geometry_ms: Mapping[int, float] = field(default_factory=dict)  # 50, 95


@dataclass(frozen=True)
class Health:
    lifecycle_state: str  # unconfigured | inactive | active | finalized
    faults: tuple[str, ...] = ()  # each one an ERROR until its cause is gone
    backend: str = ""
    model_file: str = ""
    model_sha256: str = ""
    flip_average: bool | None = None  # what runs (flip_average 'auto' resolved); None: no model loaded
    seconds_since_last_frame: float | None = None  # None: no frame since activation
    stall_timeout_s: float = 2.0
    counters: Mapping[str, int] = field(default_factory=dict)
    input_rate_hz: float = 0.0
    processed_rate_hz: float = 0.0
    inference_ms: Mapping[int, float] = field(default_factory=dict)  # percentile -> ms (50, 95, 99)
    pipeline_ms: Mapping[int, float] = field(default_factory=dict)  # 50, 95
    # the worker's whole work on a frame (decode, pipeline, every publish): with stale frames
    # dropped, an output is at most ~2 of these old, whatever the camera rate
    frame_ms: Mapping[int, float] = field(default_factory=dict)  # 50, 95, 99
    output_age_ms: Mapping[int, float] = field(default_factory=dict)  # 50, 95
    last_output_age_ms: float = float("nan")
    executor_recoveries: int = 0  # rclpy destroy races the spinning thread survived (seg_perception.spin)
    depth: DepthHealth | None = None  # None: use_depth off


def status(h: Health) -> tuple[int, str, dict[str, str]]:
    """``(level, message, key/values)`` of the node's diagnostic status."""
    level, messages = OK, []  # type: int, List[str]
    for fault in h.faults:
        level = ERROR
        messages.append(fault)
    if h.lifecycle_state != "active":
        messages.append(f"{h.lifecycle_state}: not subscribed, no inference")
    elif h.seconds_since_last_frame is None:
        messages.append("waiting for the first frame")
    elif h.seconds_since_last_frame > h.stall_timeout_s:
        level = max(level, WARN)
        messages.append(f"camera stall: no frame for {h.seconds_since_last_frame:.1f} s")
    if h.depth is not None and h.depth.problem:  # the frame keeps its 2D outputs: a warning, not an error
        level = max(level, WARN)
        messages.append(h.depth.problem)
    values = {
        "lifecycle_state": h.lifecycle_state,
        "backend": h.backend,
        "model_file": h.model_file,
        "model_sha256": h.model_sha256,
        "flip_average": "" if h.flip_average is None else ("on" if h.flip_average else "off"),
        "input_rate_hz": f"{h.input_rate_hz:.2f}",
        "processed_rate_hz": f"{h.processed_rate_hz:.2f}",
        **_ms("inference_ms", h.inference_ms, (50, 95, 99)),
        **_ms("pipeline_ms", h.pipeline_ms, (50, 95)),
        **_ms("frame_ms", h.frame_ms, (50, 95, 99)),
        "output_age_ms_last": f"{h.last_output_age_ms:.2f}",
        **_ms("output_age_ms", h.output_age_ms, (50, 95)),
        "seconds_since_last_frame": (
            f"{h.seconds_since_last_frame:.2f}" if h.seconds_since_last_frame is not None else "inf"
        ),
        **{f"frames_{k}": str(v) for k, v in h.counters.items()},
        "executor_recoveries": str(h.executor_recoveries),
    }
    if h.depth is not None:
        values.update({k: str(v) for k, v in h.depth.counters.items()})
        values.update(_ms("geometry_ms", h.depth.geometry_ms, (50, 95)))
    return level, "; ".join(messages) or "ok", values


def _ms(prefix: str, values: Mapping[int, float], keys: tuple[int, ...]) -> dict[str, str]:
    return {f"{prefix}_p{k}": f"{values.get(k, float('nan')):.2f}" for k in keys}
