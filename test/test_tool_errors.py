"""Command-line tools fail with one clear line and exit code 2, never a traceback."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("content", [None, "data: [1,\n", "- a list\n"])
def test_training_with_a_missing_or_broken_config_is_one_line_and_exit_2(tmp_path, repo_root, content):
    cfg = tmp_path / "cfg.yaml"
    if content is not None:
        cfg.write_text(content)
    r = subprocess.run(
        [sys.executable, "-m", "training.train", "--config", str(cfg), "--out", str(tmp_path / "o")],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and str(cfg) in r.stderr
    assert len([line for line in r.stderr.splitlines() if line.strip()]) == 1, r.stderr
