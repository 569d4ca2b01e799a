"""Tests for training/data: reader, split, synthetic generator, augmentation.

All tests build a tiny fake dataset in the atWork layout under tmp_path (solid-colour shapes
painted as objects). Only ``test_real_dataset_if_present`` reads ../shared, and skips when it
is absent. Nothing from the real dataset is stored in the repository.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from fake_atwork import JPEG_444, make_fake_atwork

from seg_perception.classes import load_classes
from training.data.atwork import (
    AtWorkSegmentation,
    Sample,
    SplitSpec,
    SyntheticSegmentation,
    list_backgrounds,
    list_samples,
    load_runs,
    mix_datasets,
    photo_number,
    split_samples,
)
from training.data.augment import build_train_transform, build_val_transform
from training.data.synth import SceneGenerator, SynthConfig, generate, load_config, main

REPO = Path(__file__).resolve().parents[2]
FULL = load_classes("full")
CLASSES = ["f20_20_B", "axis", "motor"]
OBJ_RGB = {"f20_20_B": (220, 40, 40), "axis": (40, 200, 40), "motor": (40, 40, 220)}
BG_RGB = [(200, 200, 200), (70, 70, 70), (200, 190, 120)]  # scene backgrounds: solid colours
PHOTO_H, PHOTO_W = 120, 160
N_PHOTOS = 5


def _write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), JPEG_444)


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes x 5 photos (plus axis_006 without mask), backgrounds for both splits."""
    root = make_fake_atwork(
        tmp_path_factory.mktemp("atwork"), CLASSES, N_PHOTOS, (PHOTO_H, PHOTO_W), seed=1234, colours=OBJ_RGB
    )
    _write_rgb(root / "objects" / "image" / "axis" / "axis_006.jpg", np.zeros((PHOTO_H, PHOTO_W, 3), np.uint8))
    for kind, split, names in [
        ("backgrounds", "training", ["background_0001.jpg", "background_0002. png", "background_0003.png"]),
        ("backgrounds", "validation", ["background_0101.jpeg", "background_0102.jpg"]),
        ("white_backgrounds", "training", ["white_background_000.jpg", "white_background_001.jpg"]),
        ("white_backgrounds", "validation", ["white_background_100.jpg"]),
    ]:
        folder = root / kind / split
        folder.mkdir(parents=True, exist_ok=True)
        for j, fname in enumerate(names):
            img = np.zeros((150, 200, 3), np.uint8)
            img[...] = BG_RGB[j % len(BG_RGB)]
            if fname.endswith("png"):  # one RGBA png, like the real set
                rgba = np.concatenate([img[..., ::-1], np.full((150, 200, 1), 255, np.uint8)], axis=2)
                ok, buf = cv2.imencode(".png", rgba)  # cv2.imwrite rejects the ". png" suffix
                assert ok
                (folder / fname).write_bytes(buf.tobytes())
            else:
                _write_rgb(folder / fname, img)
    (root / "README.md").write_text("fake atWork layout for tests\n")
    return root


def _small_cfg(**kw) -> SynthConfig:
    base = dict(
        height=96,
        width=128,
        min_objects=1,
        max_objects=4,
        min_object_area=0.01,
        max_object_area=0.05,
        min_distance=-8,
        placement_attempts=30,
    )
    base.update(kw)
    return SynthConfig.from_dict(base)


def _nearest(image: np.ndarray, colours: np.ndarray) -> np.ndarray:
    d = ((image[..., None, :].astype(np.int32) - colours[None, None].astype(np.int32)) ** 2).sum(-1)
    return d.argmin(-1)


# -- reader ----------------------------------------------------------------------------


def test_list_samples_skips_photo_without_mask(fake_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        samples = list_samples(fake_root)
    assert len(samples) == len(CLASSES) * N_PHOTOS
    assert "axis_006" not in {s.stem for s in samples}
    assert any("axis_006" in r.getMessage() for r in caplog.records)
    assert {s.class_name for s in samples} == set(CLASSES)
    assert all(s.label_path.is_file() and s.image_path.parent.name == s.class_name for s in samples)
    assert [s.stem for s in list_samples(fake_root, classes=["motor"])] == [f"motor_{i:03d}" for i in range(1, 6)]


def test_list_backgrounds(fake_root: Path) -> None:
    tr = list_backgrounds(fake_root, "train")
    va = list_backgrounds(fake_root, "validation")
    assert len(tr["backgrounds"]) == 3 and len(tr["white_backgrounds"]) == 2  # incl. "background_0002. png"
    assert len(va["backgrounds"]) == 2 and len(va["white_backgrounds"]) == 1
    assert all("validation" in p.parts for ps in va.values() for p in ps)
    with pytest.raises(ValueError):
        list_backgrounds(fake_root, "test")


@pytest.mark.parametrize("variant", ["full", "size_invariant", "similar_shapes", "binary"])
def test_dataset_remaps_and_normalises(fake_root: Path, variant: str) -> None:
    samples = list_samples(fake_root)
    cs = load_classes(variant)
    ds = AtWorkSegmentation(samples, variant=variant)
    assert len(ds) == len(samples) and ds.num_classes == cs.num_classes
    for i in (0, 6, 12):
        image, label = ds[i]
        s = samples[i]
        expected = int(cs.full_to_variant[FULL.names.index(s.class_name)])
        assert image.dtype == torch.float32 and tuple(image.shape) == (3, PHOTO_H, PHOTO_W)
        assert label.dtype == torch.int64 and tuple(label.shape) == (PHOTO_H, PHOTO_W)
        assert set(label.unique().tolist()) == {0, expected}  # 19 -> 0
        assert -1.0 <= float(image.min()) and float(image.max()) <= 1.0
        # RGB order: inside the object the class's dominant channel is the largest
        px = image[:, label == expected].mean(1) * 127.5 + 127.5
        assert np.allclose(px.numpy(), OBJ_RGB[s.class_name], atol=6)


def test_dataset_size_and_transform(fake_root: Path) -> None:
    samples = list_samples(fake_root)
    ds = AtWorkSegmentation(samples, size=(60, 80))
    image, label = ds[0]
    assert tuple(image.shape) == (3, 60, 80) and tuple(label.shape) == (60, 80)
    ds = AtWorkSegmentation(samples, variant="binary", transform=build_train_transform(48, 64, {"seed": 0}))
    image, label = ds[1]
    assert tuple(image.shape) == (3, 48, 64)
    assert set(label.unique().tolist()) <= {0, 1, 255}


# -- split -----------------------------------------------------------------------------


def _fake_samples(n_per_class: dict[str, int]) -> list[Sample]:
    return [
        Sample(Path(f"/x/{c}/{c}_{i:03d}.jpg"), Path(f"/y/{c}/{c}_{i:03d}.png"), c)
        for c, n in n_per_class.items()
        for i in range(1, n + 1)
    ]


def test_random_split_deterministic_disjoint_stratified() -> None:
    samples = _fake_samples({"axis": 25, "motor": 26, "m20": 26, "r20": 2})
    spec = SplitSpec(kind="random", val_fraction=0.2, seed=0)
    train, val = split_samples(samples, spec)
    shuffled = list(samples)
    random.Random(7).shuffle(shuffled)
    assert split_samples(shuffled, spec) == (train, val)  # independent of input order
    assert not {s.stem for s in train} & {s.stem for s in val}
    assert len(train) + len(val) == len(samples)
    per_class = {c: sum(s.class_name == c for s in val) for c in ("axis", "motor", "m20", "r20")}
    assert per_class == {"axis": 5, "motor": 5, "m20": 5, "r20": 1}
    others = [split_samples(samples, SplitSpec(kind="random", seed=k))[1] for k in (1, 2)]
    assert any({s.stem for s in o} != {s.stem for s in val} for o in others)
    assert split_samples(samples, SplitSpec(kind="random", val_fraction=0.0))[1] == []


def _run_of(sample: Sample, runs: dict[str, list[int]]) -> int:
    return sum(start <= photo_number(sample) for start in runs[sample.class_name])


def test_run_split_holds_out_whole_capture_runs() -> None:
    runs = load_runs()
    assert set(runs) == set(FULL.names[1:])  # every object class has its runs
    assert all(starts[0] == 1 for starts in runs.values())
    samples = _fake_samples({c: 26 for c in runs})
    train, val = split_samples(samples)  # the default: by capture run, last fold
    shuffled = list(samples)
    random.Random(3).shuffle(shuffled)
    assert split_samples(shuffled) == (train, val)
    for c in runs:
        train_runs = {_run_of(s, runs) for s in train if s.class_name == c}
        val_runs = {_run_of(s, runs) for s in val if s.class_name == c}
        assert val_runs and train_runs and not train_runs & val_runs, c
        # validation is the latest runs: every val photo comes after every train photo
        assert min(photo_number(s) for s in val if s.class_name == c) > max(
            photo_number(s) for s in train if s.class_name == c
        )
    assert 0.15 < len(val) / len(samples) < 0.3


def test_run_split_folds_partition_the_photos() -> None:
    runs = load_runs()
    samples = _fake_samples({c: 26 for c in runs})
    seen: list[str] = []
    for k in range(5):
        train, val = split_samples(samples, SplitSpec(folds=5, val_fold=k))
        assert len(train) + len(val) == len(samples)
        seen += [s.stem for s in val]
    assert sorted(seen) == sorted(s.stem for s in samples)  # each photo validates exactly once
    assert split_samples(samples, SplitSpec(val_fold=-1)) == split_samples(samples, SplitSpec(val_fold=4))


def test_run_split_known_answer_and_fallback() -> None:
    samples = _fake_samples({"axis": 10})
    runs = {"axis": [1, 4, 9]}  # runs 1-3, 4-8, 9-10: middles at 1.5/10, 5.5/10, 9/10 of the class
    train, val = split_samples(samples, SplitSpec(folds=2), runs=runs)
    assert [photo_number(s) for s in val] == [4, 5, 6, 7, 8, 9, 10]
    train, val = split_samples(samples, SplitSpec(folds=5), runs=runs)
    assert [photo_number(s) for s in val] == [9, 10]
    # photos covering less than half of the annotated runs (a partial copy): split by photo number
    train, val = split_samples(_fake_samples({"axis": 5}), SplitSpec(folds=5), runs={"axis": [1, 4, 6, 9, 20]})
    assert [photo_number(s) for s in val] == [5]


def test_split_spec_validation_and_old_configs() -> None:
    with pytest.raises(ValueError, match="run"):
        SplitSpec(kind="shuffled")
    with pytest.raises(ValueError, match="val_fold"):
        SplitSpec(folds=5, val_fold=5)
    assert SplitSpec.from_mapping({"val_fraction": 0.2, "split_seed": 0}).kind == "run"  # pre-run-split config
    assert SplitSpec.from_mapping({"split": "random", "split_seed": 3}).describe() == {
        "kind": "random",
        "val_fraction": 0.2,
        "seed": 3,
    }


def test_runs_file_errors_name_the_class(tmp_path: Path) -> None:
    bad = tmp_path / "runs.yaml"
    bad.write_text("axis: [1, 9, 4]\n")
    with pytest.raises(ValueError, match="axis"):
        load_runs(bad)


def test_split_of_fake_dataset(fake_root: Path) -> None:
    train, val = split_samples(list_samples(fake_root))
    assert len(val) == len(CLASSES) and len(train) == len(CLASSES) * (N_PHOTOS - 1)
    assert {s.class_name for s in val} == set(CLASSES)


# -- generator -------------------------------------------------------------------------


def test_scene_labels_match_pasted_masks_exactly(fake_root: Path) -> None:
    cfg = _small_cfg(
        color_jitter_prob=0.0,
        blur_prob=0.0,
        soft_edges=False,
        min_distance=-40,
        min_visible_fraction=0.3,
        max_occupied_fraction=0.8,
        max_truncation=0.2,
    )
    gen = SceneGenerator(cfg, fake_root, "train", seed=5)
    colours = np.array([OBJ_RGB[c] for c in CLASSES] + BG_RGB)
    class_of_colour = [FULL.names.index(c) for c in CLASSES] + [0] * len(BG_RGB)
    occluded = 0
    for index in range(12):
        scene = gen.render(index)
        # recompose the label from the pasted masks, in paste order
        again = np.zeros_like(scene.label)
        for p in scene.objects:
            h, w = p.mask.shape
            ys, xs = np.nonzero(p.mask)
            ys, xs = ys + p.y0, xs + p.x0
            keep = (ys >= 0) & (ys < cfg.height) & (xs >= 0) & (xs < cfg.width)
            again[ys[keep], xs[keep]] = p.cutout.class_id
            occluded += p.visible < p.area
        np.testing.assert_array_equal(again, scene.label)
        # the image shows exactly what the label says (solid-colour objects on solid backgrounds)
        shown = np.asarray(class_of_colour)[_nearest(scene.image, colours)]
        np.testing.assert_array_equal(shown, scene.label)
        assert cfg.min_objects <= len(scene.objects) <= cfg.max_objects
        for p in scene.objects:
            assert p.visible >= cfg.min_visible_fraction * p.area
    assert occluded > 0  # the test config does produce occlusion


def test_soft_edges_still_consistent(fake_root: Path) -> None:
    gen = SceneGenerator(_small_cfg(color_jitter_prob=0.0, blur_prob=0.0), fake_root, "train", seed=2)
    colours = np.array([OBJ_RGB[c] for c in CLASSES] + BG_RGB)
    class_of_colour = np.asarray([FULL.names.index(c) for c in CLASSES] + [0] * len(BG_RGB))
    agree = [np.mean(class_of_colour[_nearest(s.image, colours)] == s.label) for s in map(gen.render, range(6))]
    assert min(agree) > 0.97


def test_min_distance_and_occupancy(fake_root: Path) -> None:
    cfg = _small_cfg(min_distance=6, max_occupied_fraction=0.15, max_objects=6)
    gen = SceneGenerator(cfg, fake_root, "train", seed=9)
    for index in range(8):
        scene = gen.render(index)
        assert (scene.label > 0).mean() <= 0.15 + 1e-9
        boxes = [p.box for p in scene.objects]
        for i in range(len(boxes)):
            for j in range(i):
                a, b = boxes[i], boxes[j]
                assert max(b[0] - a[2], a[0] - b[2], b[1] - a[3], a[1] - b[3]) >= 6


def _read_outputs(out: Path) -> list[tuple[np.ndarray, dict]]:
    res = []
    for lp in sorted((out / "labels").glob("*.png")):
        label = cv2.imread(str(lp), cv2.IMREAD_UNCHANGED)
        with open(out / "boxes" / f"{lp.stem}.json", encoding="utf-8") as f:
            res.append((label, json.load(f)))
    return res


def test_generate_outputs_and_boxes_consistent(fake_root: Path, tmp_path: Path) -> None:
    cfg = _small_cfg()
    stats = generate(
        cfg, fake_root, tmp_path / "out", num_images=10, split="train", seed=0, preview=True, progress=False
    )
    out = tmp_path / "out"
    assert stats["num_images"] == 10 and stats["images_per_s"] > 0
    for sub, ext in [("images", "jpg"), ("labels", "png"), ("boxes", "json"), ("preview", "png")]:
        assert len(list((out / sub).glob(f"*.{ext}"))) == 10
    resolved = load_config(None, None)  # defaults load
    assert resolved.height == 480
    import yaml

    meta = yaml.safe_load((out / "generator_config.yaml").read_text())
    assert meta["seed"] == 0 and meta["split"] == "train" and meta["config"]["max_objects"] == cfg.max_objects
    assert json.loads((out / "meta.json").read_text())["background_id"] == 0
    train_stems = {s.stem for s in split_samples(list_samples(fake_root))[0]}
    for label, ann in _read_outputs(out):
        assert label.shape == (cfg.height, cfg.width) and label.dtype == np.uint8
        assert set(np.unique(label).tolist()) <= {0} | {FULL.names.index(c) for c in CLASSES}
        objs = ann["objects"]
        assert cfg.min_objects <= len(objs) <= cfg.max_objects
        covered = np.zeros(label.shape, bool)
        for k in {o["class_id"] for o in objs} | set(np.unique(label).tolist()) - {0}:
            assert sum(o["area"] for o in objs if o["class_id"] == k) == int((label == k).sum())
        for o in objs:
            x, y, w, h = o["bbox"]
            assert 0 <= x and 0 <= y and x + w <= cfg.width and y + h <= cfg.height and w > 0 and h > 0
            inside = label[y : y + h, x : x + w] == o["class_id"]
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()  # tight
            assert o["class_name"] == FULL.names[o["class_id"]]
            assert o["source_photo"] in train_stems
            covered[y : y + h, x : x + w] |= inside
        np.testing.assert_array_equal(covered, label > 0)
        assert ann["background"].split("/")[1] == "training"


def test_generate_reproducible_and_parallel_identical(fake_root: Path, tmp_path: Path) -> None:
    cfg = _small_cfg()
    for name, seed, workers in [("a", 3, 1), ("b", 3, 2), ("c", 4, 1)]:
        generate(
            cfg, fake_root, tmp_path / name, num_images=6, split="train", seed=seed, workers=workers, progress=False
        )
    labels = {n: [p.read_bytes() for p in sorted((tmp_path / n / "labels").glob("*.png"))] for n in "abc"}
    assert labels["a"] == labels["b"]
    assert [p.read_bytes() for p in sorted((tmp_path / "a" / "boxes").glob("*.json"))] == [
        p.read_bytes() for p in sorted((tmp_path / "b" / "boxes").glob("*.json"))
    ]
    assert labels["a"] != labels["c"]
    # a chunk made separately (start index 4) is the same as images 4.. of the full run
    generate(cfg, fake_root, tmp_path / "d", num_images=2, split="train", seed=3, start_index=4, progress=False)
    assert [p.read_bytes() for p in sorted((tmp_path / "d" / "labels").glob("*.png"))] == labels["a"][4:]


def test_val_scenes_use_only_val_photos_and_backgrounds(fake_root: Path, tmp_path: Path) -> None:
    train, val = split_samples(list_samples(fake_root))
    val_stems, train_stems = {s.stem for s in val}, {s.stem for s in train}
    rc = main(
        [
            "--root",
            str(fake_root),
            "--out",
            str(tmp_path / "v"),
            "--num-images",
            "8",
            "--split",
            "val",
            "--seed",
            "1",
            "--height",
            "96",
            "--width",
            "128",
            "--min-object-area",
            "0.01",
            "--max-object-area",
            "0.05",
            "--max-objects",
            "3",
            "--no-rotation",
        ]
    )
    assert rc == 0
    sources = set()
    for _, ann in _read_outputs(tmp_path / "v"):
        assert ann["split"] == "val" and ann["background"].split("/")[1] == "validation"
        assert len(ann["objects"]) <= 3
        for o in ann["objects"]:
            sources.add(o["source_photo"])
            assert o["rotation"] == 0.0
            assert o["source"].startswith(f"objects/image/{o['class_name']}/")
    assert sources and sources <= val_stems and not sources & train_stems


def test_synthetic_dataset_and_mix(fake_root: Path, tmp_path: Path) -> None:
    generate(_small_cfg(), fake_root, tmp_path / "s", num_images=4, split="train", seed=0, progress=False)
    syn = SyntheticSegmentation(tmp_path / "s", variant="binary")
    assert len(syn) == 4
    image, label = syn[0]
    assert tuple(image.shape) == (3, 96, 128) and image.dtype == torch.float32
    assert set(label.unique().tolist()) <= {0, 1} and label.dtype == torch.int64
    real = AtWorkSegmentation(list_samples(fake_root), variant="binary", size=(96, 128))
    mixed = mix_datasets([real, syn], repeats=[2, 1])
    assert len(mixed) == 2 * len(real) + len(syn)
    assert tuple(mixed[len(mixed) - 1][0].shape) == (3, 96, 128)
    with pytest.raises(ValueError):
        mix_datasets([real, SyntheticSegmentation(tmp_path / "s", variant="full")])


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError):
        SynthConfig.from_dict({"max_objects": 0})
    with pytest.raises(ValueError):
        SynthConfig.from_dict({"no_such_key": 1})
    cfg = load_config(REPO / "training" / "configs" / "synth.yaml", {"max_objects": 5})
    assert cfg.max_objects == 5 and cfg.height == 480 and cfg.width == 640


# -- augmentation ----------------------------------------------------------------------


def _colour_coded(rng: np.random.Generator, h: int = 120, w: int = 160) -> tuple[np.ndarray, np.ndarray, dict]:
    """An image whose label is a function of its colour."""
    table = {0: (200, 200, 200), 1: (220, 40, 40), 11: (40, 200, 40), 13: (40, 40, 220)}
    label = np.zeros((h, w), np.uint8)
    for cid in (1, 11, 13):
        for _ in range(2):
            cy, cx = int(rng.integers(10, h - 10)), int(rng.integers(10, w - 10))
            cv2.ellipse(
                label,
                (cx, cy),
                (int(rng.integers(8, 30)), int(rng.integers(8, 30))),
                float(rng.uniform(0, 180)),
                0,
                360,
                cid,
                -1,
            )
    image = np.zeros((h, w, 3), np.uint8)
    for cid, c in table.items():
        image[label == cid] = c
    return image, label, table


def test_augmentation_keeps_image_and_label_aligned() -> None:
    rng = np.random.default_rng(0)
    geometric_only = {
        "color_prob": 0.0,
        "blur_prob": 0.0,
        "noise_prob": 0.0,
        "jpeg_prob": 0.0,
        "affine_prob": 1.0,
        "rotate": 30.0,
        "affine_scale": (0.6, 1.2),
        "vflip_prob": 0.5,
    }
    saw_ignore = False
    for seed in range(8):
        image, label, table = _colour_coded(rng)
        t = build_train_transform(64, 96, dict(geometric_only, seed=seed))
        out = t(image=image, mask=label)
        img, lab = out["image"], out["mask"]
        assert img.shape == (64, 96, 3) and lab.shape == (64, 96) and lab.dtype == np.uint8
        assert set(np.unique(lab).tolist()) <= set(table) | {255}
        # interior pixels (3x3 neighbourhood of one label): the colour says the same class
        ids = np.array(sorted(table) + [255])
        colours = np.array([table[i] for i in sorted(table)] + [(0, 0, 0)])  # 255 = black fill
        k3 = np.ones((3, 3), np.uint8)
        uniform = cv2.erode(lab, k3) == cv2.dilate(lab, k3)
        shown = ids[_nearest(img, colours)]
        np.testing.assert_array_equal(shown[uniform], lab[uniform])
        saw_ignore |= bool((lab == 255).any())
    assert saw_ignore  # rotation/zoom-out padding is labelled ignore


def test_augmentation_full_pipeline_label_values() -> None:
    rng = np.random.default_rng(1)
    t = build_train_transform(48, 64, {"seed": 3})
    for _ in range(10):
        image, label, table = _colour_coded(rng)
        out = t(image=image, mask=label)
        assert out["image"].shape == (48, 64, 3) and out["image"].dtype == np.uint8
        assert set(np.unique(out["mask"]).tolist()) <= set(table) | {255}
    image, label, _ = _colour_coded(rng)
    v = build_val_transform(60, 80)
    a, b = v(image=image, mask=label), v(image=image, mask=label)
    np.testing.assert_array_equal(a["mask"], b["mask"])
    assert a["mask"].shape == (60, 80) and set(np.unique(a["mask"]).tolist()) <= set(np.unique(label).tolist())
    with pytest.raises(ValueError):
        build_train_transform(48, 64, {"no_such_key": 1})


def test_dataloader_workers_get_different_augmentations(fake_root: Path) -> None:
    """A Compose draws its RNG at construction; workers must not all replay the same stream."""
    from torch.utils.data import DataLoader

    sample = list_samples(fake_root)[:1]
    ds = AtWorkSegmentation(sample * 4, transform=build_train_transform(48, 64, {"seed": 0}))
    labels = [y for _, y in DataLoader(ds, batch_size=1, num_workers=2)]  # worker 0: items 0, 2
    assert not torch.equal(labels[0], labels[1]) or not torch.equal(labels[2], labels[3])


# -- real data (optional) --------------------------------------------------------------

REAL_ROOT = REPO.parent / "shared" / "datasets" / "atwork"


@pytest.mark.skipif(not (REAL_ROOT / "objects" / "image").is_dir(), reason="real atWork dataset not present")
def test_real_dataset_if_present() -> None:
    samples = list_samples(REAL_ROOT)
    assert {s.class_name for s in samples} == set(FULL.names[1:])
    train, val = split_samples(samples)
    assert len(train) + len(val) == len(samples) and len(val) >= len(FULL.names) - 1
    assert all(list_backgrounds(REAL_ROOT, sp)["backgrounds"] for sp in ("train", "val"))
