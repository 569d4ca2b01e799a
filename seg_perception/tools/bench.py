"""seg-bench: per backend, pure backend latency beside in-process pipeline and node end-to-end latency.

All at 640x480 frames, in one run, so ratios between backends (and the peer model, when
given) hold on a noisy machine. Node end-to-end is ping-pong over real DDS: a frame is
published, the next one only after its labels arrived, so no queueing is measured; the node's own
diagnostics for the same frames (pipeline and whole work per frame, p50) come beside it, and the
difference is transport, intake and the handoff to the worker. ``backend ms`` is one inference; the
pipeline and the node run two where ``flip`` says on (the node parameter ``flip_average``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..backends import FLIP_MODES
from ..stats import interleaved_ms, median_ms


def _median_ms(fn, runs: int, warmup: int = 3) -> float:
    return median_ms(fn, runs, warmup)[0]


#: The official int8 DeepLab v3 MobileNetV2-0.5 (513x513, uint8 in, class ids out): the speed target.
DEFAULT_REFERENCE = (
    Path(__file__).resolve().parents[2].parent / "shared" / "peers" / "deeplabv3_mnv2_dm05_pascal_quant.tflite"
)


def bench_in_process(
    backend: str,
    frame: np.ndarray,
    runs: int,
    threads: int,
    reference: Path | None = None,
    model_path: str = "",
    flip_average: str = "auto",
) -> dict[str, float]:
    """Backend alone and the whole in-process pipeline (640x480 in, labels + instances at 640x480 out).

    With ``reference`` (a .tflite), the pipeline and the reference graph are also timed round-robin
    in this process with the same threads: ``pipeline_over_reference`` < 0.5 is the speed target.
    The round-robin pipeline's runtime does not spin between runs (ONNX Runtime's workers would
    otherwise take the cores from the reference: the ONNX rows' reference took 30-32 ms against
    17-19 ms in the TFLite rows); the backend and pipeline columns keep the node's setting.
    """
    from ..config import NodeConfig
    from ..pipeline import make_segmenter

    cfg = NodeConfig(backend=backend, num_threads=threads, model_path=model_path, flip_average=flip_average)
    seg = make_segmenter(cfg)
    x = seg.preprocess(frame)
    row: dict[str, float] = {
        "input": f"{seg.backend.input_hw[1]}x{seg.backend.input_hw[0]}",
        "size_mb": round(seg.backend.path.stat().st_size / 1e6, 3),
        "backend_ms": round(_median_ms(lambda: seg.backend.infer(x), runs), 2),  # one pass
        "flip_average": seg.flip_average,  # the pipeline (and the node) run two passes
        "pipeline_ms": round(_median_ms(lambda: seg.run(frame), runs), 2),
    }
    if reference is not None:
        # in turns with the reference: ONNX Runtime's workers must not spin through the reference's runs
        seg_rr = make_segmenter(cfg, spin_wait=False)
        _, ref_run = _interpreter_call(reference, threads)
        lat = interleaved_ms({"pipeline": lambda: seg_rr.run(frame), "reference": ref_run}, runs, warmup=5)
        row["pipeline_rr_ms"] = round(lat["pipeline"][0], 2)
        row["reference_rr_ms"] = round(lat["reference"][0], 2)
        row["pipeline_over_reference"] = round(lat["pipeline"][0] / lat["reference"][0], 3)
    return row


def bench_peer(path: Path, runs: int, threads: int) -> dict[str, float]:
    inp, run = _interpreter_call(path, threads)
    return {"input": inp, "size_mb": round(path.stat().st_size / 1e6, 3), "backend_ms": round(_median_ms(run, runs), 2)}


def _interpreter_call(path: Path, threads: int):
    """(input "WxH", a callable running one inference on a fixed random input) for a .tflite file."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    rng = np.random.default_rng(0)
    if np.issubdtype(d["dtype"], np.integer):
        info = np.iinfo(d["dtype"])
        x = rng.integers(info.min, info.max, d["shape"], endpoint=True).astype(d["dtype"])
    else:
        x = rng.uniform(-1, 1, d["shape"]).astype(d["dtype"])

    def run() -> None:
        it.set_tensor(d["index"], x)
        it.invoke()

    return f"{d['shape'][2]}x{d['shape'][1]}", run


def bench_pair(model: Path, peer: Path, runs: int, threads: int) -> dict[str, float]:
    """Two .tflite files on the same interpreter and threads, timed round-robin (fair under
    drifting background load); ``peer_over_model`` > 1 means the model is faster."""
    calls = {k: _interpreter_call(p, threads) for k, p in (("model", model), ("peer", peer))}
    lat = interleaved_ms({k: run for k, (_, run) in calls.items()}, runs, warmup=5)
    med = {k: v[0] for k, v in lat.items()}
    return {
        "model": str(model),
        "model_input": calls["model"][0],
        "model_ms": round(med["model"], 2),
        "peer": str(peer),
        "peer_input": calls["peer"][0],
        "peer_ms": round(med["peer"], 2),
        "peer_over_model": round(med["peer"] / med["model"], 3),
        "threads": threads,
        "runs": runs,
    }


def bench_node(
    backend: str,
    frames: list[np.ndarray],
    runs: int,
    threads: int,
    workdir: Path,
    model_path: str = "",
    flip_average: str = "auto",
) -> dict[str, float]:
    from .rosio import NodeProcess, StreamClient, image_msg

    params = {"backend": backend, "num_threads": threads, "flip_average": flip_average}
    if model_path:
        params["model_path"] = model_path
    node = NodeProcess(params, workdir / f"node_{backend}.log", remap=["image:=/bench/image_raw"])
    client = StreamClient("/bench/image_raw", name="seg_bench_camera")
    lat: list[float] = []
    try:
        if not client.wait_for_node(60):
            return {"node_error": node.log()[-500:]}
        for i in range(runs + 5):
            stamp = client.now_stamp()
            t = time.perf_counter()
            client.publish(image_msg(frames[i % len(frames)], stamp, "bench"))
            end = t + 2.0
            while stamp not in client.received.labels and time.perf_counter() < end:
                time.sleep(0.0005)
            if stamp in client.received.labels and i >= 5:
                lat.append((time.perf_counter() - t) * 1e3)
        # the node's own split of the same frames: e2e minus its work per frame is transport and intake
        diag = client.fresh_diag_values(5.0)
        return {
            "node_e2e_ms_p50": round(float(np.median(lat)), 2) if lat else float("nan"),
            "node_e2e_ms_p95": round(float(np.percentile(lat, 95)), 2) if lat else float("nan"),
            "node_frames_lost": runs - len(lat),
            **{f"node_{k}": float(diag[k]) for k in ("pipeline_ms_p50", "frame_ms_p50") if k in diag},
        }
    finally:
        client.close()
        node.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="seg-bench", description=__doc__)
    ap.add_argument("--backends", default="", help="comma-separated (default: every shipped backend)")
    ap.add_argument(
        "--model-path",
        default="",
        help="time this file instead of the manifest's (one backend; e.g. --backends tflite for an exported "
        ".tflite; a <file>.json entry beside it, as training.export --entry-sidecars writes, gives its "
        "tensor specs and classes, else they are read from the file)",
    )
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peer", default="", help="a .tflite peer model to time in the same run")
    ap.add_argument(
        "--compare",
        default="",
        help="a .tflite to time round-robin against --peer (e.g. a model exported at the peer's input)",
    )
    ap.add_argument(
        "--reference",
        default=str(DEFAULT_REFERENCE) if DEFAULT_REFERENCE.is_file() else "",
        help="a .tflite timed round-robin against each in-process pipeline (default: the official int8 "
        "DeepLab v3 MobileNetV2-0.5 at 513x513 when ../shared/peers has it; '' to skip)",
    )
    ap.add_argument("--no-node", action="store_true", help="skip the DDS end-to-end measurement")
    ap.add_argument(
        "--flip-average",
        default="auto",
        choices=FLIP_MODES,
        help="the node parameter flip_average (auto: the backend's); the flip column says what ran",
    )
    ap.add_argument(
        "--depth",
        action="store_true",
        help="also time use_depth: a node without and one with depth, frames in turn (bench_depth.py)",
    )
    ap.add_argument("--out", default="out/bench")
    args = ap.parse_args(argv)

    from ..backends import BACKENDS
    from ..demo_frames import render_frame
    from ..manifest import Manifest

    man = Manifest.load()
    names = [b for b in args.backends.split(",") if b] or [b for b, s in BACKENDS.items() if s.entry in man.entries]
    if args.model_path and len(names) != 1:
        ap.error("--model-path needs exactly one backend in --backends")
    frames = [render_frame(s)[0] for s in range(4)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[str, float]] = {}
    for name in names:
        ref = Path(args.reference) if args.reference else None
        rows[name] = bench_in_process(name, frames[0], args.runs, args.threads, ref, args.model_path, args.flip_average)
        if not args.no_node:
            rows[name].update(
                bench_node(name, frames, args.runs, args.threads, out, args.model_path, args.flip_average)
            )
        if args.depth:
            from .bench_depth import bench_node_depth

            rows[name]["depth"] = bench_node_depth(name, args.runs, args.threads, out)
            print(f"{name}: depth {json.dumps(rows[name]['depth'])}")
    if args.peer:
        rows["peer:" + Path(args.peer).name] = bench_peer(Path(args.peer), args.runs, args.threads)
    print(
        f"{'backend':34s} {'input':>8s} {'MB':>7s} {'backend ms':>11s} {'flip':>5s} {'pipeline ms':>12s} "
        f"{'node e2e p50':>13s} {'node work p50':>14s}"
    )
    for name, r in rows.items():
        flip = {True: "on", False: "off"}.get(r.get("flip_average"), "")  # type: ignore[arg-type]
        print(
            f"{name:34s} {r.get('input', ''):>8s} {r.get('size_mb', 0):7.3f} {r.get('backend_ms', float('nan')):11.2f} "
            f"{flip:>5s} {r.get('pipeline_ms', float('nan')):12.2f} {r.get('node_e2e_ms_p50', float('nan')):13.2f} "
            f"{r.get('node_frame_ms_p50', float('nan')):14.2f}"
        )
    if args.reference:
        print(
            f"in-process pipeline (640x480 -> labels + instances) vs {Path(args.reference).name}, round-robin, "
            f"{args.threads} threads:"
        )
        for name, r in rows.items():
            if "pipeline_over_reference" in r:
                print(
                    f"  {name:32s} {r['pipeline_rr_ms']:7.2f} ms vs {r['reference_rr_ms']:7.2f} ms "
                    f"-> {r['pipeline_over_reference']:.3f} (target <= 0.5)"
                )
    if args.compare:
        if not args.peer:
            ap.error("--compare needs --peer")
        pair = bench_pair(Path(args.compare), Path(args.peer), args.runs, args.threads)
        rows["compare"] = pair
        print(
            f"same interpreter, {args.threads} threads, round-robin: {Path(args.compare).name} "
            f"{pair['model_input']} {pair['model_ms']:.2f} ms vs peer {pair['peer_input']} {pair['peer_ms']:.2f} ms "
            f"-> peer/model = {pair['peer_over_model']:.2f}"
        )
    (out / "bench.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
