"""Training loop, config, checkpoints, resume, evaluation CLIs and a 2-process gloo run.

Unit tests use a tiny stand-in net and random tensors; the end-to-end tests use the real
model registry (smallest ESPNet-C) and the real dataset reader on the tests' fake atWork folder
(``fake_atwork``, test/fake_atwork.py), never ../shared.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from training import checkpoint as ckpt_mod
from training.config import (
    ConfigError,
    TrainingConfig,
    build_config,
    load_config,
    parse_override,
    save_config,
    to_plain,
    valid_keys,
)
from training.data.augment import build_train_transform
from training.distributed import DistInfo
from training.loops import evaluate, train_one_epoch
from training.losses import SegmentationLoss
from training.train import build_optimizer, build_scheduler, lr_factor, main, restore_state

REPO = Path(__file__).resolve().parents[2]
H, W = 64, 80
TINY_MODEL = ["--set", "model.name=espnet_c", "--set", "model.kwargs={p: 1, q: 1}"]


# --------------------------------------------------------------------------- helpers


class TinyNet(nn.Module):
    """Stand-in segmentation net: conv-BN-ReLU-conv, with the registry's ``config`` contract."""

    def __init__(self, name: str = "tiny_standin", num_classes: int = 3, width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.Conv2d(width, num_classes, 1)
        )
        self.config = {"name": name, "num_classes": num_classes, "width": width}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def needs_stack() -> None:
    """The end-to-end tests need the model registry and dataset reader (other modules)."""
    pytest.importorskip("training.models")
    pytest.importorskip("training.data.atwork")


def tiny_run_args(root: Path, out: Path, epochs: int = 1) -> list[str]:
    return [
        *TINY_MODEL,
        "--root",
        str(root),
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        "--batch-size",
        "4",
        "--threads",
        "1",
        "--set",
        f"data.height={H}",
        "--set",
        f"data.width={W}",
        "--set",
        "data.num_workers=0",
        "--set",
        "log.progress=false",
        "--set",
        "train.val_batch_size=2",
    ]


def read_log(out: Path) -> list[dict[str, str]]:
    with open(out / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- config


def test_override_parsing() -> None:
    assert parse_override("train.lr=3e-4") == {"train": {"lr": "3e-4"}}  # YAML 1.1; coerced later
    assert parse_override("data.synthetic=[a, b]") == {"data": {"synthetic": ["a", "b"]}}
    assert parse_override("train.amp=true") == {"train": {"amp": True}}
    assert parse_override("init.reference_tflite=") == {"init": {"reference_tflite": None}}
    cfg = build_config(
        None,
        [
            "train.lr=3e-4",
            "train.epochs=3",
            "model.kwargs.width_mult=0.25",
            "data.synthetic=[x/y]",
            "train.optimizer=sgd",
        ],
    )
    assert cfg.train.lr == pytest.approx(3e-4) and isinstance(cfg.train.lr, float)
    assert cfg.train.epochs == 3 and cfg.model.kwargs == {"width_mult": 0.25}
    assert cfg.data.synthetic == ["x/y"] and cfg.train.optimizer == "sgd"
    with pytest.raises(ConfigError, match="form key.sub=value"):
        parse_override("train.lr")


def test_unknown_and_invalid_keys() -> None:
    with pytest.raises(ConfigError) as e:
        build_config(None, ["train.lrr=1"])
    assert "train.lrr" in str(e.value) and "train.lr," in str(e.value) and "train.epochs" in str(e.value)
    with pytest.raises(ConfigError, match="valid keys here: data, distill, init, log, model, train"):
        build_config({"trian": {"lr": 1}})
    with pytest.raises(ConfigError, match="not in"):
        build_config(None, ["train.optimizer=rmsprop"])
    with pytest.raises(ConfigError, match="integer"):
        build_config(None, ["train.epochs=2.5"])
    with pytest.raises(ConfigError, match="> 0"):
        build_config(None, ["train.batch_size=0"])
    with pytest.raises(ConfigError, match="section"):
        build_config(None, ["train=3"])
    assert "model.kwargs" in valid_keys() and "train.lr" in valid_keys()


def test_config_is_typed_and_frozen() -> None:
    cfg = build_config(None, ["train.lr=1e-3", "train.warmup_iters=5.0"])
    assert isinstance(cfg, TrainingConfig) and cfg.train.warmup_iters == 5 and isinstance(cfg.train.warmup_iters, int)
    with pytest.raises(AttributeError):
        cfg.train.lr = 1.0  # what was validated (and saved) is what runs
    changed = cfg.updated({"data": {"variant": "binary"}})
    assert changed.data.variant == "binary" and cfg.data.variant == "full"
    with pytest.raises(ConfigError, match="not in"):
        cfg.updated({"data": {"variant": "nope"}})


def test_free_form_sections_merge_across_layers() -> None:
    """model.kwargs / data.augment take any keys and merge key by key: a stored config's kwargs survive
    a file or --set that changes one of them."""
    stored = {"model": {"kwargs": {"p": 1, "r": 3}}}
    cfg = build_config({"model": {"kwargs": {"p": 2}}}, ["model.kwargs.q=8"], base=stored)
    assert cfg.model.kwargs == {"p": 2, "q": 8, "r": 3}
    with pytest.raises(ConfigError, match="data.augment must be a mapping"):
        build_config(None, ["data.augment=3"])


def test_plain_form_round_trips(tmp_path: Path) -> None:
    cfg = build_config(None, ["data.synthetic=[a, b]", "model.kwargs={p: 1}", "init.checkpoint=x.pt"])
    plain = to_plain(cfg)
    assert plain["data"]["synthetic"] == ["a", "b"] and plain["init"]["checkpoint"] == "x.pt"
    assert list(plain) == ["model", "data", "train", "init", "distill", "log"]
    assert TrainingConfig.from_dict(plain) == cfg
    assert load_config(save_config(cfg, tmp_path)) == cfg  # config.yaml reproduces the run's config


def test_old_key_names_are_read_with_a_deprecation_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """init.peer_tflite (configs, --set, checkpoints written before the rename) is read as init.reference_tflite."""
    old_file = tmp_path / "old.yaml"
    old_file.write_text("init:\n  peer_tflite: ref.tflite\n", encoding="utf-8")
    with caplog.at_level("WARNING", logger="training.config"):
        assert load_config(old_file).init.reference_tflite == "ref.tflite"
    assert "init.peer_tflite is deprecated" in caplog.text
    assert build_config(None, ["init.peer_tflite=a.tflite"]).init.reference_tflite == "a.tflite"
    assert TrainingConfig.from_dict({"init": {"peer_tflite": None}}).init.reference_tflite is None
    stored = to_plain(build_config(base={"init": {"peer_tflite": "b.tflite"}}))
    assert stored["init"] == {"reference_tflite": "b.tflite", "espnet_weights": None, "checkpoint": None}
    with pytest.raises(ConfigError, match="disagree"):
        build_config({"init": {"peer_tflite": "a", "reference_tflite": "b"}})


@pytest.mark.parametrize("sidecar", sorted((REPO / "models").glob("*.config.yaml")), ids=lambda p: p.name)
def test_shipped_models_training_configs_load(sidecar: Path) -> None:
    """The training configs stored beside the shipped models (older key names included) still build."""
    import yaml

    stored = yaml.safe_load(sidecar.read_text(encoding="utf-8"))["training"]["config"]
    cfg = TrainingConfig.from_dict(stored)
    assert cfg.model.name == stored["model"]["name"] and cfg.data.height == stored["data"]["height"]


def test_cli_reports_config_errors(tmp_path: Path) -> None:
    assert main(["--set", "train.nope=1", "--out", str(tmp_path)]) == 2


@pytest.mark.parametrize(
    "name",
    [
        "deeplab_mnv2",
        "deeplab_mnv2_finetune",
        "deeplab_mnv2_1_0",
        "deeplab_mnv2_real_ft",
        "fcn8s",
        "espnet",
        "espnet_finetune",
        "deeplab_mnv2_final",
        "deeplab_mnv2_s4_final",
    ],
)
def test_shipped_configs_validate(name: str) -> None:
    cfg = load_config(REPO / "training" / "configs" / f"{name}.yaml")
    assert (cfg.data.height, cfg.data.width) == (256, 320)
    assert cfg.train.loss == "ce+dice" and cfg.train.batch_size == 8
    build_train_transform(256, 320, cfg.data.augment)  # refuses unknown augmentation keys


def test_real_ft_config_keeps_apparent_size() -> None:
    """The real-photo fine-tune keeps zoom near 1 (size separates f20_20/s40_40, m20/m30)."""
    cfg = load_config(REPO / "training" / "configs" / "deeplab_mnv2_real_ft.yaml")
    aug = cfg.data.augment
    assert cfg.data.synthetic == [] and cfg.init.checkpoint
    assert min(aug["crop_scale"]) >= 0.7 and 0.9 <= min(aug["affine_scale"]) <= max(aug["affine_scale"]) <= 1.1


FINAL_CONFIGS = ["deeplab_mnv2_final", "deeplab_mnv2_s4_final"]


@pytest.mark.parametrize(
    "name",
    ["deeplab_mnv2", "deeplab_mnv2_finetune", "deeplab_mnv2_1_0", "fcn8s", "espnet", "espnet_finetune"] + FINAL_CONFIGS,
)
def test_shipped_recipes_validate_by_run_and_keep_apparent_size(name: str) -> None:
    """The shipped recipes select on held-out capture runs and never zoom (size is a class cue); only the
    final stages (``*_final``, each the twin of a held-out run of the same recipe) train on the val photos."""
    cfg = load_config(REPO / "training" / "configs" / f"{name}.yaml")
    aug = cfg.data.augment
    assert cfg.data.split == "run"
    assert min(aug["crop_scale"]) >= 0.9 and tuple(aug["affine_scale"]) == (1.0, 1.0)
    assert cfg.data.train_on_val == (name in FINAL_CONFIGS)


def test_benchmark_times_training_steps_without_data(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``--benchmark N`` runs N optimisation steps on a random batch (no dataset root) and prints JSON."""
    needs_stack()
    argv = [
        *TINY_MODEL,
        "--benchmark",
        "2",
        "--batch-size",
        "2",
        "--threads",
        "1",
        "--out",
        str(tmp_path / "b"),
        "--root",
        str(tmp_path / "no_dataset"),
        "--set",
        f"data.height={H}",
        "--set",
        f"data.width={W}",
    ]
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["iters"] == 2 and res["batch_size"] == 2 and res["images_per_s"] > 0
    assert (res["model"], res["height"], res["width"]) == ("espnet_c", H, W)


def test_lr_schedules() -> None:
    assert lr_factor(0, 100, "poly") == 1.0 and lr_factor(100, 100, "poly") == 0.0
    assert lr_factor(50, 100, "poly", 0.9) == pytest.approx(0.5**0.9)
    assert lr_factor(50, 100, "cosine") == pytest.approx(0.5)
    assert lr_factor(4, 100, "poly", warmup=10) == pytest.approx(0.5)
    assert lr_factor(100, 100, "cosine", min_ratio=0.1) == pytest.approx(0.1)
    assert lr_factor(77, 100, "none") == 1.0


# --------------------------------------------------------------------------- loop on a stand-in


def _fixed_batch(n: int = 4, c: int = 3):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 16, 20, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()  # learnable from the pixel itself
    y[:, :2] = 255
    return x, y.clamp_max(c - 1)


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_training_steps_reduce_loss(optimizer: str) -> None:
    torch.manual_seed(0)
    x, y = _fixed_batch()
    model = TinyNet()
    cfg = build_config(
        None,
        [
            f"train.optimizer={optimizer}",
            "train.lr=0.2" if optimizer == "sgd" else "train.lr=0.01",
            "train.epochs=1",
            "train.scheduler=none",
        ],
    )
    loss_fn = SegmentationLoss("ce+dice", 3)
    opt = build_optimizer(cfg, model)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    info = DistInfo()
    before, _ = evaluate(model, loader, loss_fn, 3, info)
    model.train()
    for _ in range(30):
        stats = train_one_epoch(model, loader, loss_fn, opt, None, info)
    after, cm = evaluate(model, loader, loss_fn, 3, info)
    assert after < before * 0.7, (before, after)
    assert stats["images"] == 4 and stats["images_per_s"] > 0
    assert cm.sum() == (y != 255).sum()


def test_scheduler_and_max_iters() -> None:
    model = TinyNet()
    cfg = build_config(None, ["train.epochs=2", "train.scheduler=poly"])
    opt = build_optimizer(cfg, model)
    sched = build_scheduler(cfg, opt, iters_per_epoch=3)
    x, y = _fixed_batch(8)
    loader = DataLoader(TensorDataset(x, y), batch_size=2)  # 4 batches
    stats = train_one_epoch(model, loader, SegmentationLoss("ce", 3), opt, sched, DistInfo(), max_iters=3)
    assert stats["images"] == 6
    assert opt.param_groups[0]["lr"] == pytest.approx(cfg.train.lr * 0.5**0.9)
    # no weight decay on biases / BN
    assert opt.param_groups[1]["weight_decay"] == 0.0 and all(p.ndim == 1 for p in opt.param_groups[1]["params"])


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_weights_only(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyNet(width=6)
    cfg = build_config(None, ["train.epochs=4"])
    opt = build_optimizer(cfg, model)
    sched = build_scheduler(cfg, opt, 2)
    x, y = _fixed_batch()
    train_one_epoch(
        model, DataLoader(TensorDataset(x, y), batch_size=2), SegmentationLoss("ce+dice", 3), opt, sched, DistInfo()
    )
    extra = {
        "class_weights": np.array([1.0, 2.0, 0.5], dtype=np.float32),
        "score": np.float64(0.5),
        "log": [{"epoch": 1, "miou": 0.25}],
        "path": tmp_path,
    }
    ck = ckpt_mod.build_checkpoint(
        model,
        opt,
        sched,
        epoch=3,
        best_metric=np.float32(0.4),
        best_epoch=2,
        train_config=cfg,
        class_names=["a", "b", "c"],
        extra=extra,
    )
    path = ckpt_mod.save_checkpoint(tmp_path / "ck" / "last.pt", ck)
    assert (tmp_path / "ck" / "config.yaml").is_file()

    raw = torch.load(path, map_location="cpu", weights_only=True)  # no pickle code execution
    assert raw["epoch"] == 3 and raw["best_metric"] == pytest.approx(0.4) and raw["model_config"]["width"] == 6
    assert isinstance(raw["extra"]["score"], float) and raw["train_config"]["train"]["epochs"] == 4

    loaded = ckpt_mod.load_model(path, factory=lambda **kw: TinyNet(**kw))
    model.eval()
    probe = torch.randn(2, 3, 16, 20)
    with torch.no_grad():
        torch.testing.assert_close(loaded(probe), model(probe), rtol=0, atol=0)

    opt2 = build_optimizer(cfg, loaded)
    sched2 = build_scheduler(cfg, opt2, 2)
    assert restore_state(raw, opt2, sched2) == (3, pytest.approx(0.4), 2, [{"epoch": 1, "miou": 0.25}])
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])
    sched.step()
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])


def test_checkpoint_refuses_unsafe_objects(tmp_path: Path) -> None:
    class Foo:
        pass

    with pytest.raises(TypeError):
        ckpt_mod.save_checkpoint(tmp_path / "x.pt", {"state_dict": {}, "model_config": {}, "extra": Foo()})


def test_registry_model_round_trip(tmp_path: Path) -> None:
    needs_stack()
    from training.models import create_model

    model = create_model("espnet_c", 19, p=1, q=1).eval()
    path = ckpt_mod.save_checkpoint(tmp_path / "m.pt", ckpt_mod.build_checkpoint(model))
    loaded = ckpt_mod.load_model(path)
    probe = torch.randn(1, 3, 32, 40)
    with torch.no_grad():
        torch.testing.assert_close(loaded(probe), model(probe), rtol=0, atol=0)


# --------------------------------------------------------------------------- end to end (real registry + reader)


@pytest.fixture(scope="module")
def tiny_run(fake_atwork: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of the smallest ESPNet-C on the fake photos: the run the CLI tests below read."""
    needs_stack()
    out = tmp_path_factory.mktemp("tiny_run") / "run"
    assert main(tiny_run_args(fake_atwork, out, epochs=1)) == 0
    return out


def test_training_learns_a_learnable_task(fake_atwork: Path, tmp_path: Path) -> None:
    """Solid rectangles in their class colours, 8 short epochs (a few seconds, one thread): the loss
    falls and the validation mIoU rises. A loop that does not learn (wrong labels, frozen weights,
    a broken loss or metric) fails here."""
    needs_stack()
    out = tmp_path / "learn"
    assert main(tiny_run_args(fake_atwork, out, epochs=8) + ["--set", "train.lr=1e-2", "--set", "log.plots=false"]) == 0
    rows = read_log(out)
    first, last = rows[0], rows[-1]
    assert float(last["train_loss"]) < float(first["train_loss"]) / 2, rows
    assert float(last["val_loss"]) < float(first["val_loss"]) / 2, rows
    assert float(last["miou"]) > max(0.3, float(first["miou"]) + 0.2), rows


def test_a_run_writes_its_artifacts_and_command(fake_atwork: Path, tiny_run: Path) -> None:
    for name in ("config.yaml", "log.csv", "last.pt", "best.pt", "loss.png", "miou.png"):
        assert (tiny_run / name).is_file(), name
    rows = read_log(tiny_run)
    assert len(rows) == 1 and rows[0]["epoch"] == "1"
    first = ckpt_mod.load_checkpoint(tiny_run / "last.pt")
    assert first["epoch"] == 1
    # the command that made the weights travels with them (export copies it into the manifest)
    assert first["extra"]["command"] == "python -m training.train " + shlex.join(
        tiny_run_args(fake_atwork, tiny_run, epochs=1)
    )


def test_resume_continues_the_run(tiny_run: Path, tmp_path: Path) -> None:
    """Continues at epoch 2 from the saved weights/optimiser; the LR keeps decaying."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert main(["--resume", str(run / "last.pt"), "--epochs", "2"]) == 0
    rows = read_log(run)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    # the poly schedule is stretched over the new total of 2 epochs: half-way at the resume
    assert float(rows[1]["lr"]) == pytest.approx(float(rows[0]["lr"]) * 0.5**0.9, rel=1e-4)
    second = ckpt_mod.load_checkpoint(run / "last.pt")
    assert second["epoch"] == 2 and second["train_config"]["train"]["epochs"] == 2
    assert second["optimizer"]["state"], "optimiser state restored and stepped"


def test_resume_reads_a_checkpoint_of_the_old_config_layout(tiny_run: Path, tmp_path: Path) -> None:
    """Checkpoints written before the typed config (init.peer_tflite; no distill section, run split or
    espnet_weights keys) resume; the continued run stores the current layout."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    old = ckpt_mod.load_checkpoint(run / "last.pt")
    stored = old["train_config"]
    stored.pop("distill")
    for key in ("split", "folds", "val_fold"):
        stored["data"].pop(key)
    stored["init"] = {"peer_tflite": None, "checkpoint": None}
    ckpt_mod.save_checkpoint(run / "last.pt", old, write_config=False)
    assert main(["--resume", str(run / "last.pt"), "--epochs", "2"]) == 0
    assert [r["epoch"] for r in read_log(run)] == ["1", "2"]
    resumed = ckpt_mod.load_checkpoint(run / "last.pt")["train_config"]
    assert resumed["init"] == {"reference_tflite": None, "espnet_weights": None, "checkpoint": None}
    assert resumed["distill"]["teacher"] is None and resumed["data"]["split"] == "run"


def test_evaluate_cli_writes_metrics_and_plots(fake_atwork: Path, tiny_run: Path, tmp_path: Path) -> None:
    from training import evaluate as ev

    eval_dir = tmp_path / "eval"
    assert (
        ev.main(
            [
                "--checkpoint",
                str(tiny_run / "best.pt"),
                "--root",
                str(fake_atwork),
                "--out",
                str(eval_dir),
                "--latency-runs",
                "3",
                "--num-samples",
                "2",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    m = json.loads((eval_dir / "metrics.json").read_text())
    assert m["num_pixels"] == 3 * H * W  # the 3 val photos at the run's input size
    assert m["miou"] == pytest.approx(float(read_log(tiny_run)[0]["miou"]), abs=1e-4)  # what the run validated
    assert m["model"]["parameters"] > 0 and m["model"]["macs"] > 0 and m["latency_ms"]["median"] > 0
    for name in ("iou_vs_share.png", "samples.png", "config.yaml"):
        assert (eval_dir / name).is_file(), name


def test_features_cli_writes_one_grid_per_layer(fake_atwork: Path, tiny_run: Path, tmp_path: Path) -> None:
    from training import features as ft

    img = next((fake_atwork / "objects" / "image" / "axis").glob("*.jpg"))
    feat_dir = tmp_path / "feat"
    layers = ft.list_layers(ckpt_mod.load_model(tiny_run / "best.pt"))
    assert layers
    assert (
        ft.main(
            [
                "--checkpoint",
                str(tiny_run / "best.pt"),
                "--image",
                str(img),
                "--layers",
                ",".join(layers[:2]),
                "--out",
                str(feat_dir),
                "--top-k",
                "4",
            ]
        )
        == 0
    )
    assert len(list(feat_dir.glob("*.png"))) == 2


@pytest.mark.slow
def test_two_process_gloo_run(fake_atwork: Path, tmp_path: Path) -> None:
    needs_stack()
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "training.train",
        *tiny_run_args(fake_atwork, out, epochs=1),
        "--device",
        "cpu",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = read_log(out)
    assert len(rows) == 1
    ck = ckpt_mod.load_checkpoint(out / "last.pt")
    # the all-reduced confusion matrix counts every val pixel exactly once (3 val photos)
    assert ck["extra"]["val_metrics"]["num_pixels"] == 3 * H * W
    assert not any(k.startswith("module.") for k in ck["state_dict"])
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".pt") == ["best.pt", "last.pt"]


def test_frozen_modules_keep_weights_and_batch_norm_statistics() -> None:
    """train.freeze: no gradient reaches the named modules and their batch norms keep their running
    statistics through a training epoch, while the rest of the model learns."""
    from torch.utils.data import DataLoader, TensorDataset

    from training.distributed import DistInfo
    from training.loops import train_one_epoch
    from training.models import create_model
    from training.train import freeze_modules

    torch.manual_seed(0)
    model = create_model("deeplabv3plus_mobilenetv2", 3, width_mult=0.5)
    frozen = freeze_modules(model, ["encoder.stem", "encoder.blocks.0"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = TensorDataset(torch.randn(4, 3, 32, 40), torch.randint(0, 3, (4, 32, 40)))
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss = torch.nn.CrossEntropyLoss()
    train_one_epoch(model, DataLoader(data, batch_size=2), loss, opt, None, DistInfo(), frozen=frozen)
    after = model.state_dict()
    for k in before:
        if k.startswith(("encoder.stem.", "encoder.blocks.0.")):
            assert torch.equal(before[k], after[k]), k  # weights and running statistics
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])
    assert not torch.equal(
        before["encoder.blocks.1.project.bn.running_mean"], after["encoder.blocks.1.project.bn.running_mean"]
    )
    with pytest.raises(ValueError, match="no module 'encoder.nope'"):
        freeze_modules(model, ["encoder.nope"])


def test_train_on_val_adds_the_held_out_photos_to_training_only(fake_atwork: Path) -> None:
    needs_stack()
    from training.train import build_datasets

    common = [f"data.root={fake_atwork}", "data.height=32", "data.width=40", "data.num_workers=0"]
    split_train, split_val = build_datasets(build_config(None, common))
    final_train, final_val = build_datasets(build_config(None, [*common, "data.train_on_val=true"]))
    assert len(split_val) > 0 and len(final_val) == len(split_val)  # validation still runs (as memory)
    assert len(final_train) == len(split_train) + len(split_val)
    assert not build_config(None, common).data.train_on_val  # the default holds the runs out


def test_checkpoint_info_marks_a_model_trained_on_its_validation_photos() -> None:
    """The manifest's split record says when val numbers are memory (data.train_on_val)."""
    model = TinyNet(num_classes=19)
    held_out = {"config": {"data": {"split": "run", "folds": 5, "val_fold": -1}}}
    final = {"config": {"data": {"split": "run", "folds": 5, "val_fold": -1, "train_on_val": True}}}
    assert ckpt_mod.checkpoint_info(held_out, model)["split"] == {"kind": "run", "folds": 5, "val_fold": 4}
    assert ckpt_mod.checkpoint_info(final, model)["split"] == {
        "kind": "run",
        "folds": 5,
        "val_fold": 4,
        "train_on_val": True,
    }


def test_checkpoint_info_of_a_pruned_model_says_how_it_was_recovered_and_from_which_shipped_file() -> None:
    """A recovered pruned checkpoint's export provenance carries its recovery summary (not the
    per-epoch log) and, when the chain started from an imported ONNX file, that file's record."""
    model = TinyNet(num_classes=19)
    doc = {
        "format": ckpt_mod.PRUNED_FORMAT,
        "prune_step": {"step": 5},
        "source_checkpoint": "runs/start.pt",
        "recovery": {"epochs": 30, "miou": 0.36, "best_epoch": 28, "log": [{"epoch": 1}]},
        "source_imported_from_onnx": {"file": "models/x.onnx", "sha256": "ab" * 32},
    }
    info = ckpt_mod.checkpoint_info(doc, model)
    assert info["recovery"] == {"epochs": 30, "miou": 0.36, "best_epoch": 28}
    assert info["source_imported_from_onnx"]["sha256"] == "ab" * 32
    plain = ckpt_mod.checkpoint_info({"format": ckpt_mod.PRUNED_FORMAT}, model)
    assert "recovery" not in plain and "source_imported_from_onnx" not in plain
