"""Iterative structured filter pruning (Li et al. 2017, "Pruning filters for efficient convnets").

Each iteration removes a fixed fraction of the *original* filters of every prunable conv
(ranked by the L1 norm of their weights), fine-tunes for a few epochs, evaluates and logs.
torch-pruning's :class:`~torch_pruning.DependencyGraph` removes coupled channels together,
so residual adds (MobileNetV2, FCN skip scores, ESPNet HFF), concatenations (DeepLabV3+
decoder, ESPNet input reinforcement) and depthwise convs stay consistent. The class-scoring
layers (``model.classifier_layers()``, plus any conv producing ``num_classes`` channels) keep
their output channels: the class count must not change.

The pruned model is saved in the spec + weights format of :mod:`training.checkpoint`
(:func:`~training.checkpoint.save_pruned`); why the shipped FCN-8s is trained narrow and then
pruned: docs/architecture.md.

CLI::

    python -m training.prune --checkpoint runs/fcn8s/best.pt \\
        --config training/configs/prune_fcn8s.yaml [--set prune.steps=4] --out runs/prune_fcn8s

A recovery (``prune.recovery_epochs``) measures the validation split after every epoch and
writes ``recovery_last.pt`` (``--resume`` it with the same command after an interruption),
``recovery_best.pt`` and ``recovery.csv``; ``final.pt`` is the last epoch.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from seg_perception.plain import to_plain
from training.checkpoint import class_variant_of, load_any_model, save_pruned
from training.config import TrainingConfig
from training.models import count_parameters

log = logging.getLogger(__name__)

EvalFn = Callable[[nn.Module], dict[str, float]]
FinetuneFn = Callable[[nn.Module, int], None]  # (model, iteration) -> trains in place
EpochEndFn = Callable[[int, torch.optim.Optimizer, Any, float], None]  # (epochs done, opt, sched, loss)


# --------------------------------------------------------------------------------------
# Pruning
# --------------------------------------------------------------------------------------


@dataclass
class PruneSettings:
    """How much to prune and how (the ``prune:`` section of a prune config)."""

    steps: int = 3  # pruning iterations
    filters_per_step: float = 0.1  # fraction of each layer's original filters removed per iteration
    importance: str = "l1"  # l1 (Li et al.) | l2
    group_reduction: str = "mean"  # how coupled layers' norms combine: mean | first (the reference study: first)
    round_to: int | None = None  # keep channel counts multiples of this (SIMD friendliness)
    global_pruning: bool = False  # False = same fraction per layer, as in the reference study
    eval_before_finetune: bool = True  # also log the accuracy right after pruning (the reference study's figure)
    protect_class_width_layers: bool = True  # never prune convs with num_classes output channels
    ignore_layers: list[str] = field(default_factory=list)  # extra module names to leave untouched
    # epochs of fine-tuning of the final model after the last step (Li et al. retrain once pruned);
    # with steps 0 only this runs: recovery of an already pruned checkpoint
    recovery_epochs: int = 0

    @property
    def total_ratio(self) -> float:
        return self.steps * self.filters_per_step

    def validate(self) -> PruneSettings:
        if self.recovery_epochs < 0:
            raise ValueError(f"prune.recovery_epochs must be >= 0, got {self.recovery_epochs}")
        if self.steps < 0 or (self.steps == 0 and self.recovery_epochs == 0):
            raise ValueError("prune.steps must be >= 1 (0 only with prune.recovery_epochs > 0: fine-tune only)")
        if not 0.0 < self.filters_per_step < 1.0 or self.total_ratio >= 1.0:
            raise ValueError(f"need 0 < steps * filters_per_step < 1, got {self.steps} x {self.filters_per_step}")
        if self.importance not in ("l1", "l2"):
            raise ValueError(f"prune.importance must be l1 or l2, got {self.importance!r}")
        if self.group_reduction not in ("mean", "first", "sum", "max"):
            raise ValueError(f"prune.group_reduction {self.group_reduction!r} not in mean|first|sum|max")
        return self


def protected_layers(
    model: nn.Module, num_classes: int | None = None, protect_class_width: bool = True, extra: Iterable[str] = ()
) -> list[nn.Module]:
    """Layers whose output channels must not be pruned: the classifier(s) and their kin.

    ``model.classifier_layers()`` is the contract; convs with ``num_classes`` outputs are added as
    a safety net (e.g. a learnable upsampling deconv between class maps).
    """
    layers: list[nn.Module] = list(model.classifier_layers()) if hasattr(model, "classifier_layers") else []
    if num_classes is None:
        num_classes = (getattr(model, "config", {}) or {}).get("num_classes")
    if protect_class_width and num_classes:
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.out_channels == num_classes:
                if all(m is not l for l in layers):
                    layers.append(m)
    for name in extra:
        layers.append(model.get_submodule(name))
    if not layers:
        raise ValueError("no classifier layers to protect: model.classifier_layers() is missing or empty")
    return layers


def _forward_ok(model: nn.Module, x: torch.Tensor, num_classes: int) -> bool:
    try:
        with torch.no_grad():
            out = model(x)
    except RuntimeError:
        return False
    return out.shape[1] == num_classes and out.shape[-2:] == x.shape[-2:]


def find_unsafe_groups(
    model: nn.Module, example_inputs: torch.Tensor, ignored: Sequence[nn.Module], num_classes: int
) -> list[str]:
    """Names of group roots whose pruning breaks the graph (trial-pruned one channel on a copy).

    torch-pruning 1.6 can mis-map channel indices when two tensors of the *same* coupled group are
    concatenated (seen with an ESPNet-C whose ``cat([level2(down2), down2, ...])`` fed one BN: the
    BN lost only half the channels it should). Such groups are left unpruned (with a warning)
    instead of producing an invalid model. Costs one deep copy, one trace and one forward when
    nothing is wrong.
    """
    names = {id(m): n for n, m in model.named_modules()}
    ignored_names = {names[id(m)] for m in ignored if id(m) in names}
    if _trial_prune(model, example_inputs, ignored_names, num_classes, stop_at_first_break=False)[0]:
        return []  # fast path: one channel off every group at once, one forward, all fine
    unsafe: list[str] = []
    tested: set = set()
    while True:  # slow path: find the offending groups one by one
        ok, broken = _trial_prune(
            model, example_inputs, ignored_names | set(unsafe), num_classes, stop_at_first_break=True, skip_roots=tested
        )
        if ok:
            return unsafe
        log.warning(
            "pruning the group rooted at %r breaks the graph (torch-pruning index mapping); leaving it unpruned", broken
        )
        unsafe.append(broken)


def _trial_prune(
    model: nn.Module,
    x: torch.Tensor,
    ignored_names: set,
    num_classes: int,
    stop_at_first_break: bool,
    skip_roots: set | None = None,
) -> tuple[bool, str]:
    """Prune one channel of every group of a copy of ``model``; ``(graph still valid, breaking root)``."""
    import copy

    import torch_pruning as tp

    trial = copy.deepcopy(model).eval()
    mods = dict(trial.named_modules())
    names = {id(m): n for n, m in mods.items()}
    skip = [mods[n] for n in ignored_names]
    dg = tp.DependencyGraph().build_dependency(trial, example_inputs=x)
    roots = []
    for group in dg.get_all_groups(ignored_layers=skip, root_module_types=[nn.Conv2d, nn.ConvTranspose2d, nn.Linear]):
        if len(group[0].idxs) >= 2:
            roots.append((group[0].dep.target.module, group[0].dep.handler))
    for module, handler in roots:
        root = names.get(id(module), "?")
        if skip_roots is not None:
            if root in skip_roots:
                continue
            skip_roots.add(root)
        dg.get_pruning_group(module, handler, [0]).prune()
        if stop_at_first_break and not _forward_ok(trial, x, num_classes):
            return False, root
    return _forward_ok(trial, x, num_classes), ""


def build_pruner(
    model: nn.Module, example_inputs: torch.Tensor, settings: PruneSettings, num_classes: int | None = None
):
    """torch-pruning pruner removing ``settings.filters_per_step`` of the original filters per ``step()``."""
    import torch_pruning as tp

    settings.validate()
    importance = tp.importance.MagnitudeImportance(
        p=1 if settings.importance == "l1" else 2,
        group_reduction=settings.group_reduction,
        normalizer=None,  # raw filter norms, as in the reference study (no per-group normalisation)
    )
    num_classes = int(num_classes or model.config["num_classes"])
    ignored = protected_layers(model, num_classes, settings.protect_class_width_layers, settings.ignore_layers)
    model.eval()  # the tracing forward must not touch BN statistics
    ignored += [model.get_submodule(n) for n in find_unsafe_groups(model, example_inputs, ignored, num_classes)]
    pruner_cls = getattr(tp.pruner, "BasePruner", None) or tp.pruner.MetaPruner
    return pruner_cls(
        model,
        example_inputs,
        importance=importance,
        pruning_ratio=settings.total_ratio,
        iterative_steps=settings.steps,
        ignored_layers=ignored,
        round_to=settings.round_to,
        global_pruning=settings.global_pruning,
    )


def pruning_step(pruner, model: nn.Module, example_inputs: torch.Tensor, num_classes: int) -> None:
    """One ``pruner.step()`` and a shape check (class count and output size unchanged)."""
    model.eval()
    pruner.step()
    with torch.no_grad():
        out = model(example_inputs)
    if out.shape[1] != num_classes or out.shape[-2:] != example_inputs.shape[-2:]:
        raise RuntimeError(
            f"pruning broke the output: {tuple(out.shape)} for input "
            f"{tuple(example_inputs.shape)}, expected {num_classes} classes at input size"
        )


@dataclass
class StepRecord:
    """One row of the pruning curve."""

    step: int
    filters_removed: float  # target fraction of each layer's original filters removed
    params: int
    params_removed: float  # measured fraction of the original parameters removed
    miou: float
    pixel_accuracy: float
    miou_pruned: float | None = None  # right after pruning, before fine-tuning
    pixel_accuracy_pruned: float | None = None
    finetune_s: float = 0.0
    checkpoint: str = ""


def prune_iteratively(
    model: nn.Module,
    example_inputs: torch.Tensor,
    settings: PruneSettings,
    finetune: FinetuneFn,
    evaluate: EvalFn,
    out_dir: os.PathLike | None = None,
    num_classes: int | None = None,
    checkpoint_extra: Mapping[str, Any] | None = None,
) -> list[StepRecord]:
    """Prune -> (eval) -> fine-tune -> eval, ``settings.steps`` times; step 0 is the unpruned model.

    Writes ``step_XX.pt`` (spec + weights), ``curve.csv``/``curve.png`` and ``prune_log.jsonl``
    into ``out_dir`` after every step, so an interrupted run keeps its curve.
    """
    settings.validate()
    num_classes = int(num_classes or model.config["num_classes"])
    out = Path(out_dir) if out_dir is not None else None
    base_params = count_parameters(model)
    model.eval()
    pruner = build_pruner(model, example_inputs, settings, num_classes) if settings.steps else None
    m0 = evaluate(model)
    records = [StepRecord(0, 0.0, base_params, 0.0, m0["miou"], m0["pixel_accuracy"])]
    _log_step(records[-1])
    if out is not None:
        records[-1].checkpoint = _save_step(model, out, 0, records[-1], checkpoint_extra)
        _write_outputs(records, out)
    for step in range(1, settings.steps + 1):
        pruning_step(pruner, model, example_inputs, num_classes)
        params = count_parameters(model)
        rec = StepRecord(
            step,
            round(step * settings.filters_per_step, 6),
            params,
            1.0 - params / base_params,
            float("nan"),
            float("nan"),
        )
        if settings.eval_before_finetune:
            mp = evaluate(model)
            rec.miou_pruned, rec.pixel_accuracy_pruned = mp["miou"], mp["pixel_accuracy"]
        t0 = time.time()
        finetune(model, step)
        rec.finetune_s = time.time() - t0
        model.eval()
        mf = evaluate(model)
        rec.miou, rec.pixel_accuracy = mf["miou"], mf["pixel_accuracy"]
        records.append(rec)
        _log_step(rec)
        if out is not None:
            rec.checkpoint = _save_step(model, out, step, rec, checkpoint_extra)
            _write_outputs(records, out)
    return records


def _log_step(r: StepRecord) -> None:
    log.info(
        "prune step %d: filters -%.0f%% params %d (-%.1f%%) mIoU %.4f pixacc %.4f%s",
        r.step,
        100 * r.filters_removed,
        r.params,
        100 * r.params_removed,
        r.miou,
        r.pixel_accuracy,
        "" if r.miou_pruned is None else f" (before fine-tune mIoU {r.miou_pruned:.4f})",
    )


def _save_step(model: nn.Module, out: Path, step: int, rec: StepRecord, extra: Mapping[str, Any] | None) -> str:
    meta = {"prune_step": asdict(rec), **(dict(extra) if extra else {})}
    path = save_pruned(model, out / f"step_{step:02d}.pt", extra=meta)
    return path.name


def _write_outputs(records: Sequence[StepRecord], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_curve_csv(records, out / "curve.csv")
    with open(out / "prune_log.jsonl", "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(asdict(r)) + "\n")
    try:
        from training.plots import plot_prune_curve

        plot_prune_curve(records, out / "curve.png")
    except Exception as e:  # noqa: BLE001 - a plot failure must not lose the pruned weights
        log.warning("could not plot the pruning curve: %s", e)


def write_curve_csv(records: Sequence[StepRecord], path: os.PathLike) -> Path:
    names = list(asdict(records[0]).keys())
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=names)
        w.writeheader()
        for r in records:
            w.writerow(asdict(r))
    return Path(path)


# --------------------------------------------------------------------------------------
# CLI: data, fine-tuning and evaluation from the training code
# --------------------------------------------------------------------------------------


def split_prune_config(
    doc: Mapping[str, Any], overrides: Sequence[str]
) -> tuple[PruneSettings, dict[str, Any], list[str]]:
    """``(prune settings, the rest of the YAML, non-prune overrides)``.

    The ``prune:`` section and ``--set prune.*`` belong to :class:`PruneSettings`; everything else
    is a training-config override for the fine-tuning (``train.epochs`` = epochs per iteration).
    """
    import yaml

    rest = {k: v for k, v in dict(doc or {}).items() if k != "prune"}
    prune = dict(PruneSettings().__dict__)
    _merge_prune(prune, (doc or {}).get("prune") or {})
    train_overrides = []
    for o in overrides:
        key, sep, raw = o.partition("=")
        if not sep:
            raise ValueError(f"override {o!r} is not key.sub=value")
        if key.strip().startswith("prune."):
            _merge_prune(prune, {key.strip()[len("prune.") :]: yaml.safe_load(raw) if raw.strip() else None})
        else:
            train_overrides.append(o)
    return PruneSettings(**prune).validate(), rest, train_overrides


def _merge_prune(base: dict[str, Any], upd: Mapping[str, Any]) -> None:
    for k, v in upd.items():
        if k not in base:
            raise ValueError(f"unknown prune setting {k!r}; valid: {sorted(base)}")
        base[k] = v


class _TrainHelperLoop:
    """Fine-tuning and evaluation with the train helper's loop, loss, optimiser and data."""

    def __init__(self, cfg: TrainingConfig, class_weights: Sequence[float] | None = None):
        from training import loops
        from training import train as T
        from training.distributed import DistInfo, pick_device

        self.T, self.loops, self.cfg = T, loops, cfg
        # fine-tuning and evaluation run on train.device (a GPU where there is one); pruning itself
        # (dependency graph, example inputs) stays on the CPU, so the model moves between the two
        self.info = DistInfo(device=pick_device(cfg.train.device))
        self.num_classes, _ = T.num_classes_of(cfg)
        train_ds, val_ds = T.build_datasets(cfg)
        self.train_loader, self.val_loader, _ = T.build_loaders(cfg, train_ds, val_ds, self.info)
        self.loss_fn = T.build_loss(cfg, self.num_classes, class_weights).to(self.info.device)
        # fine-tuning learns from the same teacher as the training did (distill.teacher), if any
        self.teacher = T.build_teacher(cfg, self.info.device)
        self.train_loss_fn = self.loss_fn
        if self.teacher is not None:
            from training.losses import DistillationLoss

            d = cfg.distill
            self.train_loss_fn = DistillationLoss(self.loss_fn, d.weight, d.temperature, cfg.train.ignore_index).to(
                self.info.device
            )

    def finetune(
        self,
        model: nn.Module,
        step: int | str,
        epochs: int | None = None,
        on_epoch_end: EpochEndFn | None = None,
        resume_state: Mapping[str, Any] | None = None,
    ) -> None:
        """``epochs`` of fine-tuning on one LR schedule. ``on_epoch_end(epochs done, optimiser,
        scheduler, mean loss)`` runs after each; ``resume_state`` (from a recovery checkpoint)
        restores optimiser, scheduler and RNG and starts after its finished epochs."""
        t = self.cfg.train
        epochs = t.epochs if epochs is None else epochs
        iters = (
            len(self.train_loader) if t.max_iters_per_epoch <= 0 else min(len(self.train_loader), t.max_iters_per_epoch)
        )
        cfg = self.cfg.updated({"train": {"epochs": epochs}})  # the LR schedule spans these epochs
        model.to(self.info.device)  # before the optimiser: it holds the parameters where they train
        opt = self.T.build_optimizer(cfg, model)  # fresh: parameter tensors changed shape
        sched = self.T.build_scheduler(cfg, opt, iters)
        start = 0
        if resume_state is not None:
            start, _, _, _ = self.T.restore_state(resume_state, opt, sched)
        for epoch in range(start, epochs):
            r = self.loops.train_one_epoch(
                model,
                self.train_loader,
                self.train_loss_fn,
                opt,
                sched,
                self.info,
                epoch,
                t.max_iters_per_epoch,
                t.grad_clip,
                None,
                False,
                self.teacher,
            )
            log.info(
                "prune step %s fine-tune epoch %d/%d: loss %.4f (%.1f img/s)",
                step,
                epoch + 1,
                epochs,
                r["loss"],
                r["images_per_s"],
            )
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, opt, sched, float(r["loss"]))
        model.eval()
        model.to("cpu")

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        from training.metrics import mean_iou, pixel_accuracy

        home = next(model.parameters()).device
        _, cm = self.loops.evaluate(
            model.to(self.info.device), self.val_loader, None, self.num_classes, self.info, self.cfg.train.ignore_index
        )
        model.to(home)
        return {"miou": float(mean_iou(cm)), "pixel_accuracy": float(pixel_accuracy(cm))}


RECOVERY_LAST = "recovery_last.pt"  # after every recovery epoch: weights + optimiser state (--resume)
RECOVERY_BEST = "recovery_best.pt"  # the recovery epoch with the best validation mIoU so far


def recover(
    model: nn.Module,
    loop: _TrainHelperLoop,
    epochs: int,
    out: Path | None = None,
    extra: Mapping[str, Any] | None = None,
    resume: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Fine-tune the pruned model ``epochs`` more epochs on one LR schedule, measuring it on the
    validation split after each (recorded in final.pt as ``recovery``).

    With ``out``, every epoch writes ``recovery_last.pt`` (model + ``resume_state``: optimiser,
    scheduler, RNG, the per-epoch log) and, when it is the best so far, ``recovery_best.pt``;
    ``recovery.csv`` holds the curve. ``resume`` is a ``recovery_last.pt`` document whose model
    is already loaded: the schedule continues after its finished epochs.
    """
    t0 = time.time()
    state = dict((resume or {}).get("resume_state") or {})
    rows: list[dict[str, Any]] = [dict(r) for r in state.get("log", [])]
    if resume is not None and int(state.get("epochs", -1)) != epochs:
        raise ValueError(
            f"the resumed recovery ran a {state.get('epochs')}-epoch schedule; prune.recovery_epochs is {epochs} "
            "(set it to the same number to continue that schedule)"
        )
    best = max((float(r["miou"]) for r in rows), default=-1.0)
    base = dict(extra or {})

    def end_of_epoch(done: int, opt: torch.optim.Optimizer, sched: Any, loss: float) -> None:
        nonlocal best
        m = loop.evaluate(model)
        rows.append({"epoch": done, "loss": round(loss, 6), **m})
        log.info("recovery epoch %d/%d: loss %.4f val mIoU %.4f", done, epochs, loss, m["miou"])
        if out is None:
            return
        record = {"epochs": done, "of_epochs": epochs, **m}
        if m["miou"] > best:
            best = m["miou"]
            save_pruned(model, out / RECOVERY_BEST, extra={**base, "recovery": record})
        resume_state = {
            "epoch": done,
            "epochs": epochs,
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "rng": torch.get_rng_state(),
            "log": rows,
        }
        save_pruned(model, out / RECOVERY_LAST, extra={**base, "recovery": record}, resume_state=resume_state)
        _write_recovery_csv(rows, out / "recovery.csv")

    loop.finetune(model, "recovery", epochs, on_epoch_end=end_of_epoch, resume_state=state or None)
    m = rows[-1] if rows else loop.evaluate(model)
    best_row = max(rows, key=lambda r: float(r["miou"])) if rows else {"epoch": epochs, **m}
    log.info("recovery fine-tune (%d epochs): mIoU %.4f pixacc %.4f", epochs, m["miou"], m["pixel_accuracy"])
    return {
        "epochs": epochs,
        "seconds": round(time.time() - t0, 1),
        "miou": float(m["miou"]),
        "pixel_accuracy": float(m["pixel_accuracy"]),
        "best_epoch": int(best_row["epoch"]),
        "best_miou": float(best_row["miou"]),
        "log": rows,
    }


def _write_recovery_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["epoch", "loss", "miou", "pixel_accuracy"])
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in w.fieldnames})


def _int8_budget_note(params: int, budget_mb: float = 10.0) -> str:
    mb = params / 1e6  # ~1 byte per weight in int8 (+ small per-channel overhead)
    return f"~{mb:.1f} MB as int8, ~{2 * mb:.1f} MB as fp16, ~{4 * mb:.1f} MB as fp32" + (
        "" if mb < budget_mb else f" -- OVER the {budget_mb:.0f} MB budget even as int8"
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Iterative L1 filter pruning with fine-tuning (Li et al. 2017)")
    ap.add_argument("--checkpoint", required=True, help="trained (or pruned) checkpoint")
    ap.add_argument("--config", help="prune config YAML (training/configs/prune_*.yaml)")
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="prune.* settings or training-config keys for the fine-tuning (repeatable)",
    )
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--root", help="dataset root (data.root)")
    ap.add_argument(
        "--resume",
        help=f"continue an interrupted recovery from its {RECOVERY_LAST} (same command otherwise; "
        "the pruning steps it recorded are not run again)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    import yaml

    from seg_perception.manifest import sha256_file
    from training.config import build_config, load_yaml, save_config

    doc_file = load_yaml(args.config) if args.config else {}
    overrides = list(args.overrides) + ([f"data.root={args.root}"] if args.root else [])
    settings, rest, train_overrides = split_prune_config(doc_file, overrides)

    model, doc = load_any_model(args.checkpoint)
    resume_doc: dict[str, Any] | None = None
    if args.resume:
        model, resume_doc = load_any_model(args.resume)
        if "resume_state" not in resume_doc or "prune_records" not in resume_doc:
            raise SystemExit(f"{args.resume} is not a recovery checkpoint ({RECOVERY_LAST} of training.prune)")
        if not settings.recovery_epochs:
            raise SystemExit("--resume continues a recovery: prune.recovery_epochs must be > 0")
    num_classes = int(model.config["num_classes"])
    base = dict(doc.get("train_config") or {})
    base.pop("prune", None)
    cfg = build_config(rest, train_overrides + [f"log.out={args.out}"], base=base or None)
    from seg_perception.classes import load_classes

    if load_classes(cfg.data.variant).num_classes != num_classes:
        cfg = cfg.updated({"data": {"variant": class_variant_of(doc, num_classes)}})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out)
    (out / "prune.yaml").write_text(
        yaml.safe_dump(
            {"prune": asdict(settings), "checkpoint": str(args.checkpoint), "argv": sys.argv}, sort_keys=False
        ),
        encoding="utf-8",
    )
    if cfg.train.threads:
        torch.set_num_threads(int(cfg.train.threads))
    torch.manual_seed(int(cfg.train.seed))

    weights = (doc.get("extra") or {}).get("class_weights") if isinstance(doc.get("extra"), Mapping) else None
    loop = _TrainHelperLoop(cfg, weights)
    h, w = int(cfg.data.height), int(cfg.data.width)
    extra = {
        "source_checkpoint": str(args.checkpoint),
        "source_sha256": sha256_file(args.checkpoint),
        "class_variant": cfg.data.variant,
        "input_size": [h, w],
        "train_config": to_plain(cfg),
    }
    if isinstance(doc.get("imported_from_onnx"), Mapping):  # rebuilt from a shipped file: keep which one
        extra["source_imported_from_onnx"] = doc["imported_from_onnx"]
    elif isinstance(doc.get("source_imported_from_onnx"), Mapping):
        extra["source_imported_from_onnx"] = doc["source_imported_from_onnx"]
    if resume_doc is not None:
        records = [StepRecord(**r) for r in resume_doc["prune_records"]]
        log.info("resuming the recovery after epoch %d of %s", resume_doc["resume_state"]["epoch"], args.resume)
    else:
        records = prune_iteratively(
            model, torch.zeros(1, 3, h, w), settings, loop.finetune, loop.evaluate, out, num_classes, extra
        )
    last = records[-1]
    final_extra: dict[str, Any] = {**extra, "prune_step": asdict(last)}
    if settings.steps == 0 and isinstance(doc.get("prune_step"), Mapping):
        final_extra["prune_step"] = dict(doc["prune_step"])  # recovery only: the pruning it recovers from
    if settings.recovery_epochs:
        recovery_extra = {**final_extra, "prune_records": [asdict(r) for r in records]}
        final_extra["recovery"] = recover(model, loop, settings.recovery_epochs, out, recovery_extra, resume_doc)
    final = save_pruned(model, out / "final.pt", extra=final_extra)
    print(f"{'step':>4} {'params':>10} {'removed':>8} {'mIoU':>7} {'pixacc':>7} {'mIoU pre-FT':>11}")
    for r in records:
        pre = "" if r.miou_pruned is None else f"{100 * r.miou_pruned:.2f}"
        print(
            f"{r.step:>4} {r.params:>10} {100 * r.params_removed:>7.1f}% {100 * r.miou:>6.2f} "
            f"{100 * r.pixel_accuracy:>6.2f} {pre:>11}"
        )
    if "recovery" in final_extra:
        rec = final_extra["recovery"]
        print(
            f"recovery: {rec['epochs']} epochs -> mIoU {100 * rec['miou']:.2f} pixacc {100 * rec['pixel_accuracy']:.2f}"
            f" (best epoch {rec['best_epoch']}: mIoU {100 * rec['best_miou']:.2f}, {out / RECOVERY_BEST})"
        )
    print(
        f"final model: {final} ({last.params / 1e6:.2f}M params: {_int8_budget_note(last.params)}); "
        f"curve: {out / 'curve.png'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
