"""Benchmark every model of the manifest in one run: size, accuracy, agreement, latency.

    python -m training.report --models models/ --root ../shared/datasets/atwork --out docs/results

For each manifest entry: file size, parameters (from the export metrics/provenance), mIoU and
pixel accuracy on the val split (photos resized like the node), argmax agreement with the
float model of the same checkpoint (the ``*_fp32`` entry with the same checkpoint sha256),
median latency of the graph at its input size (``--threads`` threads, after warm-up) and the
end-to-end latency for a 640x480 frame (resize in + graph + argmax + nearest resize out, see
:func:`end_to_end`). The peer model (official TFLite DeepLab v3 MobileNetV2, 257x257, 21 VOC
classes) is timed in the same run (latency only) for a speed ratio.

Writes ``results.md`` (full table + a per-architecture "Original / float-16 / int8 / dynamic
range" table like the seed's), ``results.json`` and ``accuracy_vs_latency.png``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from seg_perception.stats import interleaved_ms

log = logging.getLogger(__name__)

DEFAULT_PEER = Path("../shared/peers/deeplabv3_257_mv_gpu.tflite")
FRAME_HW = (480, 640)


# --------------------------------------------------------------------------------------
# Frame pipeline (local stand-in for seg_perception's Segmenter: swap when it settles)
# --------------------------------------------------------------------------------------

def end_to_end(runner: Any, frame: np.ndarray) -> np.ndarray:
    """640x480 RGB uint8 frame -> uint8 label map at the frame's size.

    Resize to the model input (INTER_AREA, as the node), feed it as the manifest says
    (float 0..255 or quantised int8), argmax on the raw output (int8 argmax == float argmax),
    nearest-neighbour resize back to the frame size.
    """
    import cv2

    h, w = runner.input_hw
    x = frame if frame.shape[:2] == (h, w) else cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    raw = runner.run_raw(runner.prepare(x))[0]
    labels = np.argmax(raw, axis=-1).astype(np.uint8)
    return cv2.resize(labels, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_NEAREST)


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
    params: Optional[int]
    input_hw: Tuple[int, int]
    input_dtype: str
    miou: Optional[float] = None
    pixel_accuracy: Optional[float] = None
    agreement_float: Optional[float] = None
    agreement_ref: str = ""
    latency_ms: Optional[float] = None
    latency_spread_ms: Optional[float] = None
    e2e_ms: Optional[float] = None
    peer_ratio: Optional[float] = None  # peer latency / this latency (>1 = faster than the peer)
    export_metrics: Dict[str, Any] = field(default_factory=dict)
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

    def __init__(self, root: Optional[os.PathLike], num_val: int, synthetic: bool):
        self.root, self.num_val, self.synthetic = root, num_val, synthetic
        self._cache: Dict[Tuple[Any, ...], Tuple[np.ndarray, np.ndarray]] = {}

    def get(self, h: int, w: int, variant: str, num_classes: int,
            split: Optional[Dict[str, Any]] = None) -> Tuple[np.ndarray, np.ndarray]:
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


def _confusion(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> Tuple[float, float]:
    from training.metrics import ConfusionMatrix, mean_iou, pixel_accuracy

    cm = ConfusionMatrix(num_classes)
    cm.update(pred, labels)
    return float(mean_iou(cm.matrix)), float(pixel_accuracy(cm.matrix))


def _reference_names(entries: Dict[str, Any]) -> Dict[str, str]:
    """Entry -> the float entry of the same checkpoint (tflite_fp32 first, then onnx_fp32)."""
    by_ck: Dict[str, Dict[str, str]] = {}
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


def benchmark(models_dir: os.PathLike, images: ImageCache, runs: int = 30, warmup: int = 5,
              threads: int = 2, entries: Optional[Sequence[str]] = None,
              peer: Optional[os.PathLike] = None) -> Tuple[List[Row], Optional[Dict[str, Any]]]:
    """One :class:`Row` per manifest entry (errors are recorded in the row, not raised), and the
    peer's latency. Accuracy first, then all latencies timed round-robin (:func:`interleaved_ms`)."""
    from seg_perception.manifest import Manifest

    from training.export import open_runner

    manifest = Manifest.load(models_dir)
    chosen = {k: v for k, v in manifest.entries.items() if not entries or k in entries}
    refs = _reference_names(chosen)
    frame = images.frame()
    preds: Dict[str, np.ndarray] = {}
    rows: List[Row] = []
    timed: Dict[str, Callable[[], Any]] = {}
    # float references first, so the others can be compared with their predictions
    order = sorted(chosen, key=lambda n: (n not in set(refs.values()), n))
    for name in order:
        e = chosen[name]
        path = manifest.path_of(e)
        fmt = _export_format(e)
        params = e.metrics.get("num_params") or e.provenance.get("num_params")
        row = Row(name, e.file, e.format, _variant_of(fmt), e.architecture,
                  str(e.provenance.get("checkpoint_sha256", "")), path.stat().st_size / 1e6 if path.exists()
                  else 0.0, int(params) if params else None, (e.input.height, e.input.width), e.input.dtype,
                  export_metrics=dict(e.metrics))
        rows.append(row)
        try:
            e.verify_file(path)
            runner = open_runner(path, threads)
            split = e.provenance.get("split") if isinstance(e.provenance.get("split"), dict) else None
            vi, vl = images.get(e.input.height, e.input.width, e.class_variant, e.num_classes, split)
            pred = np.stack([runner.labels(img) for img in vi])
            preds[name] = pred
            row.miou, row.pixel_accuracy = _confusion(pred, vl, e.num_classes)
            ref = refs.get(name)
            if ref == name:
                row.agreement_float, row.agreement_ref = 1.0, "self"
            elif ref in preds:
                row.agreement_float, row.agreement_ref = float((pred == preds[ref]).mean()), ref
            elif "argmax_agreement" in e.metrics:
                row.agreement_float, row.agreement_ref = float(e.metrics["argmax_agreement"]), "pytorch (export)"
            x = runner.prepare(vi[0])
            timed[f"{name}|graph"] = lambda r=runner, x=x: r.run_raw(x)
            timed[f"{name}|e2e"] = lambda r=runner: end_to_end(r, frame)
        except Exception as ex:  # noqa: BLE001 - one broken model must not stop the report
            log.error("%s: %s", name, ex)
            row.error = str(ex)
        log.info("%s: mIoU %s agreement %s", name, row.miou, row.agreement_float)
    peer_info = None
    if peer is not None:
        from training.export import TFLiteRunner

        pr = TFLiteRunner(peer, threads)
        px = np.random.default_rng(0).uniform(-1, 1, [1, *pr.input_shape[1:]]).astype(np.float32)
        timed["peer|graph"] = lambda: pr.run_raw(px)
        peer_info = {"file": str(peer), "input_hw": list(pr.input_hw), "num_classes": int(pr.output_shape[-1]),
                     "size_mb": Path(peer).stat().st_size / 1e6}
    log.info("timing %d callables round-robin, %d runs each", len(timed), runs)
    lat = interleaved_ms(timed, runs, warmup)
    for row in rows:
        if f"{row.name}|graph" in lat:
            row.latency_ms, row.latency_spread_ms = lat[f"{row.name}|graph"]
            row.e2e_ms = lat[f"{row.name}|e2e"][0]
    if peer_info is not None:
        peer_info["latency_ms"], peer_info["latency_spread_ms"] = lat["peer|graph"]
        for row in rows:
            if row.latency_ms:
                row.peer_ratio = peer_info["latency_ms"] / row.latency_ms
    return rows, peer_info


# --------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------

def _f(v: Optional[float], fmt: str, scale: float = 1.0) -> str:
    return "–" if v is None else format(v * scale, fmt)


def markdown(rows: Sequence[Row], peer: Optional[Dict[str, Any]], meta: Dict[str, Any]) -> str:
    lines = ["# Model results", "",
             f"Generated {meta['date']} on {meta['machine']} with {meta['threads']} threads "
             f"(median of {meta['runs']} runs after {meta['warmup']} warm-up, all models timed round-robin; "
             f"load average before/after "
             f"{meta['load_before']} / {meta['load_after']}). Accuracy: {meta['val']}.", "",
             "| entry | arch | format | size MB | params M | input | mIoU % | pixel acc % | agree w/ float % "
             "| latency ms | e2e 640x480 ms | vs peer |",
             "|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: r.name):
        if r.error:
            lines.append(f"| {r.name} | {r.architecture} | {r.variant} | {r.size_mb:.2f} | | | error: {r.error} "
                         "| | | | | |")
            continue
        lines.append(
            f"| {r.name} | {r.architecture} | {r.format} {r.variant} | {r.size_mb:.2f} | "
            f"{_f(r.params, '.2f', 1e-6)} | {r.input_hw[0]}x{r.input_hw[1]} {r.input_dtype} | "
            f"{_f(r.miou, '.2f', 100)} | {_f(r.pixel_accuracy, '.2f', 100)} | {_f(r.agreement_float, '.2f', 100)} | "
            f"{_f(r.latency_ms, '.1f')} | {_f(r.e2e_ms, '.1f')} | {_f(r.peer_ratio, '.2f')}x |")
    if peer:
        lines += ["", f"Peer: `{Path(peer['file']).name}` ({peer['size_mb']:.2f} MB, "
                      f"{peer['input_hw'][0]}x{peer['input_hw'][1]} float, {peer['num_classes']} VOC classes): "
                      f"**{peer['latency_ms']:.1f} ms** median (spread {peer['latency_spread_ms']:.1f} ms). "
                      "'vs peer' = peer latency / model latency (>1: faster than the peer)."]
    lines += ["", "## Per architecture (seed-style): mIoU % / size MB / latency ms", ""]
    lines += _pivot(rows)
    lines += ["", "Agreement = share of val pixels whose argmax equals the float (fp32) model of the same "
                  "checkpoint. e2e = resize 640x480 -> input (INTER_AREA) + inference + argmax + nearest "
                  "resize back.", ""]
    return "\n".join(lines)


def _pivot(rows: Sequence[Row]) -> List[str]:
    cols = [("Original (fp32)", ("fp32",)), ("float-16", ("fp16",)), ("int8", ("int8",)),
            ("dynamic range", ("dynamic",))]
    out = ["| model | runtime | " + " | ".join(c for c, _ in cols) + " |", "|---|---|" + "---|" * len(cols)]
    groups: Dict[Tuple[str, str, str], Dict[str, Row]] = {}
    for r in rows:
        if not r.error:
            groups.setdefault((r.architecture, r.checkpoint_sha256[:8], r.format), {})[r.variant] = r
    for (arch, ck, fmt), by in sorted(groups.items()):
        cells = []
        for _, keys in cols:
            r = next((by[k] for k in keys if k in by), None)
            cells.append("–" if r is None else
                         f"{_f(r.miou, '.1f', 100)} / {r.size_mb:.2f} / {_f(r.latency_ms, '.1f')}")
        out.append(f"| {arch} ({ck}) | {fmt} | " + " | ".join(cells) + " |")
    return out


def plot(rows: Sequence[Row], peer: Optional[Dict[str, Any]], path: os.PathLike, threads: int = 2) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    markers = {"onnx": "s", "tflite": "o"}
    ok = [r for r in rows if not r.error and r.miou is not None and r.latency_ms is not None]
    prefix = os.path.commonprefix([r.name for r in ok]) if len(ok) > 1 else ""
    for i, r in enumerate(ok):
        ax.scatter(r.latency_ms, 100 * r.miou, marker=markers.get(r.format, "x"), s=20 + 30 * r.size_mb ** 0.5)
        ax.annotate(r.name[len(prefix):] or r.name, (r.latency_ms, 100 * r.miou), fontsize=6,
                    xytext=(4, 4 + 7 * (i % 3)), textcoords="offset points")
    if peer:
        ax.axvline(peer["latency_ms"], color="grey", ls="--", lw=1)
        ax.text(peer["latency_ms"], ax.get_ylim()[0], " peer DeepLabv3 257", rotation=90, fontsize=7,
                va="bottom", color="grey")
    ax.set_xlabel(f"median latency at model input size (ms, {threads} thread{'s' if threads > 1 else ''})")
    ax.set_ylabel("val mIoU (%)")
    ax.set_title(f"Accuracy vs latency{' (' + prefix.rstrip('_') + ')' if prefix else ''}\n"
                 "square: ONNX Runtime, circle: LiteRT, marker area ~ file size", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return Path(path)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Benchmark every manifest model (size, mIoU, latency)")
    ap.add_argument("--models", default="models", help="folder with manifest.json")
    ap.add_argument("--root", help="atWork dataset root (val split for mIoU)")
    ap.add_argument("--synthetic", action="store_true", help="synthetic val scenes (no dataset)")
    ap.add_argument("--out", default="docs/results")
    ap.add_argument("--peer", default=str(DEFAULT_PEER), help="peer .tflite ('' to skip)")
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
    peer_path = Path(args.peer) if args.peer else None
    if peer_path is not None and not peer_path.is_file():
        log.warning("peer model %s not found: no speed ratio", peer_path)
        peer_path = None
    rows, peer = benchmark(args.models, images, args.runs, args.warmup, args.threads, entries, peer_path)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()} {os.cpu_count()} cores",
            "threads": args.threads, "runs": args.runs, "warmup": args.warmup,
            "load_before": f"{load_before:.2f}", "load_after": f"{os.getloadavg()[0]:.2f}",
            "val": ("synthetic scenes" if args.synthetic or not args.root
                    else f"{args.root} val split ({args.num_val or 'all'} photos)")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(markdown(rows, peer, meta), encoding="utf-8")
    (out / "results.json").write_text(json.dumps({"meta": meta, "peer": peer,
                                                  "rows": [asdict(r) for r in rows]}, indent=2), encoding="utf-8")
    plot(rows, peer, out / "accuracy_vs_latency.png", args.threads)
    print((out / "results.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
