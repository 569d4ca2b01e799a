"""seg-demo's last lines: a short summary in words (the JSON goes to summary.json)."""
from pathlib import Path

from seg_perception.tools.demo import plain_summary

SUMMARY = {
    "backend": "tflite_int8", "frames_sent": 60, "frames_processed": 58, "frames_dropped": 2,
    "node": {"frames_rejected": 0, "inference_ms_p50": "2.01"},
    "latency_ms": {"p50": 9.14, "p95": 12.3}, "report": "out/demo/report.png",
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
