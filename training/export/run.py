"""The export run: every requested format written, checked through the runtime and recorded."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from seg_perception.manifest import Manifest, ModelEntry, TensorSpec, make_entry

from .checks import ExportCheckError, check_exported, enforce_tolerances, open_exported, torch_logits
from .formats import ALL_FORMATS, EXPORTERS, EXTRA_FORMATS, ExportContext, ExportSettings

log = logging.getLogger(__name__)


def export_all(
    model: nn.Module,
    settings: ExportSettings,
    out_dir: os.PathLike,
    calib_images: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray | None,
    provenance: Mapping[str, Any],
) -> dict[str, dict[str, Any]]:
    """Export, check and record every format of ``settings``; returns ``{fmt: metrics}``.

    ``calib_images``/``val_images`` are uint8 NHWC at the export size. A file failing a check is
    deleted and not recorded; :class:`ExportCheckError` is raised after all formats were tried
    if any failed (its ``results`` hold the formats that passed).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    h, w = settings.height, settings.width
    num_classes = int(model.config["num_classes"])
    sample = (
        torch.from_numpy(val_images[0].astype(np.float32))[None] if len(val_images) else torch.full((1, h, w, 3), 127.0)
    )
    manifest = Manifest.load(out)
    results: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    with ExportContext(model, settings, out, calib_images, sample) as ctx:
        ref = torch_logits(ctx.wrapper, val_images)
        for fmt in settings.formats:
            path = out / settings.file_name(fmt)
            t0 = time.time()
            try:
                if fmt not in EXPORTERS:
                    raise ValueError(f"unknown format {fmt!r}; valid: {ALL_FORMATS + EXTRA_FORMATS}")
                quantization = EXPORTERS[fmt](ctx, path)
                export_s = time.time() - t0
                prov = {**provenance, "format": fmt, "export": {**asdict(settings), "quantization": quantization}}
                entry = manifest_entry(settings, fmt, path, num_classes, model.config["name"], prov)
                seg = open_exported(entry, path, settings.threads)
                # the file decides its tensor types; the entry records them
                entry.input.dtype = seg.backend.input_dtype.name
                entry.output.dtype = seg.backend.output_dtype.name
                # the grid the graph's logits come on (the model's grid with --logits-grid model)
                if None not in seg.backend.output_hw:
                    entry.output.height, entry.output.width = seg.backend.output_hw
                metrics = check_exported(seg, val_images, val_labels, ref)
                metrics["export_s"] = round(export_s, 2)
                metrics["num_params"] = int(provenance.get("num_params", 0))
                if seg.backend.input_quant is not None:
                    metrics["input_quant"] = list(seg.backend.input_quant)
                if seg.backend.output_quant is not None:
                    metrics["output_quant"] = list(seg.backend.output_quant)
                enforce_tolerances(
                    fmt, metrics, settings.max_abs_diff_fp32, settings.min_agreement_float, settings.min_agreement_quant
                )
            except Exception as e:  # noqa: BLE001 - report every format, fail at the end
                log.error("%s: %s", fmt, e)
                failures.append(f"{fmt}: {e}")
                if path.exists():
                    path.unlink()
                continue
            entry.metrics = metrics
            write_sidecar(path, {"entry": entry.name, "file": path.name, **prov, "metrics": metrics})
            manifest.put(entry)
            manifest.save()
            results[fmt] = metrics
            log.info(
                "%s -> %s (%.1f KB): agreement %.4f max|diff| %.4g mIoU %s (torch %s)",
                fmt,
                path.name,
                path.stat().st_size / 1024,
                metrics["argmax_agreement"],
                metrics["max_abs_diff"],
                fmt_score(metrics.get("miou")),
                fmt_score(metrics.get("miou_torch")),
            )
    if failures:
        err = ExportCheckError("; ".join(failures))
        err.results = results  # type: ignore[attr-defined]  # what did pass is recorded
        raise err
    return results


def fmt_score(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def manifest_entry(
    settings: ExportSettings, fmt: str, path: Path, num_classes: int, architecture: str, provenance: dict[str, Any]
) -> ModelEntry:
    """The entry the node will use for ``path``: NHWC RGB 0..255 in (the graph normalises) at the export
    size, NHWC logits out on a grid left unstated (0) until the written file states its own; hash and
    size of the file as written."""
    h, w = settings.height, settings.width
    return make_entry(
        settings.entry_name(fmt),
        path,
        "onnx" if fmt.startswith("onnx") else "tflite",
        num_classes,
        class_variant=settings.class_variant,
        architecture=architecture,
        input=TensorSpec(
            layout="NHWC", height=h, width=w, color="RGB", mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0], kind="image"
        ),
        output=TensorSpec(layout="NHWC", color="RGB", kind="logits"),
        provenance=provenance,
    )


def write_sidecar(path: Path, doc: Mapping[str, Any]) -> Path:
    """``<file>.config.yaml``: the entry's provenance and metrics beside the file."""
    import yaml

    from seg_perception.plain import to_plain

    side = path.with_name(path.name + ".config.yaml")
    side.write_text(yaml.safe_dump(to_plain(dict(doc)), sort_keys=False), encoding="utf-8")
    return side


def write_entry_sidecar(manifest: Manifest, name: str) -> Path:
    """``<file>.json``: entry ``name`` of ``manifest`` beside its file, where the generic backends look
    for one (``seg_perception.backends.base.generic_entry``): ``--model-path FILE`` then runs it as
    the manifest would (normalisation, layout, classes, split record)."""
    import json

    from seg_perception.backends.base import entry_sidecar_path

    entry = manifest.get(name)
    side = entry_sidecar_path(manifest.path_of(entry))
    side.write_text(json.dumps(entry.to_dict(), indent=1) + "\n", encoding="utf-8")
    return side


def tool_versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for pkg in (
        "torch",
        "onnx",
        "onnxruntime",
        "litert-torch",
        "ai-edge-litert",
        "ai-edge-quantizer",
        "torch-pruning",
        "numpy",
    ):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out
