"""What needs no ROS runs without it: on a machine without rclpy the ROS-free tests still run."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_ros_free_fuzz_tests_run_where_rclpy_cannot_be_imported(tmp_path, repo_root):
    hidden = tmp_path / "no_ros" / "rclpy"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'rclpy'\", name='rclpy')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hidden.parent), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "test/test_fuzz.py"],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "4 passed" in out and "3 skipped" in out, out  # the node's three tests need rclpy
