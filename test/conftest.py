"""Shared fixtures. The repository root is importable (seg_perception, training)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# DDS tests stay on this machine and carry camera frames through shared memory.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(ROOT / "config" / "fastdds_shm.xml"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def atwork_root() -> Path:
    root = SHARED / "datasets" / "atwork"
    if not (root / "objects").is_dir():
        pytest.skip("../shared/datasets/atwork is not present")
    return root


@pytest.fixture(scope="session")
def peer_tflite() -> Path:
    p = SHARED / "peers" / "deeplabv3_257_mv_gpu.tflite"
    if not p.is_file():
        pytest.skip("../shared/peers/deeplabv3_257_mv_gpu.tflite is not present")
    return p


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory) -> str:
    """Path of the hand-built ONNX nearest-palette model (known answers), 240x320 input."""
    from colour_model import make_colour_model

    d = tmp_path_factory.mktemp("model")
    make_colour_model(d, hw=(240, 320))
    return str(d / "colour.onnx")


@pytest.fixture(scope="session")
def fake_atwork(tmp_path_factory) -> Path:
    """A miniature atWork folder made once per session (3 classes x 5 photos of 64x80, see
    ``test/fake_atwork.py``). Shared: tests read it and never write into it."""
    from fake_atwork import make_fake_atwork

    return make_fake_atwork(tmp_path_factory.mktemp("atwork"))
