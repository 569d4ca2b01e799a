"""``python -m training.export``: the command line of the export (see :mod:`training.export`)."""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from seg_perception.manifest import Manifest, sha256_file
from training.checkpoint import checkpoint_info, load_any_model

from .checks import ExportCheckError
from .formats import ALL_FORMATS, DEFAULT_HW, EXTRA_FORMATS, ExportSettings, parse_entry_names
from .images import real_images, synthetic_scenes
from .run import export_all, fmt_score, tool_versions, write_entry_sidecar


def _image_sets(
    args: argparse.Namespace, variant: str, num_classes: int, h: int, w: int, split: dict[str, Any] | None = None
):
    """(calib images, val images, val labels, calib source, val source)."""
    if args.synthetic_calib:
        ci, _ = synthetic_scenes(args.num_calib, h, w, num_classes, seed=1)
        vi, vl = synthetic_scenes(args.num_val or 16, h, w, num_classes, seed=2)
        return ci, vi, vl, "synthetic", "synthetic"
    if not args.calib_root:
        raise SystemExit("give --calib-root (real photos) or --synthetic-calib")
    split = split or {}  # the checkpoint's own train/val split: calibration never sees val photos
    ci, _ = real_images(args.calib_root, "train", variant, h, w, args.num_calib, split)
    vroot = args.val_root or args.calib_root
    vi, vl = real_images(vroot, "val", variant, h, w, args.num_val, split)
    return ci, vi, vl, f"{args.calib_root} (train split)", f"{vroot} (val split)"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.export", description="Export a checkpoint to ONNX/TFLite, check and record it"
    )
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument(
        "--formats", default=",".join(ALL_FORMATS), help=f"comma list of {', '.join(ALL_FORMATS + EXTRA_FORMATS)}"
    )
    ap.add_argument("--out", default="models", help="models folder (holds manifest.json)")
    ap.add_argument("--name-prefix", help="file/entry name prefix (default: the architecture name)")
    ap.add_argument("--entry-names", help="fmt=name,... manifest entry names (default <prefix>_<fmt>)")
    ap.add_argument("--height", type=int)
    ap.add_argument("--width", type=int)
    ap.add_argument("--calib-root", help="atWork dataset root: calibration from the train split")
    ap.add_argument("--val-root", help="dataset root for validation images (default: --calib-root)")
    ap.add_argument("--synthetic-calib", action="store_true", help="synthetic blob scenes instead of photos")
    ap.add_argument("--num-calib", type=int, default=100)
    ap.add_argument("--num-val", type=int, default=0, help="validation images (0 = whole val split)")
    ap.add_argument(
        "--opset",
        type=int,
        default=18,
        help="ONNX opset (18: the dynamo exporter's native one; 17 is converted down and the "
        "converter's fallback drops the name scopes used by --keep-float)",
    )
    ap.add_argument("--onnx-exporter", choices=("dynamo", "legacy"), default="dynamo")
    ap.add_argument("--onnx-calibrate-method", choices=("minmax", "entropy", "percentile"), default="minmax")
    ap.add_argument("--onnx-activation-type", choices=("quint8", "qint8"), default="quint8")
    ap.add_argument("--onnx-weight-type", choices=("qint8", "quint8"), default="qint8")
    ap.add_argument(
        "--onnx-op-types",
        default="",
        help="comma list of the op types onnx_int8 quantises, e.g. Conv,ConvTranspose (default: every type "
        "onnxruntime quantises; the others stay float between the int8 convs)",
    )
    ap.add_argument(
        "--onnx-full-range",
        action="store_true",
        help="8-bit ONNX weights (default 7-bit reduce_range; full range only on VNNI CPUs)",
    )
    ap.add_argument("--tflite-int8-method", choices=("aeq", "pt2e"), default="aeq")
    ap.add_argument("--tflite-float-regex", help="keep TFLite ops whose output name matches in float")
    ap.add_argument(
        "--tflite-range-update",
        choices=("minmax", "ema"),
        default="minmax",
        help="activation range calibration for tflite_int8 (aeq)",
    )
    ap.add_argument(
        "--keep-float",
        default="auto",
        help="int8 models: layers kept in float: auto (weight-sensitivity probe), none, or conv names",
    )
    ap.add_argument("--keep-float-max", type=int, default=6, help="most layers 'auto' keeps in float")
    ap.add_argument("--min-agreement", type=float, default=0.90, help="argmax agreement floor for int8")
    ap.add_argument(
        "--logits-grid",
        choices=("model", "input"),
        default="model",
        help="model: the graph ends at the model's logit grid and the node upsamples (default); "
        "input: logits resized to the input size inside the graph",
    )
    ap.add_argument(
        "--entry-sidecars",
        action="store_true",
        help="also write each file's manifest entry as <file>.json beside it, so --model-path runs it as the "
        "manifest would (for files outside models/, such as a held-out twin)",
    )
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    torch.set_num_threads(args.threads)

    model, doc = load_any_model(args.checkpoint)
    info = checkpoint_info(doc, model)
    h, w = info.get("input_size", DEFAULT_HW)
    h, w = int(args.height or h), int(args.width or w)
    num_classes = int(model.config["num_classes"])
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    settings = ExportSettings(
        formats=formats,
        height=h,
        width=w,
        name_prefix=args.name_prefix or model.config["name"],
        entry_names=parse_entry_names(args.entry_names),
        opset=args.opset,
        onnx_exporter=args.onnx_exporter,
        onnx_calibrate_method=args.onnx_calibrate_method,
        onnx_activation_type=args.onnx_activation_type,
        onnx_reduce_range=not args.onnx_full_range,
        onnx_weight_type=args.onnx_weight_type,
        onnx_op_types=[t.strip() for t in args.onnx_op_types.split(",") if t.strip()],
        tflite_int8_method=args.tflite_int8_method,
        tflite_float_regex=args.tflite_float_regex,
        tflite_range_update=args.tflite_range_update,
        keep_float=args.keep_float,
        keep_float_max=args.keep_float_max,
        num_calib=args.num_calib,
        num_val=args.num_val,
        class_variant=info["class_variant"],
        threads=args.threads,
        min_agreement_quant=args.min_agreement,
        logits_grid=args.logits_grid,
    )
    ci, vi, vl, csrc, vsrc = _image_sets(args, info["class_variant"], num_classes, h, w, info.get("split"))
    settings.calib_source, settings.val_source = csrc, vsrc
    provenance = {
        "command": "python -m training.export " + shlex.join(sys.argv[1:] if argv is None else list(argv)),
        "checkpoint": str(args.checkpoint),
        "checkpoint_sha256": sha256_file(args.checkpoint),
        "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": tool_versions(),
        **info,
    }
    rc = 0
    try:
        results = export_all(model, settings, args.out, ci, vi, vl, provenance)
    except ExportCheckError as e:
        results, rc = getattr(e, "results", {}), 1
        print(f"FAILED (not recorded): {e}", file=sys.stderr)
    if args.entry_sidecars and results:
        manifest = Manifest.load(args.out)
        for fmt in results:
            write_entry_sidecar(manifest, settings.entry_name(fmt))
    print(f"\n{'format':<18}{'entry':<34}{'KB':>9}{'agree':>8}{'max|d|':>9}{'mIoU':>8}{'dmIoU':>8}")
    for fmt, m in results.items():
        size = (Path(args.out) / settings.file_name(fmt)).stat().st_size / 1024
        print(
            f"{fmt:<18}{settings.entry_name(fmt):<34}{size:>9.1f}{m['argmax_agreement']:>8.4f}"
            f"{m['max_abs_diff']:>9.3g}{fmt_score(m.get('miou')):>8}"
            f"{(m['miou_delta'] if 'miou_delta' in m else float('nan')):>+8.4f}"
        )
    return rc
