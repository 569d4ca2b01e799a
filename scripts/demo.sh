#!/usr/bin/env bash
# Sets up .venv and runs the node on the default backend (tflite_int8) over real DDS with frames
# the project renders itself; prints throughput/latency and writes overlay PNGs to out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
. .venv/bin/activate
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST RMW_IMPLEMENTATION=rmw_fastrtps_cpp
export FASTDDS_DEFAULT_PROFILES_FILE="$PWD/config/fastdds_shm.xml"
exec python -m seg_perception.tools.demo "$@"
