"""Write the weights a training run starts from into a checkpoint, and stop.

A run's start can need what another machine lacks: the reference TFLite import reads the file with
the LiteRT runtime, and its batch-norm calibration reads training photos. This builds the start
exactly as ``training.train`` would (same config, same seed, same calibration batches) and saves
it, so that machine trains from the file instead:

    python -m training.start_checkpoint --config training/configs/deeplab_mnv2.yaml --out start.pt
    python -m training.train --config training/configs/deeplab_mnv2.yaml \\
        --set init.checkpoint=start.pt --set init.reference_tflite=null

``--half`` stores the floating-point tensors as float16 (half the bytes, for a size-limited
transfer; ``init.checkpoint`` loads them back into the float32 model).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from .checkpoint import build_checkpoint, save_checkpoint
from .config import ConfigError, add_config_arguments, build_config, flag_overrides, load_yaml
from .distributed import seed_everything, setup_distributed
from .run_log import command_line
from .train import _starting_model, build_datasets, build_loaders, num_classes_of

log = logging.getLogger(__name__)


def halve_floats(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """float32/float64 tensors as float16; integer tensors (batch-norm counters) unchanged."""
    return {k: v.half() if v.is_floating_point() else v for k, v in state_dict.items()}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.start_checkpoint", description=__doc__.split("\n\n")[0])
    add_config_arguments(p)
    p.add_argument("--half", action="store_true", help="store floating-point tensors as float16")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.out:
        p.error("--out FILE is required (the checkpoint to write)")
    out = Path(args.out)
    flags = flag_overrides(args)
    flags.pop("log", None)  # --out names the file here, not a run folder
    try:
        cfg = build_config(load_yaml(args.config) if args.config else None, args.overrides, flags=flags)
    except ConfigError as e:
        log.error("%s", e)
        return 2
    info = setup_distributed("cpu")
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed)
    train_ds, val_ds = build_datasets(cfg)
    train_loader, _, _ = build_loaders(cfg, train_ds, val_ds, info)
    model = _starting_model(cfg, info, train_loader, None)
    _, class_names = num_classes_of(cfg)
    ckpt = build_checkpoint(
        model,
        train_config=cfg,
        class_names=class_names,
        extra={"command": command_line(argv, "training.start_checkpoint")},
    )
    if args.half:
        ckpt["state_dict"] = halve_floats(ckpt["state_dict"])
    save_checkpoint(out, ckpt, write_config=False)
    log.info("wrote the start of %s to %s (%d tensors)", cfg.model.name, out, len(ckpt["state_dict"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
