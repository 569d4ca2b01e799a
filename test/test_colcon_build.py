"""`colcon build` of the package (issue: package): console scripts land in lib/seg_perception
for `ros2 run`, launch/config/models in share/seg_perception, and the installed code finds
the installed models."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
SCRIPTS = [
    "seg-node",
    "seg_node",
    "seg-demo",
    "seg-bench",
    "seg-eval",
    "seg-soak",
    "seg-make-bag",
    "seg-replay",
    "seg-geom-eval",
]


def _tracked_files() -> list:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return [f for f in out.stdout.splitlines() if (ROOT / f).is_file()]


def test_colcon_build_installs_scripts_share_and_models(tmp_path):
    colcon = shutil.which("colcon") or str(Path(sys.executable).with_name("colcon"))
    if not Path(colcon).is_file():
        pytest.skip("colcon is not installed (requirements-test.txt)")
    src = tmp_path / "ws" / "src" / "seg_perception"
    for f in _tracked_files():
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, src / f)
    r = subprocess.run(
        [colcon, "build", "--packages-select", "seg_perception"],
        cwd=tmp_path / "ws",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    prefix = tmp_path / "ws" / "install" / "seg_perception"
    for s in SCRIPTS:
        assert (prefix / "lib" / "seg_perception" / s).is_file(), s
    share = prefix / "share" / "seg_perception"
    for f in [
        "package.xml",
        "launch/seg.launch.py",
        "config/classes.yaml",
        "config/params.yaml",
        "config/fastdds_shm.xml",
        "config/seg.rviz",
        "models/manifest.json",
    ]:
        assert (share / f).is_file(), f
    site = next(prefix.glob("lib/python3*/site-packages"))
    code = (
        "from seg_perception.manifest import Manifest, default_models_dir; import seg_perception; "
        "m = Manifest.load(); print(seg_perception.__file__); print(default_models_dir()); "
        "[m.get(n).verify_file(m.path_of(m.get(n))) for n in m.entries]; print(sorted(m.entries))"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    mod, models, entries = r.stdout.splitlines()
    assert mod.startswith(str(site)) and Path(models) == share / "models", r.stdout
    assert "tflite_int8" in entries
