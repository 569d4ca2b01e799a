"""seg-eval on a generated atWork-layout folder with a model whose answer is known."""

import json

import cv2
import numpy as np
import pytest
from colour_model import make_colour_model

from seg_perception.classes import load_classes
from seg_perception.metrics import paired_miou_bootstrap
from seg_perception.tools import eval as seg_eval


def _write(root, cls_name, idx, rgb, mask):
    (root / "objects" / "image" / cls_name).mkdir(parents=True, exist_ok=True)
    (root / "objects" / "semantic_labels" / cls_name).mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "objects" / "image" / cls_name / f"{cls_name}_{idx:03d}.png"), rgb[:, :, ::-1])
    cv2.imwrite(str(root / "objects" / "semantic_labels" / cls_name / f"{cls_name}_{idx:03d}.png"), mask)


def test_seg_eval_metrics_match_hand_computation(tmp_path, capsys):
    make_colour_model(tmp_path / "m")
    pal = load_classes("full").palette()
    root = tmp_path / "atwork"
    h, w = 480, 640
    # photo 1: left half m30 (7) in its palette colour, right half black; the mask also claims
    # the right quarter is m30 (a labelling error the model cannot reproduce)
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:, : w // 2] = pal[7]
    mask = np.full((h, w), 19, np.uint8)
    mask[:, : w // 2] = 7
    mask[:, 3 * w // 4 :] = 7
    _write(root, "m30", 1, rgb, mask)
    # photo 2: all motor (13), labelled right
    _write(root, "motor", 1, np.broadcast_to(pal[13], (h, w, 3)).copy(), np.full((h, w), 13, np.uint8))
    # pixels (in units of a quarter photo): m30 TP 2, FN 1; background TP 1, FP 1; motor TP 4
    iou = {"m30": 2 / 3, "background": 1 / 2, "motor": 1.0}
    rc = seg_eval.main(["--backend", "onnx", "--model-path", str(tmp_path / "m" / "colour.onnx"), "--root", str(root)])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["num_images"] == 2 and out["median_ms"] > 0
    for name, v in iou.items():
        assert out["per_class_iou"][name] == pytest.approx(100 * v, abs=0.01)
    assert out["miou"] == pytest.approx(100 * np.mean(list(iou.values())), abs=0.01)
    assert out["pixel_accuracy"] == pytest.approx(100 * 7 / 8, abs=0.01)
    assert out["per_class_iou"]["axis"] is None  # in neither truth nor prediction


def test_seg_eval_reports_missing_data(tmp_path, capsys):
    make_colour_model(tmp_path / "m")
    rc = seg_eval.main(
        ["--backend", "onnx", "--model-path", str(tmp_path / "m" / "colour.onnx"), "--root", str(tmp_path)]
    )
    assert rc == 2 and "not an atWork dataset root" in capsys.readouterr().err


def test_seg_eval_with_no_pixel_to_evaluate_prints_null_and_fails(tmp_path, capsys):
    """Masks that are all 'ignore' leave nothing to score: null (valid JSON), a message, exit 1 (was NaN, 0)."""
    make_colour_model(tmp_path / "m")
    root = tmp_path / "atwork"
    _write(root, "m30", 1, np.zeros((48, 64, 3), np.uint8), np.full((48, 64), 200, np.uint8))  # no class id
    rc = seg_eval.main(["--backend", "onnx", "--model-path", str(tmp_path / "m" / "colour.onnx"), "--root", str(root)])
    cap = capsys.readouterr()
    assert rc == 1
    out = json.loads(cap.out)  # strict JSON: no NaN
    assert out["miou"] is None and out["pixel_accuracy"] is None and out["pixels_evaluated"] == 0
    assert "no pixel was evaluated" in cap.err
    assert "NaN" not in cap.out


def test_seg_eval_says_when_the_model_was_trained_on_the_photos_it_scores(tmp_path, capsys, caplog):
    """A final model (manifest split record ``train_on_val``) scored on val: memory, flagged and logged."""
    import dataclasses

    pal = load_classes("full").palette()
    root = tmp_path / "atwork"
    _write(root, "motor", 1, np.broadcast_to(pal[13], (480, 640, 3)).copy(), np.full((480, 640), 13, np.uint8))
    args = ["--backend", "onnx", "--model-path", str(tmp_path / "m" / "colour.onnx"), "--root", str(root)]

    man = make_colour_model(tmp_path / "m")
    assert seg_eval.main(args) == 0
    assert json.loads(capsys.readouterr().out)["trained_on_val"] is False
    assert "memory" not in caplog.text

    # a model file with its entry beside it (sidecar), whose split record says it learnt the val photos
    entry = dataclasses.replace(
        man.get("colour"), provenance={"split": {"kind": "run", "folds": 5, "val_fold": 4, "train_on_val": True}}
    )
    (tmp_path / "m" / "colour.onnx.json").write_text(json.dumps(entry.to_dict()))
    assert seg_eval.main(args) == 0
    assert json.loads(capsys.readouterr().out)["trained_on_val"] is True
    assert "this mIoU is memory" in caplog.text


def _cm(tp_obj: int, fn_obj: int, tp_bg: int = 10) -> np.ndarray:
    """2-class confusion matrix (rows truth, cols prediction): object pixels found / missed as background."""
    return np.array([[tp_bg, 0], [fn_obj, tp_obj]], np.int64)


def test_paired_bootstrap_known_answers():
    a = np.stack([_cm(5, 5)] * 6)
    same = paired_miou_bootstrap(a, a.copy(), resamples=200)
    assert same["diff"] == 0 and same["ci95_low"] == same["ci95_high"] == 0 and same["p_b_not_better"] == 1.0
    # B finds more of the object on every photo: better in every draw
    better = paired_miou_bootstrap(a, np.stack([_cm(8, 2)] * 6), resamples=200)
    # summed over the 6 photos: A bg 60/90, object 30/60; B bg 60/72, object 48/60
    want = (60 / 72 + 48 / 60) / 2 - (60 / 90 + 30 / 60) / 2
    assert better["diff"] == pytest.approx(want) and better["p_b_not_better"] == 0.0
    assert better["ci95_low"] == pytest.approx(want) == better["ci95_high"]  # identical photos: no spread
    # B better on half the photos, worse on the other half by as much: a difference of 0, unsure either way
    mixed = paired_miou_bootstrap(a, np.stack([_cm(8, 2)] * 3 + [_cm(2, 8)] * 3), resamples=500)
    assert abs(mixed["diff"]) < 1e-9 and mixed["ci95_low"] < 0 < mixed["ci95_high"]
    assert 0.25 < mixed["p_b_not_better"] < 0.85  # (ties, draws with as many of each, count as not better)
    with pytest.raises(ValueError, match="equal"):
        paired_miou_bootstrap(a, a[:3])
    with pytest.raises(ValueError, match="resamples"):
        paired_miou_bootstrap(a, a, resamples=0)


def test_seg_eval_compares_two_models_on_the_same_photos(tmp_path, capsys):
    make_colour_model(tmp_path / "m")
    make_colour_model(tmp_path / "coarse", down=16)  # a coarser grid: the same colours, rougher edges
    pal = load_classes("full").palette()
    root = tmp_path / "atwork"
    for i, (y, x) in enumerate([(37, 53), (101, 211), (260, 390)], start=1):
        rgb = np.zeros((480, 640, 3), np.uint8)
        mask = np.full((480, 640), 19, np.uint8)
        rgb[y : y + 90, x : x + 130], mask[y : y + 90, x : x + 130] = pal[13], 13
        _write(root, "motor", i, rgb, mask)
    fine, coarse = str(tmp_path / "m" / "colour.onnx"), str(tmp_path / "coarse" / "colour.onnx")
    args = ["--backend", "onnx", "--model-path", fine, "--root", str(root), "--resamples", "200"]
    assert seg_eval.main([*args, "--compare-model-path", fine]) == 0
    c = json.loads(capsys.readouterr().out)["comparison"]
    assert c["miou_diff"] == 0 and c["miou_diff_ci95"] == [0, 0] and c["p_not_better"] == 1.0
    assert seg_eval.main([*args, "--compare-model-path", coarse]) == 0
    out = json.loads(capsys.readouterr().out)
    c = out["comparison"]
    assert c["model_file"] == "colour.onnx" and c["resamples"] == 200
    assert c["miou"] < out["miou"] and c["miou_diff"] == pytest.approx(c["miou"] - out["miou"], abs=0.02)
    assert c["miou_diff_ci95"][0] <= c["miou_diff"] <= c["miou_diff_ci95"][1] < 0 and c["p_not_better"] == 1.0


def test_seg_eval_compares_a_model_with_and_without_flip_averaging(tmp_path, capsys):
    make_colour_model(tmp_path / "m")
    pal = load_classes("full").palette()
    root = tmp_path / "atwork"
    for i, (y, x) in enumerate([(37, 53), (260, 390)], start=1):
        rgb = np.zeros((480, 640, 3), np.uint8)
        mask = np.full((480, 640), 19, np.uint8)
        rgb[y : y + 90, x : x + 130], mask[y : y + 90, x : x + 130] = pal[13], 13
        _write(root, "motor", i, rgb, mask)
    model = str(tmp_path / "m" / "colour.onnx")
    args = ["--backend", "onnx", "--model-path", model, "--root", str(root), "--resamples", "50"]
    assert seg_eval.main([*args, "--flip-average", "off", "--compare-flip-average", "on"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["flip_average"] is False and out["comparison"]["flip_average"] is True
    # the colour model labels each pixel by its colour alone: its mirror image says the same
    assert out["comparison"]["miou"] == out["miou"] and out["comparison"]["miou_diff"] == 0
    assert seg_eval.main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["flip_average"] is False and "comparison" not in out  # auto: off for a generic backend
