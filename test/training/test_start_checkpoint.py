"""training.start_checkpoint: the weights a run starts from, written once and trained from elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training import checkpoint as ckpt_mod
from training.start_checkpoint import halve_floats
from training.start_checkpoint import main as start_main
from training.train import main as train_main

H, W = 64, 80
TINY = [
    "--set", "model.name=espnet_c", "--set", "model.kwargs={p: 1, q: 1}",
    "--set", f"data.height={H}", "--set", f"data.width={W}", "--set", "data.num_workers=0",
    "--set", "log.progress=false", "--set", "train.val_batch_size=2", "--batch-size", "4", "--threads", "1",
]  # fmt: skip


def test_halve_floats_rounds_floats_and_keeps_counters() -> None:
    sd = {"w": torch.tensor([1.0, 1.0 + 2**-12, 2**-24, 1e-9], dtype=torch.float32), "n": torch.tensor(7)}
    half = halve_floats(sd)
    assert half["w"].dtype == torch.float16 and half["n"].dtype == torch.int64
    # float16 resolves 2^-10 at 1, so 1 + 2^-12 rounds to 1; 2^-24 is its smallest subnormal, 1e-9 below it
    assert half["w"].tolist() == [1.0, 1.0, 2**-24, 0.0]
    assert half["n"].item() == 7


@pytest.fixture(scope="module")
def source(fake_atwork: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained tiny checkpoint: the init.checkpoint the start is built from."""
    out = tmp_path_factory.mktemp("src") / "run"
    assert train_main([*TINY, "--root", str(fake_atwork), "--out", str(out), "--epochs", "1"]) == 0
    return out / "last.pt"


@pytest.mark.parametrize("half", [False, True])
def test_the_start_holds_the_weights_the_run_would_start_from(
    fake_atwork: Path, source: Path, tmp_path: Path, half: bool
) -> None:
    start = tmp_path / "start.pt"
    argv = [*TINY, "--root", str(fake_atwork), "--set", f"init.checkpoint={source}", "--out", str(start)]
    assert start_main(argv + (["--half"] if half else [])) == 0
    doc = ckpt_mod.load_checkpoint(start)
    assert doc["extra"]["command"].startswith("python -m training.start_checkpoint --set model.name=espnet_c")
    got = doc["state_dict"]
    want = ckpt_mod.load_checkpoint(source)["state_dict"]
    assert sorted(got) == sorted(want)
    for k, v in want.items():
        expect = v.half() if half and v.is_floating_point() else v
        assert got[k].dtype == expect.dtype and torch.equal(got[k], expect), k
    # a run starts from it (float16 tensors load into the float32 model) and writes its own checkpoint
    run = tmp_path / "run"
    assert train_main([*TINY, "--root", str(fake_atwork), "--out", str(run), "--epochs", "1",
                       "--set", f"init.checkpoint={start}"]) == 0  # fmt: skip
    assert ckpt_mod.load_checkpoint(run / "last.pt")["epoch"] == 1


def test_out_is_required(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        start_main([*TINY])
