"""seg-bench in process (no DDS): a file given by --model-path is the one timed."""

from pathlib import Path

import pytest

from seg_perception.demo_frames import render_frame
from seg_perception.tools.bench import bench_in_process, main

MODELS = Path(__file__).resolve().parents[1] / "models"


def test_model_path_times_that_file_through_the_generic_backend():
    f = MODELS / "deeplabv3plus_mnv2_tflite_int8.tflite"
    row = bench_in_process("tflite", render_frame(0)[0], runs=2, threads=1, model_path=str(f))
    assert row["size_mb"] == round(f.stat().st_size / 1e6, 3)
    assert row["input"] == "320x256" and row["backend_ms"] > 0 and row["pipeline_ms"] > 0
    assert row["flip_average"] is False  # auto: off for a generic backend
    row = bench_in_process("tflite", render_frame(0)[0], runs=2, threads=1, model_path=str(f), flip_average="on")
    assert row["flip_average"] is True


def test_model_path_with_several_backends_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--backends", "tflite_int8,espnet", "--model-path", "x.tflite", "--no-node", "--reference", ""])
    assert e.value.code == 2 and "--model-path needs exactly one backend" in capsys.readouterr().err
