"""After scripts/setup_env.sh the README's console commands exist in the environment and run."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ["seg-eval", "seg-demo", "seg-bench", "seg-make-bag", "seg-replay", "seg-soak", "seg-geom-eval"]


def _entry_points() -> dict:
    text = (ROOT / "setup.py").read_text()
    return dict(re.findall(r'"([\w-]+) = (seg_perception[\w.]*:main)"', text))


def test_entry_points_are_named_in_one_style_with_the_old_node_name_kept():
    eps = _entry_points()
    assert set(TOOLS) | {"seg-node", "seg_node"} == set(eps)
    assert all("_" not in name for name in eps if name != "seg_node")  # seg_node: the old name, an alias
    assert eps["seg_node"] == eps["seg-node"] == "seg_perception.node:main"


@pytest.mark.parametrize("name", TOOLS)
def test_console_command_runs_from_the_environment(name):
    exe = Path(sys.executable).with_name(name)
    assert exe.is_file(), f"{name} is not installed in {exe.parent}: run bash scripts/setup_env.sh"
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and f"usage: {name}" in r.stdout, r.stdout + r.stderr


def test_replay_module_keeps_working():
    r = subprocess.run(
        [sys.executable, "-m", "seg_perception.tools.replay", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and "usage: seg-replay" in r.stdout, r.stderr
