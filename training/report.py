"""Benchmark every model of the manifest in one run: size, accuracy, agreement, latency.

    python -m training.report --models models/ --root ../shared/datasets/atwork --out docs/results

Every file runs through the node's own code: loaded by ``seg_perception.backends`` with its
manifest entry (hash checked) and run by ``Segmenter``. For each manifest entry: file size,
parameters (from the export metrics/provenance), mIoU and pixel accuracy on the val split (photos
resized like the node), argmax agreement with the float model of the same checkpoint (the
``*_fp32`` entry with the same checkpoint sha256), median latency of the backend at its input
size (``--threads`` threads, after warm-up) and the end-to-end latency for a 640x480 frame
(``Segmenter.labels``: resize in, inference, labels at the frame's size as the node makes them). The reference model
(the official TFLite DeepLab v3 MobileNetV2, 257x257, 21 VOC classes) is timed in the same run
(latency only) for a speed ratio. All latencies are timed round-robin in one process, ONNX
sessions without spin-waiting (why: docs/architecture.md).

Writes ``results.md`` (full table + a per-architecture "Original / float-16 / int8 / dynamic
range" table as in the reference study), ``results.json`` and ``accuracy_vs_latency.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seg_perception.backends import generic_entry, open_backend
from seg_perception.classes import load_classes
from seg_perception.manifest import Manifest, sha256_file
from seg_perception.metrics import accuracy_summary, confusion_matrix
from seg_perception.pipeline import Segmenter
from seg_perception.stats import interleaved_ms

log = logging.getLogger(__name__)

DEFAULT_REFERENCE = Path("../shared/peers/deeplabv3_257_mv_gpu.tflite")
FRAME_HW = (480, 640)


# --------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    file: str
    format: str  # onnx / tflite
    variant: str  # fp32 / fp16 / int8 / dynamic / ... (from the export format)
    architecture: str
    checkpoint_sha256: str
    size_mb: float
    params: int | None
    input_hw: tuple[int, int]
    input_dtype: str
    miou: float | None = None
    pixel_accuracy: float | None = None
    agreement_float: float | None = None
    agreement_ref: str = ""
    latency_ms: float | None = None
    latency_spread_ms: float | None = None
    e2e_ms: float | None = None
    reference_ratio: float | None = None  # reference latency / this latency (>1 = faster than the reference)
    export_metrics: dict[str, Any] = field(default_factory=dict)
    trained_on_val: bool = False  # a final model (data.train_on_val): its val mIoU is memory
    error: str = ""


def _export_format(entry: Any) -> str:
    fmt = str(entry.provenance.get("format", ""))
    if fmt:
        return fmt
    stem = Path(entry.file).stem
    for f in ("onnx_fp32", "onnx_int8", "tflite_fp32", "tflite_fp16", "tflite_dynamic", "tflite_int8"):
        if stem.endswith(f):
            return f
    return entry.format


def _variant_of(fmt: str) -> str:
    return fmt.split("_", 1)[1] if "_" in fmt else fmt


class ImageCache:
    """Val images/labels per (height, width, class variant); one 640x480 frame for e2e timing."""

    def __init__(self, root: os.PathLike | None, num_val: int, synthetic: bool):
        self.root, self.num_val, self.synthetic = root, num_val, synthetic
        self._cache: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]] = {}

    def get(
        self, h: int, w: int, variant: str, num_classes: int, split: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Val images at (h, w); ``split`` = the checkpoint's split record (default: the run split)."""
        split = dict(split or {})
        key = (h, w, variant, num_classes, tuple(sorted(split.items())))
        if key not in self._cache:
            from training.export import real_images, synthetic_scenes

            if self.synthetic or not self.root:
                self._cache[key] = synthetic_scenes(self.num_val or 16, h, w, num_classes, seed=2)
            else:
                self._cache[key] = real_images(self.root, "val", variant, h, w, self.num_val, split)
        return self._cache[key]

    def frame(self) -> np.ndarray:
        """A 640x480 RGB frame (a val photo when the dataset is there)."""
        if not self.synthetic and self.root:
            from training.data.atwork import list_samples, read_rgb, split_samples

            _, val = split_samples(list_samples(self.root))
            img = read_rgb(val[0].image_path)
            if img.shape[:2] == FRAME_HW:
                return img
            import cv2

            return cv2.resize(img, (FRAME_HW[1], FRAME_HW[0]), interpolation=cv2.INTER_AREA)
        from training.export import synthetic_scenes

        return synthetic_scenes(1, FRAME_HW[0], FRAME_HW[1], 5, seed=3)[0][0]


def _accuracy(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[float | None, float | None]:
    acc = accuracy_summary(confusion_matrix(pred, labels, num_classes))
    return acc["miou"], acc["pixel_accuracy"]


def open_segmenter(entry: Any, path: os.PathLike, threads: int) -> Segmenter:
    """A manifest entry's file as the node runs it. ONNX sessions do not spin-wait: timed round-robin,
    a spinning session would steal the cores of the next model."""
    return Segmenter(open_backend(entry, path, threads, spin_wait=False), load_classes(entry.class_variant))


def _reference_names(entries: dict[str, Any]) -> dict[str, str]:
    """Entry -> the float entry of the same checkpoint (tflite_fp32 first, then onnx_fp32)."""
    by_ck: dict[str, dict[str, str]] = {}
    for name, e in entries.items():
        ck = str(e.provenance.get("checkpoint_sha256", ""))
        by_ck.setdefault(ck, {})[_export_format(e)] = name
    out = {}
    for name, e in entries.items():
        fmts = by_ck.get(str(e.provenance.get("checkpoint_sha256", "")), {})
        ref = fmts.get("tflite_fp32") or fmts.get("onnx_fp32")
        if ref and e.provenance.get("checkpoint_sha256"):
            out[name] = ref
    return out


def benchmark(
    models_dir: os.PathLike,
    images: ImageCache,
    runs: int = 30,
    warmup: int = 5,
    threads: int = 2,
    entries: Sequence[str] | None = None,
    reference: os.PathLike | None = None,
) -> tuple[list[Row], dict[str, Any] | None]:
    """One :class:`Row` per manifest entry (errors are recorded in the row, not raised), and the
    reference model's latency. Accuracy first, then all latencies timed round-robin (:func:`interleaved_ms`)."""
    manifest = Manifest.load(models_dir)
    chosen = {k: v for k, v in manifest.entries.items() if not entries or k in entries}
    refs = _reference_names(chosen)
    frame = images.frame()
    preds: dict[str, np.ndarray] = {}
    rows: list[Row] = []
    timed: dict[str, Callable[[], Any]] = {}
    # float references first, so the others can be compared with their predictions
    order = sorted(chosen, key=lambda n: (n not in set(refs.values()), n))
    for name in order:
        e = chosen[name]
        path = manifest.path_of(e)
        fmt = _export_format(e)
        params = e.metrics.get("num_params") or e.provenance.get("num_params")
        row = Row(
            name,
            e.file,
            e.format,
            _variant_of(fmt),
            e.architecture,
            str(e.provenance.get("checkpoint_sha256", "")),
            path.stat().st_size / 1e6 if path.exists() else 0.0,
            int(params) if params else None,
            (e.input.height, e.input.width),
            e.input.dtype,
            export_metrics=dict(e.metrics),
        )
        rows.append(row)
        try:
            seg = open_segmenter(e, path, threads)
            split = e.provenance.get("split") if isinstance(e.provenance.get("split"), dict) else None
            row.trained_on_val = e.trained_on_val
            vi, vl = images.get(e.input.height, e.input.width, e.class_variant, e.num_classes, split)
            pred = np.stack([seg.labels(img) for img in vi])
            preds[name] = pred
            row.miou, row.pixel_accuracy = _accuracy(pred, vl, e.num_classes)
            ref = refs.get(name)
            if ref == name:
                row.agreement_float, row.agreement_ref = 1.0, "self"
            elif ref in preds:
                row.agreement_float, row.agreement_ref = float((pred == preds[ref]).mean()), ref
            elif "argmax_agreement" in e.metrics:
                row.agreement_float, row.agreement_ref = float(e.metrics["argmax_agreement"]), "pytorch (export)"
            x = seg.preprocess(vi[0])
            timed[f"{name}|graph"] = lambda b=seg.backend, x=x: b.infer(x)
            timed[f"{name}|e2e"] = lambda s=seg: s.labels(frame)
        except Exception as ex:  # noqa: BLE001 - one broken model must not stop the report
            log.error("%s: %s", name, ex)
            row.error = str(ex)
        log.info("%s: mIoU %s agreement %s", name, row.miou, row.agreement_float)
    reference_info = None
    if reference is not None:
        runtime = "onnx" if Path(reference).suffix.lower() == ".onnx" else "tflite"
        entry = generic_entry(Path(reference), runtime, sha256_file(reference))  # open_backend checks the hash
        rb = open_backend(entry, reference, threads, spin_wait=False)
        h, w = rb.input_hw
        shape = (1, h, w, 3) if rb.entry.input.layout == "NHWC" else (1, 3, h, w)
        rx = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
        timed["reference|graph"] = lambda: rb.infer(rx)
        reference_info = {
            "file": str(reference),
            "input_hw": [h, w],
            "num_classes": rb.num_classes,
            "size_mb": Path(reference).stat().st_size / 1e6,
        }
    log.info("timing %d callables round-robin, %d runs each", len(timed), runs)
    lat = interleaved_ms(timed, runs, warmup)
    for row in rows:
        if f"{row.name}|graph" in lat:
            row.latency_ms, row.latency_spread_ms = lat[f"{row.name}|graph"]
            row.e2e_ms = lat[f"{row.name}|e2e"][0]
    if reference_info is not None:
        reference_info["latency_ms"], reference_info["latency_spread_ms"] = lat["reference|graph"]
        for row in rows:
            if row.latency_ms:
                row.reference_ratio = reference_info["latency_ms"] / row.latency_ms
    return rows, reference_info


# --------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------


def _f(v: float | None, fmt: str, scale: float = 1.0) -> str:
    return "–" if v is None else format(v * scale, fmt)


MEMORY_MARK = " (m)"


def _miou_cell(r: Row, fmt: str) -> str:
    """mIoU in percent, marked when it is memory (a final model scored on photos it learnt)."""
    return _f(r.miou, fmt, 100) + (MEMORY_MARK if r.trained_on_val else "")


def markdown(rows: Sequence[Row], reference: dict[str, Any] | None, meta: dict[str, Any]) -> str:
    lines = [
        "# Model results",
        "",
        f"Generated {meta['date']} on {meta['machine']} with {meta['threads']} threads "
        f"(median of {meta['runs']} runs after {meta['warmup']} warm-up, all models timed round-robin; "
        f"load average before/after "
        f"{meta['load_before']} / {meta['load_after']}). Accuracy: {meta['val']}.",
        "",
        "| entry | arch | format | size MB | params M | input | mIoU % | pixel acc % | agree w/ float % "
        "| latency ms | e2e 640x480 ms | vs reference |",
        "|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: r.name):
        if r.error:
            lines.append(
                f"| {r.name} | {r.architecture} | {r.variant} | {r.size_mb:.2f} | | | error: {r.error} | | | | | |"
            )
            continue
        lines.append(
            f"| {r.name} | {r.architecture} | {r.format} {r.variant} | {r.size_mb:.2f} | "
            f"{_f(r.params, '.2f', 1e-6)} | {r.input_hw[0]}x{r.input_hw[1]} {r.input_dtype} | "
            f"{_miou_cell(r, '.2f')} | {_f(r.pixel_accuracy, '.2f', 100)} | {_f(r.agreement_float, '.2f', 100)} | "
            f"{_f(r.latency_ms, '.1f')} | {_f(r.e2e_ms, '.1f')} | {_f(r.reference_ratio, '.2f')}x |"
        )
    if reference:
        r = reference
        lines += [
            "",
            f"Reference model: `{Path(r['file']).name}` ({r['size_mb']:.2f} MB, "
            f"{r['input_hw'][0]}x{r['input_hw'][1]} float, {r['num_classes']} VOC classes): "
            f"**{r['latency_ms']:.1f} ms** median (spread {r['latency_spread_ms']:.1f} ms). "
            "'vs reference' = reference latency / model latency (>1: faster than the reference).",
        ]
    if any(r.trained_on_val for r in rows):
        lines += [
            "",
            f"{MEMORY_MARK} trained on its validation photos too (a final model, `data.train_on_val`): this mIoU "
            "is memory, not accuracy on new runs; its estimate is the held-out twin's (same recipe on the split).",
        ]
    lines += ["", "## Per architecture (as in the reference study): mIoU % / size MB / latency ms", ""]
    lines += _pivot(rows)
    lines += [
        "",
        "Agreement = share of val pixels whose argmax equals the float (fp32) model of the same "
        "checkpoint. e2e = resize 640x480 -> input (INTER_AREA) + inference + labels at 640x480 as the "
        "node makes them (bilinear scores of the present classes, or nearest).",
        "",
    ]
    return "\n".join(lines)


def _pivot(rows: Sequence[Row]) -> list[str]:
    cols = [
        ("Original (fp32)", ("fp32",)),
        ("float-16", ("fp16",)),
        ("int8", ("int8",)),
        ("dynamic range", ("dynamic",)),
    ]
    out = ["| model | runtime | " + " | ".join(c for c, _ in cols) + " |", "|---|---|" + "---|" * len(cols)]
    groups: dict[tuple[str, str, str], dict[str, Row]] = {}
    for r in rows:
        if not r.error:
            groups.setdefault((r.architecture, r.checkpoint_sha256[:8], r.format), {})[r.variant] = r
    for (arch, ck, fmt), by in sorted(groups.items()):
        cells = []
        for _, keys in cols:
            r = next((by[k] for k in keys if k in by), None)
            cells.append("–" if r is None else f"{_miou_cell(r, '.1f')} / {r.size_mb:.2f} / {_f(r.latency_ms, '.1f')}")
        out.append(f"| {arch} ({ck}) | {fmt} | " + " | ".join(cells) + " |")
    return out


def plot(rows: Sequence[Row], reference: dict[str, Any] | None, path: os.PathLike, threads: int = 2) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    markers = {"onnx": "s", "tflite": "o"}
    ok = [r for r in rows if not r.error and r.miou is not None and r.latency_ms is not None]
    prefix = os.path.commonprefix([r.name for r in ok]) if len(ok) > 1 else ""
    for i, r in enumerate(ok):
        ax.scatter(r.latency_ms, 100 * r.miou, marker=markers.get(r.format, "x"), s=20 + 30 * r.size_mb**0.5)
        ax.annotate(
            r.name[len(prefix) :] or r.name,
            (r.latency_ms, 100 * r.miou),
            fontsize=6,
            xytext=(4, 4 + 7 * (i % 3)),
            textcoords="offset points",
        )
    if reference:
        ax.axvline(reference["latency_ms"], color="grey", ls="--", lw=1)
        ax.text(
            reference["latency_ms"],
            ax.get_ylim()[0],
            " reference DeepLabv3 257",
            rotation=90,
            fontsize=7,
            va="bottom",
            color="grey",
        )
    ax.set_xlabel(f"median latency at model input size (ms, {threads} thread{'s' if threads > 1 else ''})")
    ax.set_ylabel("val mIoU (%)")
    ax.set_title(
        f"Accuracy vs latency{' (' + prefix.rstrip('_') + ')' if prefix else ''}\n"
        "square: ONNX Runtime, circle: LiteRT, marker area ~ file size",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return Path(path)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Benchmark every manifest model (size, mIoU, latency)")
    ap.add_argument("--models", default="models", help="folder with manifest.json")
    ap.add_argument("--root", help="atWork dataset root (val split for mIoU)")
    ap.add_argument("--synthetic", action="store_true", help="synthetic val scenes (no dataset)")
    ap.add_argument("--out", default="docs/results")
    ap.add_argument(
        "--reference",
        "--peer",
        dest="reference",
        default=str(DEFAULT_REFERENCE),
        help="reference .tflite or .onnx timed in the same run ('' to skip; --peer: the old name)",
    )
    ap.add_argument("--entries", help="comma list of entries (default: all)")
    ap.add_argument("--num-val", type=int, default=0, help="val images (0 = whole split)")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    import platform

    load_before = os.getloadavg()[0]
    images = ImageCache(args.root, args.num_val, args.synthetic)
    entries = [e.strip() for e in args.entries.split(",")] if args.entries else None
    reference_path = Path(args.reference) if args.reference else None
    if reference_path is not None and not reference_path.is_file():
        log.warning("reference model %s not found: no speed ratio", reference_path)
        reference_path = None
    rows, reference = benchmark(args.models, images, args.runs, args.warmup, args.threads, entries, reference_path)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "threads": args.threads,
        "runs": args.runs,
        "warmup": args.warmup,
        "load_before": f"{load_before:.2f}",
        "load_after": f"{os.getloadavg()[0]:.2f}",
        "val": (
            "synthetic scenes"
            if args.synthetic or not args.root
            else f"{args.root} val split of each checkpoint (capture runs by default; {args.num_val or 'all'} photos)"
        ),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(markdown(rows, reference, meta), encoding="utf-8")
    (out / "results.json").write_text(
        json.dumps({"meta": meta, "reference": reference, "rows": [asdict(r) for r in rows]}, indent=2),
        encoding="utf-8",
    )
    plot(rows, reference, out / "accuracy_vs_latency.png", args.threads)
    print((out / "results.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
