"""seg-replay: a rosbag2 replayed through the segmentation node over real DDS (or offline), scored.

The package, by job: :mod:`.scoring` (confusion matrix, stamp join, percentiles),
:mod:`..bag_plan` (what to replay, frames in log-time order), :mod:`.node_config` (the node's
parameters), :mod:`.offline` (the pipeline without DDS), :mod:`.live` (publisher, output
drain, pacing), :mod:`.geometry` (depth beside the frames, 3D boxes scored), :mod:`.cli` (summary and command line),
:mod:`.report` (the PNG report).
``python -m seg_perception.tools.replay`` and ``seg-replay`` run :func:`main`.
"""

from ..bag_plan import ReplayPlan, plan_replay
from .cli import build_parser, main, replay, run_checked
from .live import ReplayFailed
from .scoring import accuracy_summary, confusion, miou

__all__ = [
    "ReplayFailed",
    "ReplayPlan",
    "accuracy_summary",
    "build_parser",
    "confusion",
    "main",
    "miou",
    "plan_replay",
    "replay",
    "run_checked",
]
