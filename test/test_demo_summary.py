"""seg-demo's last lines: a short summary in words (the JSON goes to summary.json)."""

from pathlib import Path

from seg_perception.tools.demo import plain_summary

SUMMARY = {
    "backend": "tflite_int8",
    "frames_sent": 60,
    "frames_processed": 58,
    "frames_dropped": 2,
    "node": {"frames_rejected": 0, "inference_ms_p50": "2.01"},
    "latency_ms": {"p50": 9.14, "p95": 12.3},
    "report": "out/demo/report.png",
    "accuracy": {"miou": 0.2612, "frames_evaluated": 58},
}


def test_rendered_summary_says_what_the_number_means():
    text = plain_summary(SUMMARY, Path("out/demo"), rendered=True)
    lines = text.splitlines()
    assert len(lines) <= 8
    assert "60 sent, 58 with labels, 2 without" in text
    assert "p50 9.1 ms, p95 12.3 ms" in text and "inference alone p50 2.01 ms" in text
    assert "mIoU 26.1 % on 58 frames" in text and "look-alikes the models never saw" in text
    assert "not the model's accuracy" in text
    assert "bash scripts/demo.sh --dataset ../shared/datasets/atwork" in text
    assert lines[-1] == "  full summary: out/demo/summary.json; report: out/demo/report.png"


def test_dataset_summary_is_the_models_accuracy():
    text = plain_summary({**SUMMARY, "accuracy": {"miou": 0.827, "frames_evaluated": 90}}, Path("o"), rendered=False)
    assert "validation photos" in text and "mIoU 82.7 % on 90 frames" in text and "look-alikes" not in text


def test_summary_without_latency_or_ground_truth():
    text = plain_summary({"backend": "espnet", "frames_sent": 3}, Path("o"), rendered=True)
    assert "p50 n/a" in text and "no ground truth" in text


def test_rendered_depth_adds_one_line_on_the_3d_boxes():
    geometry = {
        "depth_frames_published": 60,
        "accuracy_3d": {
            "objects_true": 180,
            "matched": 41,
            "position_error_mm": {"n": 41, "median": 3.04, "p90": 20.0, "max": 40.0},
            "dimension_error_rel": {"n": 123, "median": 0.0523, "p90": 0.6, "max": 1.0},
        },
    }
    text = plain_summary({**SUMMARY, "geometry": geometry}, Path("out/demo"), rendered=True)
    lines = text.splitlines()
    assert len(lines) <= 8 and lines[-1].startswith("  full summary:")
    assert "  3D boxes: 41 of 180 rendered objects found, centre error median 3.0 mm, size error median 5.2 %" in lines
    none = {
        "objects_true": 5,
        "matched": 0,
        "position_error_mm": {"n": 0, "median": None},
        "dimension_error_rel": {"n": 0, "median": None},
    }
    text = plain_summary({**SUMMARY, "geometry": {"accuracy_3d": none}}, Path("o"), rendered=True)
    assert "0 of 5 rendered objects found, centre error median n/a, size error median n/a" in text
    assert "3D boxes" not in plain_summary({**SUMMARY, "geometry": {"marker_arrays": 3}}, Path("o"), rendered=True)


def test_dataset_summary_of_a_final_model_says_its_number_is_memory():
    acc = {**SUMMARY, "accuracy": {"miou": 0.66, "frames_evaluated": 106}}
    final = plain_summary(acc, Path("o"), rendered=False, final_model=True)
    assert "mIoU 66.0 % on 106 frames" in final and "trained on too: memory" in final
    assert "the model's accuracy on a real stream" not in final
    unknown = plain_summary(acc, Path("o"), rendered=False, final_model=None)
    assert "held out only if it did not train on them" in unknown and "accuracy on a real stream" not in unknown


def test_demo_reads_whether_the_backend_model_learnt_the_validation_photos(tmp_path):
    import json
    import shutil
    from argparse import Namespace

    from seg_perception.backends.base import BACKENDS
    from seg_perception.manifest import Manifest
    from seg_perception.tools.demo import _final_model

    manifest = Manifest.load()
    entry = manifest.get(BACKENDS["tflite_int8"].entry)
    shipped = entry.trained_on_val
    assert _final_model(Namespace(backend="tflite_int8", model_path="")) is shipped
    assert _final_model(Namespace(backend="onnx", model_path="")) is None  # needs a file: nothing to read
    # a model_path: by manifest hash, by its <file>.json sidecar, or unknown
    copy = tmp_path / "twin.tflite"
    shutil.copyfile(manifest.path_of(entry), copy)
    assert _final_model(Namespace(backend="tflite_int8", model_path=str(copy))) is shipped
    assert _final_model(Namespace(backend="tflite", model_path=str(copy))) is None  # a file of unknown training
    for final in (True, False):
        side = entry.to_dict()
        side["provenance"] = {**side["provenance"], "split": {"kind": "run", "train_on_val": final}}
        (tmp_path / "twin.tflite.json").write_text(json.dumps(side))
        assert _final_model(Namespace(backend="tflite", model_path=str(copy))) is final
    assert _final_model(Namespace(backend="tflite", model_path=str(tmp_path / "missing.tflite"))) is None
