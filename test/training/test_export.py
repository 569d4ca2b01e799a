"""Export: ONNX/TFLite files reproduce PyTorch through the node's own backends and Segmenter, int8 keeps
the argmax, failing files are not recorded, manifests verify; the report runs every entry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from seg_perception.manifest import Manifest, ModelEntry, sha256_file
from seg_perception.postprocess import dequantize
from training.export import (
    ALL_FORMATS,
    EXPORTERS,
    EXTRA_FORMATS,
    ExportCheckError,
    ExportSettings,
    NHWCExportWrapper,
    export_all,
    open_exported,
    parse_entry_names,
    synthetic_scenes,
    torch_logits,
)
from training.models import create_model

VARIANT = "binary"  # the node refuses a model whose class count is not its variant's; so does the export
NUM_CLASSES = 2
H, W = 32, 40


@pytest.fixture(scope="module")
def trained():
    """A tiny ESPNet-C trained for a few steps on colour -> class scenes (a meaningful argmax)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = create_model("espnet_c", NUM_CLASSES, p=1, q=1)
    images, labels = synthetic_scenes(48, H, W, NUM_CLASSES, seed=0)
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() - 127.5) / 127.5
    y = torch.from_numpy(labels).long()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(100):
        idx = torch.randint(0, len(x), (8,))
        model.train()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    model.eval()
    calib, _ = synthetic_scenes(16, H, W, NUM_CLASSES, seed=1)
    val_images, val_labels = synthetic_scenes(8, H, W, NUM_CLASSES, seed=2)
    return model, calib, val_images, val_labels


def _settings(formats, **kw) -> ExportSettings:
    return ExportSettings(
        formats=list(formats), height=H, width=W, name_prefix="tiny", class_variant=VARIANT, threads=1, **kw
    )


PROVENANCE = {"command": "pytest", "checkpoint_sha256": "0" * 64, "num_params": 1}


def _export(trained, out: Path, formats, **kw):
    model, calib, vi, vl = trained
    return export_all(model, _settings(formats, **kw), out, calib, vi, vl, PROVENANCE)


def _fixed_input() -> np.ndarray:
    return np.random.default_rng(7).uniform(0, 255, (H, W, 3)).astype(np.float32)


def _torch_out(model, img: np.ndarray) -> np.ndarray:
    return torch_logits(NHWCExportWrapper(model), img[None])[0]


def _runtime_logits(out: Path, entry_name: str, img: np.ndarray) -> np.ndarray:
    """Logits of an exported file as the node computes them (its backend, Segmenter preprocessing)."""
    e = Manifest.load(out).get(entry_name)
    seg = open_exported(e, out / e.file, 1)
    return dequantize(seg.scores(img), seg.backend.output_quant)


def _check_manifest(out: Path, names) -> Manifest:
    man = Manifest.load(out)
    for name in names:
        e = man.get(name)
        path = man.path_of(e)
        assert e.verify_file(path) == sha256_file(path) == e.sha256
        assert e.size_bytes == path.stat().st_size
        assert e.input.layout == e.output.layout == "NHWC"
        assert (e.input.height, e.input.width) == (H, W) == (e.output.height, e.output.width)
        assert e.input.mean == [0.0, 0.0, 0.0] and e.input.std == [1.0, 1.0, 1.0]
        assert e.num_classes == NUM_CLASSES and e.architecture == "espnet_c"
        assert e.provenance["checkpoint_sha256"] == PROVENANCE["checkpoint_sha256"]
        side = yaml.safe_load(path.with_name(path.name + ".config.yaml").read_text())
        assert side["entry"] == name and side["export"]["height"] == H
    return man


def test_wrapper_takes_nhwc_pixels(trained) -> None:
    model = trained[0]
    img = _fixed_input()
    x = (torch.from_numpy(img).permute(2, 0, 1)[None] - 127.5) / 127.5
    with torch.no_grad():
        want = model(x)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(_torch_out(model, img), want, atol=1e-4)  # logits reach ~13: float32 rounding


@pytest.fixture(scope="module")
def onnx_dir(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx_models")
    results = _export(trained, out, ["onnx_fp32", "onnx_int8"], keep_float="level1.conv")
    return out, results


def test_onnx_fp32_reproduces_pytorch_through_the_runtime(trained, onnx_dir) -> None:
    out, results = onnx_dir
    img = _fixed_input()
    np.testing.assert_allclose(
        _runtime_logits(out, "tiny_onnx_fp32", img), _torch_out(trained[0], img), atol=1e-4, rtol=1e-4
    )
    assert results["onnx_fp32"]["argmax_agreement"] == 1.0 and results["onnx_fp32"]["max_abs_diff"] < 1e-3


def test_onnx_int8_keeps_the_argmax_and_the_miou(onnx_dir) -> None:
    m = onnx_dir[1]["onnx_int8"]
    assert m["argmax_agreement"] > 0.95, m
    assert abs(m["miou_delta"]) < 0.05 and m["miou_torch"] > 0.6, m


def test_onnx_files_are_recorded_in_the_manifest(onnx_dir) -> None:
    out, _ = onnx_dir
    man = _check_manifest(out, ["tiny_onnx_fp32", "tiny_onnx_int8"])
    assert man.get("tiny_onnx_int8").input.dtype == "float32"  # QDQ graph keeps a float interface
    assert man.get("tiny_onnx_int8").provenance["export"]["quantization"]["activation_type"] == "quint8"
    assert (out / "tiny_onnx_int8.onnx").stat().st_size < (out / "tiny_onnx_fp32.onnx").stat().st_size


def test_onnx_int8_keeps_the_chosen_layer_float(onnx_dir) -> None:
    import onnx

    out, _ = onnx_dir
    e = Manifest.load(out).get("tiny_onnx_int8")
    assert e.provenance["export"]["quantization"]["float_layers"]["layers"] == ["level1.conv"]
    excluded = e.provenance["export"]["quantization"]["exclude_nodes"]
    assert len(excluded) == 1
    g = onnx.load(str(out / "tiny_onnx_int8.onnx")).graph
    made_by = {o: n.op_type for n in g.node for o in n.output}
    convs = {n.name: n for n in g.node if n.op_type == "Conv"}
    assert made_by.get(convs[excluded[0]].input[1]) != "DequantizeLinear"  # float weights
    others = [n for name, n in convs.items() if name != excluded[0]]
    assert others and all(made_by.get(n.input[1]) == "DequantizeLinear" for n in others)


def _quantised_between_float_ops(path: Path) -> set[str]:
    """Op types that write an activation of a QDQ graph which goes through QuantizeLinear ->
    DequantizeLinear although neither its writer nor any reader is a convolution."""
    import onnx

    g = onnx.load(str(path)).graph
    weights = {t.name for t in g.initializer}
    writer = {o: n.op_type for n in g.node for o in n.output}
    readers: dict[str, list[str]] = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    convs = {"Conv", "ConvTranspose"}
    out: set[str] = set()
    for q in (n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] not in weights):
        read_by = {r.op_type for dq in readers.get(q.output[0], []) for r in readers.get(dq.output[0], [])}
        if writer.get(q.input[0]) not in convs and not read_by & convs:
            out.add(writer.get(q.input[0], "graph input"))
    return out


def test_onnx_int8_quantises_only_the_chosen_op_types(trained, onnx_dir, tmp_path) -> None:
    # default: onnxruntime also quantises the concatenations and batch norms between convs
    assert "Concat" in _quantised_between_float_ops(onnx_dir[0] / "tiny_onnx_int8.onnx")
    results = _export(trained, tmp_path, ["onnx_int8"], keep_float="none", onnx_op_types=["Conv", "ConvTranspose"])
    # only activations a conv writes or reads are quantised
    assert _quantised_between_float_ops(tmp_path / "tiny_onnx_int8.onnx") == set()
    q = Manifest.load(tmp_path).get("tiny_onnx_int8").provenance["export"]["quantization"]
    assert q["op_types"] == ["Conv", "ConvTranspose"]
    assert results["onnx_int8"]["argmax_agreement"] > 0.95


def test_onnx_int8_refuses_an_op_type_the_graph_lacks(trained, tmp_path) -> None:
    with pytest.raises(ExportCheckError, match=r"\['Gemm', 'MatMul'\]: none is in the graph; its op types: .*Conv"):
        _export(trained, tmp_path, ["onnx_int8"], keep_float="none", onnx_op_types=["Gemm", "MatMul"])
    assert not (tmp_path / "tiny_onnx_int8.onnx").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"num_classes": NUM_CLASSES + 1}, "output shape"),  # the backend's class-axis check
        ({"input": {"height": H + 8, "width": W}}, "input shape"),
        ({"class_variant": "full"}, "classes"),  # 2 classes where the variant has 19: Segmenter refuses
    ],
)
def test_open_exported_refuses_an_entry_the_file_does_not_match(onnx_dir, change, message) -> None:
    out, _ = onnx_dir
    e = Manifest.load(out).get("tiny_onnx_fp32")
    d = e.to_dict()
    for key, value in change.items():
        d[key] = {**d[key], **value} if isinstance(value, dict) else value
    with pytest.raises(ExportCheckError, match=message):
        open_exported(ModelEntry.from_dict(d), out / e.file, 1)


def test_a_file_failing_its_check_is_deleted_and_not_recorded(trained, tmp_path) -> None:
    with pytest.raises(ExportCheckError, match="onnx_int8: argmax agreement") as e:
        _export(trained, tmp_path, ["onnx_fp32", "onnx_int8"], keep_float="none", min_agreement_quant=1.01)
    assert set(e.value.results) == {"onnx_fp32"}  # what passed is recorded and reported
    assert set(Manifest.load(tmp_path).entries) == {"tiny_onnx_fp32"}
    assert not (tmp_path / "tiny_onnx_int8.onnx").exists()


def test_every_format_has_an_exporter() -> None:
    assert set(EXPORTERS) == set(ALL_FORMATS + EXTRA_FORMATS)


@pytest.mark.slow
def test_tflite_fp32_fp16_dynamic_int8(trained, tmp_path) -> None:
    results = _export(
        trained, tmp_path, ["tflite_fp32", "tflite_fp16", "tflite_dynamic", "tflite_int8"], keep_float="level1.conv"
    )
    img = _fixed_input()
    np.testing.assert_allclose(
        _runtime_logits(tmp_path, "tiny_tflite_fp32", img), _torch_out(trained[0], img), atol=1e-4, rtol=1e-4
    )
    assert results["tflite_fp16"]["argmax_agreement"] > 0.99
    assert results["tflite_dynamic"]["argmax_agreement"] > 0.9
    m = results["tflite_int8"]
    assert m["argmax_agreement"] > 0.95 and abs(m["miou_delta"]) < 0.05, m
    assert m["input_quant"] == [1.0, -128]  # uint8 pixels map exactly: px - 128
    man = _check_manifest(tmp_path, [f"tiny_{f}" for f in results])
    e = man.get("tiny_tflite_int8")
    assert e.input.dtype == "int8" and e.output.dtype == "int8"
    assert e.provenance["export"]["quantization"]["float_layers"]["tflite_ops_matched"]["level1.conv"] >= 1
    int8 = open_exported(e, man.path_of(e), 1).backend
    assert int8.input_quant == (1.0, -128) and int8.output_quant is not None
    assert (tmp_path / "tiny_tflite_int8.tflite").stat().st_size < (tmp_path / "tiny_tflite_fp32.tflite").stat().st_size


def test_entry_names_and_file_names() -> None:
    s = _settings(["tflite_int8"], entry_names=parse_entry_names("tflite_int8=tflite_int8, onnx_int8=onnx"))
    assert s.entry_name("tflite_int8") == "tflite_int8" and s.entry_name("onnx_int8") == "onnx"
    assert s.entry_name("onnx_fp32") == "tiny_onnx_fp32" and s.file_name("onnx_int8") == "tiny_onnx_int8.onnx"
    with pytest.raises(ValueError):
        parse_entry_names("tflite_int8")


def test_export_cli_from_a_pruned_checkpoint_with_real_images(fake_atwork, tmp_path) -> None:
    """CLI: pruned checkpoint -> ONNX fp32 checked on (miniature) real photos, custom entry name."""
    from seg_perception.atwork import list_samples, split_samples
    from training.checkpoint import save_pruned
    from training.export import main

    model19 = create_model("espnet_c", 19, p=1, q=1).eval()
    ck = save_pruned(model19, tmp_path / "pruned.pt", extra={"class_variant": "full", "input_size": [H, W]})
    out = tmp_path / "models"
    assert (
        main(
            [
                "--checkpoint",
                str(ck),
                "--formats",
                "onnx_fp32",
                "--calib-root",
                str(fake_atwork),
                "--out",
                str(out),
                "--name-prefix",
                "p",
                "--entry-names",
                "onnx_fp32=onnx",
                "--threads",
                "1",
                "--entry-sidecars",
            ]
        )
        == 0
    )
    e = Manifest.load(out).get("onnx")
    # the sidecar: --model-path runs the file with its manifest entry (here from outside any models folder)
    from seg_perception.backends.base import create_backend

    backend = create_backend("onnx", model_path=str(out / e.file), num_threads=1)
    assert backend.entry_source == "sidecar" and backend.entry.to_dict() == e.to_dict()
    assert e.file == "p_onnx_fp32.onnx" and e.class_variant == "full" and e.num_classes == 19
    assert e.provenance["checkpoint_sha256"] == sha256_file(ck) and e.provenance["pruned"] is True
    assert e.provenance["command"].startswith("python -m training.export --checkpoint")
    assert "val split" in e.provenance["export"]["val_source"]
    assert e.metrics["num_images"] == len(split_samples(list_samples(fake_atwork))[1])
    assert e.metrics["argmax_agreement"] == 1.0 and "miou_delta" in e.metrics


def _report_rows(out: Path, **kw):
    from training.report import ImageCache, benchmark

    # the export's 8 validation scenes (synthetic_scenes seed 2): the same images, the same runtime
    return benchmark(out, ImageCache(None, 8, synthetic=True), runs=3, warmup=1, threads=1, **kw)


def test_report_measures_every_entry_through_the_runtime(onnx_dir) -> None:
    rows, reference = _report_rows(onnx_dir[0])
    assert reference is None
    by = {r.name: r for r in rows}
    assert set(by) == {"tiny_onnx_fp32", "tiny_onnx_int8"} and not any(r.error for r in rows)
    assert by["tiny_onnx_fp32"].agreement_float == 1.0 and by["tiny_onnx_int8"].agreement_ref == "tiny_onnx_fp32"
    assert by["tiny_onnx_int8"].agreement_float > 0.95
    for r in rows:  # the same scenes through the same runtime: the export's mIoU exactly
        assert r.miou == pytest.approx(r.export_metrics["miou"], abs=1e-12) and r.latency_ms > 0 and r.e2e_ms > 0


def test_report_times_a_reference_model_in_the_same_run(onnx_dir) -> None:
    out = onnx_dir[0]
    rows, reference = _report_rows(out, entries=["tiny_onnx_int8"], reference=out / "tiny_onnx_fp32.onnx")
    assert reference["input_hw"] == [H, W] and reference["num_classes"] == NUM_CLASSES
    assert reference["latency_ms"] > 0 and rows[0].reference_ratio == pytest.approx(
        reference["latency_ms"] / rows[0].latency_ms
    )


def test_report_sessions_do_not_spin_wait(onnx_dir) -> None:
    """Timed round-robin, a spinning ONNX Runtime pool steals the next model's cores (git log dfafc0a)."""
    from training.report import open_segmenter

    out = onnx_dir[0]
    e = Manifest.load(out).get("tiny_onnx_int8")
    opts = open_segmenter(e, out / e.file, 1).backend._sess.get_session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_report_writes_table_plot_and_json(onnx_dir, tmp_path) -> None:
    from training.report import markdown, plot

    rows, _ = _report_rows(onnx_dir[0])
    md = markdown(
        rows,
        None,
        {
            "date": "d",
            "machine": "m",
            "threads": 1,
            "runs": 3,
            "warmup": 1,
            "load_before": "0",
            "load_after": "0",
            "val": "synthetic",
        },
    )
    assert "tiny_onnx_int8" in md and "Original (fp32)" in md
    assert "(m)" not in md and "memory" not in md  # held-out numbers carry no mark
    rows[0].trained_on_val = True  # a final model: its val mIoU is memory, and the table says so
    meta = {"date": "d", "machine": "m", "threads": 1, "runs": 3, "warmup": 1, "load_before": "0"}
    md = markdown(rows, None, {**meta, "load_after": "0", "val": "synthetic"})
    assert md.count(" (m)") == 3 and "is memory, not accuracy" in md  # table, pivot, footnote
    assert plot(rows, None, tmp_path / "p.png").stat().st_size > 1000
    json.dumps([r.__dict__ for r in rows])  # results.json must serialise


def test_compact_onnx_keeps_the_computation_and_shrinks_the_file(trained, onnx_dir, tmp_path) -> None:
    import shutil

    import onnx

    from training.quantize import compact_onnx

    src = onnx_dir[0] / "tiny_onnx_fp32.onnx"
    dst = tmp_path / "compact.onnx"
    shutil.copy(src, dst)
    info = compact_onnx(dst)
    assert info["bytes_after"] == dst.stat().st_size < info["bytes_before"] == src.stat().st_size
    a, b = onnx.load(str(src)), onnx.load(str(dst))
    assert [i.name for i in a.graph.input] == [i.name for i in b.graph.input]
    assert [o.name for o in a.graph.output] == [o.name for o in b.graph.output]
    assert [n.op_type for n in a.graph.node] == [n.op_type for n in b.graph.node]
    img = _fixed_input()
    fp32 = Manifest.load(onnx_dir[0]).get("tiny_onnx_fp32")
    seg_src, seg_dst = open_exported(fp32, src, 1), open_exported(make_entry_like(fp32, dst), dst, 1)
    np.testing.assert_array_equal(seg_src.scores(img), seg_dst.scores(img))
    # the shipped int8 files are compacted by the export itself
    assert "compacted" in Manifest.load(onnx_dir[0]).get("tiny_onnx_int8").provenance["export"]["quantization"]


def make_entry_like(entry: ModelEntry, path: Path) -> ModelEntry:
    """``entry`` for another file (its own name, hash and size)."""
    return ModelEntry.from_dict(
        {**entry.to_dict(), "file": path.name, "sha256": sha256_file(path), "size_bytes": path.stat().st_size}
    )


def test_a_model_grid_export_records_the_grid_its_file_gives(tmp_path) -> None:
    """DeepLabV3+ exported with --logits-grid model ends at a quarter of its input: the entry says so,
    and the runtime opens the file under that entry."""
    torch.manual_seed(0)
    model = create_model("deeplabv3plus_mobilenetv2", NUM_CLASSES, width_mult=0.35).eval()
    images, labels = synthetic_scenes(4, 64, 80, NUM_CLASSES, seed=0)
    settings = ExportSettings(
        formats=["onnx_fp32"], height=64, width=80, name_prefix="dl", class_variant=VARIANT, threads=1,
        logits_grid="model", min_agreement_float=0.0,
    )  # fmt: skip
    export_all(model, settings, tmp_path, images, images, labels, PROVENANCE)
    e = Manifest.load(tmp_path).get("dl_onnx_fp32")
    assert (e.output.height, e.output.width) == (16, 20)
    seg = open_exported(e, tmp_path / e.file, 1)
    assert seg.scores(images[0]).shape == (16, 20, NUM_CLASSES)
