#!/usr/bin/env bash
# Runs the whole test suite (unit, training, real-DDS integration; slow tests included).
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not slow".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
. .venv/bin/activate
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
export FASTDDS_DEFAULT_PROFILES_FILE="$PWD/config/fastdds_shm.xml"
# Each run gets its own DDS domain so parallel runs on one machine do not see each other.
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 100 ))}
exec python -m pytest -q -ra "$@"
