"""Structured pruning: graph validity, parameter shrink, spec+weights round trip, curve outputs."""

from __future__ import annotations

import csv

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from training.checkpoint import PRUNED_FORMAT, apply_width_spec, load_any_model, load_pruned, save_pruned, width_spec
from training.models import count_parameters, create_model
from training.prune import (
    PruneSettings,
    build_pruner,
    find_unsafe_groups,
    protected_layers,
    prune_iteratively,
    pruning_step,
    split_prune_config,
)

NUM_CLASSES = 5  # ESPNet's class-space ESP module needs >= 5 channels
HW = (32, 32)
TINY = {
    "fcn8s": dict(width_mult=0.0625),
    "deeplabv3plus_mobilenetv2": dict(width_mult=0.35, aspp_channels=16, low_level_channels=8, decoder_channels=16),
    "espnet": dict(p=1, q=1),
}


def _tiny(name: str) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, NUM_CLASSES, **TINY[name]).eval()


def _prune(model: nn.Module, steps: int = 2, fraction: float = 0.2) -> nn.Module:
    x = torch.randn(1, 3, *HW)
    pruner = build_pruner(model, x, PruneSettings(steps=steps, filters_per_step=fraction), NUM_CLASSES)
    for _ in range(steps):
        pruning_step(pruner, model, x, NUM_CLASSES)
    return model


# Fraction of parameters removed after pruning 40 % of the filters: ~1 - 0.6^2 = 64 % for plain
# chains; less where class-space layers are protected (ESPNet's whole decoder, FCN score layers).
EXPECTED_REMOVED = {"fcn8s": (0.55, 0.75), "deeplabv3plus_mobilenetv2": (0.45, 0.75), "espnet": (0.35, 0.75)}


@pytest.mark.parametrize("name", sorted(TINY))
def test_pruning_keeps_graph_valid_and_shrinks(name: str, tmp_path) -> None:
    model = _tiny(name)
    classifiers_before = [(m.out_channels, m.in_channels) for m in model.classifier_layers()]
    p0 = count_parameters(model)
    _prune(model)
    removed = 1 - count_parameters(model) / p0
    lo, hi = EXPECTED_REMOVED[name]
    assert lo < removed < hi, f"{name}: removed {removed:.3f} of the parameters"
    x = torch.randn(2, 3, 40, 48)  # another size than the tracing input: no baked shapes
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, NUM_CLASSES, 40, 48)
    for (out_before, _), layer in zip(classifiers_before, model.classifier_layers(), strict=False):
        assert layer.out_channels == out_before  # classifiers keep their class width

    # spec + weights round trip: an identical model, built without torch-pruning
    path = save_pruned(model, tmp_path / "pruned.pt")
    doc = torch.load(path, map_location="cpu", weights_only=True)
    assert doc["format"] == PRUNED_FORMAT and doc["num_params"] == count_parameters(model)
    assert doc["model_config"]["name"] == model.config["name"]
    reloaded = load_pruned(path)
    assert width_spec(reloaded) == width_spec(model)
    with torch.no_grad():
        assert torch.equal(reloaded(x), model(x))
    again, _ = load_any_model(path)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


def _zero_producers(group, graph) -> None:
    """Make the channels a group will remove dead: zero their filters, biases and BN affine."""
    for dep, idxs in group:
        if not graph.is_out_channel_pruning_fn(dep.handler):
            continue
        m = dep.target.module
        with torch.no_grad():
            if isinstance(m, nn.ConvTranspose2d):
                m.weight[:, idxs] = 0
            elif isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)):
                m.weight[idxs] = 0
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.Linear)) and m.bias is not None:
                m.bias[idxs] = 0


@pytest.mark.parametrize("name", sorted(TINY))
def test_pruning_removes_exactly_the_ranked_channels(name: str) -> None:
    """Index mapping through adds/concats/depthwise is right: removing channels that were made dead
    beforehand leaves the output unchanged (a wrong mapping would remove live channels)."""
    model = _tiny(name)
    for m in model.modules():  # non-trivial BN statistics, so a dead channel is really dead only if zeroed
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.5, 0.5)
    x = torch.randn(1, 3, *HW)
    pruner = build_pruner(model, x, PruneSettings(steps=1, filters_per_step=0.25), NUM_CLASSES)
    groups = 0
    for group in pruner.step(interactive=True):
        _zero_producers(group, pruner.DG)
        with torch.no_grad():
            before = model(x)
        group.prune()
        with torch.no_grad():
            after = model(x)
        torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
        groups += 1
    assert groups > 3


class _StandIn(nn.Module):
    """Depthwise conv, PReLU, transposed conv and Linear: every width rule of the spec."""

    def __init__(self, num_classes: int = 3, c: int = 8):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.act = nn.PReLU(c)
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.up = nn.ConvTranspose2d(c, c, 2, stride=2)
        self.gate = nn.Linear(c, c)
        self.classifier = nn.Conv2d(c, num_classes, 1)
        self.config = {"name": "standin", "num_classes": num_classes, "c": c}

    def classifier_layers(self):
        return [self.classifier]

    def forward(self, x):
        y = self.act(self.bn(self.stem(x)))
        y = self.up(self.dw(y))
        g = torch.sigmoid(self.gate(y.mean((2, 3))))[:, :, None, None]
        return F.interpolate(self.classifier(y * g), size=x.shape[-2:], mode="bilinear", align_corners=False)


def _standin_builder(cfg):
    cfg = dict(cfg)
    cfg.pop("name")
    return _StandIn(**cfg)


def test_width_spec_covers_every_layer_type(tmp_path) -> None:
    torch.manual_seed(0)
    model = _StandIn().eval()
    x = torch.randn(1, 3, 16, 16)
    pruner = build_pruner(model, x, PruneSettings(steps=1, filters_per_step=0.5), 3)
    pruning_step(pruner, model, x, 3)
    spec = width_spec(model)
    assert spec["dw"]["groups"] == spec["dw"]["out_channels"] == 4
    assert spec["act"]["num_parameters"] == 4 and spec["up"]["in_channels"] == 4
    assert spec["gate"] == {"type": "Linear", "in_features": 4, "out_features": 4}
    path = save_pruned(model, tmp_path / "s.pt")
    reloaded = load_pruned(path, builder=_standin_builder)
    with torch.no_grad():
        assert torch.equal(reloaded(x), model(x))


def test_width_spec_mismatch_is_an_error() -> None:
    model = _StandIn()
    spec = width_spec(model)
    spec["extra"] = {"type": "Conv2d", "in_channels": 1, "out_channels": 1, "groups": 1}
    with pytest.raises(ValueError, match="does not match"):
        apply_width_spec(_StandIn(), spec)
    spec = width_spec(model)
    spec["bn"] = {"type": "PReLU", "num_parameters": 8}
    with pytest.raises(ValueError, match="type"):
        apply_width_spec(_StandIn(), spec)


class _Res(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return self.bn(x + self.conv(x))


class _CatOfCoupled(nn.Module):
    """``cat([res(d), d, pool(x)])``: two tensors of one coupled group in one concat, the pattern
    torch-pruning 1.6 mis-maps (the BN after the cat loses too few channels)."""

    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)  # an ordinary prunable group beside the broken one
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.res = nn.Sequential(_Res(16), _Res(16))
        self.bn = nn.BatchNorm2d(32 + 3)
        self.pool = nn.AvgPool2d(3, 2, 1)
        self.classifier = nn.Conv2d(35, num_classes, 1)
        self.config = {"name": "cat_of_coupled", "num_classes": num_classes}

    def classifier_layers(self):
        return [self.classifier]

    def forward(self, x):
        d = self.down(self.stem(x))
        y = self.bn(torch.cat([self.res(d), d, self.pool(x)], 1))
        return F.interpolate(self.classifier(y), size=x.shape[-2:], mode="bilinear", align_corners=False)


def test_graph_breaking_groups_are_left_unpruned() -> None:
    torch.manual_seed(0)
    model = _CatOfCoupled().eval()
    x = torch.randn(1, 3, 16, 16)
    assert find_unsafe_groups(model, x, protected_layers(model, 3), 3) == ["down"]
    pruner = build_pruner(model, x, PruneSettings(steps=1, filters_per_step=0.25), 3)
    pruning_step(pruner, model, x, 3)  # raises if the graph broke
    assert model.down.out_channels == 16 and model.stem.out_channels == 6


def test_protected_layers_are_classifiers_and_class_width_convs() -> None:
    model = _tiny("fcn8s")
    prot = protected_layers(model, NUM_CLASSES)
    assert all(any(p is c for p in prot) for c in model.classifier_layers())
    assert all(p.out_channels == NUM_CLASSES for p in prot)


def test_prune_iteratively_writes_curve_and_step_models(tmp_path) -> None:
    model = _tiny("fcn8s")
    scores = iter([0.8, 0.7, 0.78, 0.6, 0.75])  # step 0; then (pruned, fine-tuned) per step
    finetuned = []

    def evaluate(m):
        v = next(scores)
        return {"miou": v, "pixel_accuracy": v + 0.1}

    def finetune(m, step):
        finetuned.append(step)

    extra = {"class_variant": "binary"}
    records = prune_iteratively(
        model,
        torch.zeros(1, 3, *HW),
        PruneSettings(steps=2, filters_per_step=0.2),
        finetune,
        evaluate,
        tmp_path,
        checkpoint_extra=extra,
    )
    assert finetuned == [1, 2]
    assert [r.step for r in records] == [0, 1, 2]
    assert records[0].params > records[1].params > records[2].params
    assert 0 < records[1].params_removed < records[2].params_removed < 1
    assert records[1].miou_pruned == 0.7 and records[1].miou == 0.78
    with open(tmp_path / "curve.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and float(rows[2]["params_removed"]) == pytest.approx(records[2].params_removed)
    assert (tmp_path / "curve.png").stat().st_size > 1000
    assert (tmp_path / "prune_log.jsonl").read_text().count("\n") == 3
    step2 = load_pruned(tmp_path / "step_02.pt")
    assert count_parameters(step2) == records[2].params
    doc = torch.load(tmp_path / "step_02.pt", weights_only=True)
    assert doc["class_variant"] == extra["class_variant"] and doc["prune_step"]["step"] == 2


def test_prune_config_split_and_validation() -> None:
    doc = {"prune": {"steps": 2, "filters_per_step": 0.15}, "train": {"epochs": 1}}
    settings, rest, overrides = split_prune_config(doc, ["prune.steps=4", "train.lr=1e-4"])
    assert settings.steps == 4 and settings.filters_per_step == 0.15
    assert rest == {"train": {"epochs": 1}} and overrides == ["train.lr=1e-4"]
    with pytest.raises(ValueError, match="unknown prune setting"):
        split_prune_config({"prune": {"stpes": 2}}, [])
    with pytest.raises(ValueError):
        split_prune_config({"prune": {"steps": 5, "filters_per_step": 0.2}}, [])  # 100 % of the filters
    with pytest.raises(ValueError, match="0 only with prune.recovery_epochs"):
        split_prune_config({"prune": {"steps": 0}}, [])  # nothing to do
    settings, _, _ = split_prune_config({"prune": {"steps": 0, "recovery_epochs": 2}}, [])
    assert settings.steps == 0 and settings.recovery_epochs == 2


def _training_checkpoint(path, root):
    from training.checkpoint import build_checkpoint, save_checkpoint
    from training.config import build_config

    cfg = build_config(
        None,
        [
            f"data.root={root}",
            "data.height=32",
            "data.width=32",
            "data.num_workers=0",
            "data.val_fraction=0.34",
            "model.name=espnet_c",
            "train.batch_size=2",
            "train.val_batch_size=2",
            "train.threads=1",
            "log.progress=false",
        ],
    )
    torch.manual_seed(0)
    model = create_model("espnet_c", 19, p=1, q=1)
    return save_checkpoint(path, build_checkpoint(model, train_config=cfg), write_config=False)


@pytest.mark.slow
def test_prune_cli_with_the_training_loop(fake_atwork, tmp_path) -> None:
    """End to end: training checkpoint -> prune CLI (train helper's loop and data) -> pruned step files."""
    from training.prune import main

    root = fake_atwork
    ck = _training_checkpoint(tmp_path / "best.pt", root)
    out = tmp_path / "prune"
    assert (
        main(
            [
                "--checkpoint",
                str(ck),
                "--out",
                str(out),
                "--set",
                "prune.steps=1",
                "--set",
                "prune.filters_per_step=0.25",
                "--set",
                "train.epochs=1",
                "--set",
                "train.max_iters_per_epoch=1",
            ]
        )
        == 0
    )
    for name in ("curve.csv", "curve.png", "config.yaml", "prune.yaml", "step_00.pt", "step_01.pt", "final.pt"):
        assert (out / name).is_file(), name
    final = load_pruned(out / "final.pt")
    assert count_parameters(final) < count_parameters(create_model("espnet_c", 19, p=1, q=1))
    doc = torch.load(out / "final.pt", weights_only=True)
    assert doc["class_variant"] == "full" and doc["input_size"] == [32, 32]
    assert doc["train_config"]["data"]["root"] == str(root)


@pytest.mark.slow
def test_recovery_only_fine_tunes_a_pruned_checkpoint_and_keeps_its_pruning_record(fake_atwork, tmp_path) -> None:
    """prune.steps=0 + prune.recovery_epochs: the pruned model is fine-tuned, not pruned further;
    final.pt records the recovery and still says how much the original pruning removed."""
    from training.prune import main

    ck = _training_checkpoint(tmp_path / "best.pt", fake_atwork)
    common = ["--set", "train.epochs=1", "--set", "train.max_iters_per_epoch=1"]
    pruned = tmp_path / "prune"
    assert main(["--checkpoint", str(ck), "--out", str(pruned), "--set", "prune.steps=1",
                 "--set", "prune.filters_per_step=0.25", *common]) == 0  # fmt: skip
    recovered = tmp_path / "recovered"
    assert main(["--checkpoint", str(pruned / "final.pt"), "--out", str(recovered), "--set", "prune.steps=0",
                 "--set", "prune.recovery_epochs=1", *common]) == 0  # fmt: skip
    before = torch.load(pruned / "final.pt", weights_only=True)
    after = torch.load(recovered / "final.pt", weights_only=True)
    assert count_parameters(load_pruned(recovered / "final.pt")) == count_parameters(load_pruned(pruned / "final.pt"))
    assert after["prune_step"] == before["prune_step"] and after["prune_step"]["params_removed"] > 0
    assert after["recovery"]["epochs"] == 1 and 0.0 <= after["recovery"]["miou"] <= 1.0
    assert after["source_checkpoint"] == str(pruned / "final.pt")
    assert any(not torch.equal(after["state_dict"][k], before["state_dict"][k]) for k in before["state_dict"])


@pytest.mark.slow
def test_recovery_writes_a_checkpoint_every_epoch_and_resume_continues_its_schedule(
    fake_atwork, tmp_path, monkeypatch
) -> None:
    """A recovery killed after its first epoch and resumed from recovery_last.pt runs the two
    missing epochs on the same LR schedule (optimiser and scheduler restored: it ends at the
    same iteration and LR as a run that went through), keeps the killed run's epoch-1 log row, and
    recovery_best.pt is the epoch with the best validation mIoU. The weights are not compared
    bit for bit: persistent DataLoader workers keep their augmentation stream across epochs, and
    a checkpoint cannot hold a worker's stream."""
    import training.prune as P

    ck = _training_checkpoint(tmp_path / "best.pt", fake_atwork)
    imported = {"file": "models/x.onnx", "sha256": "ab" * 32}  # as training.models.onnx_import records it
    torch.save({**torch.load(ck, weights_only=True), "imported_from_onnx": imported}, ck)
    common = ["--checkpoint", str(ck), "--set", "prune.steps=0", "--set", "prune.recovery_epochs=3",
              "--set", "train.max_iters_per_epoch=2", "--set", "train.lr=1.0e-2"]  # fmt: skip
    whole = tmp_path / "whole"
    assert P.main([*common, "--out", str(whole)]) == 0
    ran = torch.load(whole / "final.pt", weights_only=True)
    assert [r["epoch"] for r in ran["recovery"]["log"]] == [1, 2, 3]
    with open(whole / "recovery.csv", newline="", encoding="utf-8") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3]
    best = torch.load(whole / P.RECOVERY_BEST, weights_only=True)
    assert best["recovery"]["epochs"] == ran["recovery"]["best_epoch"]
    assert best["recovery"]["miou"] == pytest.approx(max(r["miou"] for r in ran["recovery"]["log"]))
    assert best["prune_step"] == ran["prune_step"]  # exportable like final.pt
    assert ran["source_imported_from_onnx"] == best["source_imported_from_onnx"] == imported

    class Killed(Exception):
        pass

    real_csv = P._write_recovery_csv

    def killed_after_first_epoch(rows, path):
        real_csv(rows, path)
        raise Killed  # after recovery_last.pt of epoch 1 is on disk

    cut = tmp_path / "cut"
    monkeypatch.setattr(P, "_write_recovery_csv", killed_after_first_epoch)
    with pytest.raises(Killed):
        P.main([*common, "--out", str(cut)])
    monkeypatch.setattr(P, "_write_recovery_csv", real_csv)
    killed = torch.load(cut / P.RECOVERY_LAST, weights_only=True)
    assert killed["resume_state"]["epoch"] == 1 and killed["resume_state"]["scheduler"]["last_epoch"] == 2
    assert P.main([*common, "--out", str(cut), "--resume", str(cut / P.RECOVERY_LAST)]) == 0
    resumed = torch.load(cut / "final.pt", weights_only=True)
    assert [r["epoch"] for r in resumed["recovery"]["log"]] == [1, 2, 3]
    assert resumed["recovery"]["log"][0] == ran["recovery"]["log"][0]  # the same first epoch, kept
    end_whole = torch.load(whole / P.RECOVERY_LAST, weights_only=True)["resume_state"]
    end_cut = torch.load(cut / P.RECOVERY_LAST, weights_only=True)["resume_state"]
    assert end_cut["scheduler"]["last_epoch"] == end_whole["scheduler"]["last_epoch"] == 6
    assert end_cut["scheduler"]["_last_lr"] == pytest.approx(end_whole["scheduler"]["_last_lr"])
    assert any(not torch.equal(resumed["state_dict"][k], killed["state_dict"][k]) for k in killed["state_dict"])

    with pytest.raises(ValueError, match="recovery_epochs is 4"):
        P.main([*common, "--set", "prune.recovery_epochs=4", "--out", str(tmp_path / "x"),
                "--resume", str(cut / P.RECOVERY_LAST)])  # fmt: skip
    with pytest.raises(SystemExit, match="not a recovery checkpoint"):
        P.main([*common, "--out", str(tmp_path / "y"), "--resume", str(whole / "final.pt")])
