#!/usr/bin/env bash
# Creates .venv (Python >= 3.10) with the node's runtime, the ROS 2 kilted wheels from PyPI,
# training/export tools and test tools. Idempotent: a second run only checks.
# On a machine with a ROS distro, use rosdep + colcon instead (README).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.seg_perception_deps
want=$(cat requirements-runtime.txt training/requirements.txt requirements-test.txt scripts/setup_env.sh setup.py setup.cfg \
  | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
python -m pip install -q --upgrade pip
# CPU torch first (a plain 'torch' would pull a multi-GB CUDA build); pin it for everything after.
cons=$(mktemp); echo "torch==2.13.0" > "$cons"
python -m pip install -q torch==2.13.0
# ROS 2 kilted from PyPI wheels (never mixed with another distro's wheels).
python -m pip install -q -c "$cons" 'ros-kilted-rclpy[fastrtps]' ros-kilted-sensor-msgs ros-kilted-std-msgs \
  ros-kilted-diagnostic-msgs ros-kilted-rcl-interfaces ros-kilted-std-srvs ros-kilted-lifecycle-msgs \
  ros-kilted-geometry-msgs ros-kilted-visualization-msgs
python -m pip install -q -c "$cons" -r requirements-runtime.txt -r training/requirements.txt -r requirements-test.txt
rm -f "$cons"
# The package itself, editable: seg-eval, seg-demo, ... on PATH in .venv (python -m keeps working).
python -m pip install -q --no-deps --no-build-isolation -e .
echo "$want" > "$stamp"
