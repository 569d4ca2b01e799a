"""Metrics against scikit-learn, known answers, and the losses' basic properties."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import f1_score, jaccard_score

from training import metrics as M
from training.losses import (
    DistillationLoss,
    SegmentationLoss,
    class_weights_from_counts,
    compute_class_weights,
    distillation_kl,
    soft_dice_loss,
)

REPO = Path(__file__).resolve().parents[2]
IGNORE = 255


def _random_maps(rng: np.random.Generator, n: int, c: int, h: int = 17, w: int = 23, ignore_frac: float = 0.15):
    target = rng.integers(0, c, size=(n, h, w))
    pred = np.where(rng.random((n, h, w)) < 0.6, target, rng.integers(0, c, size=(n, h, w)))
    target = np.where(rng.random((n, h, w)) < ignore_frac, IGNORE, target)
    return pred, target


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_and_scores_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    c = 6
    pred, target = _random_maps(rng, 5, c)
    # make one class absent from both GT and prediction, one only predicted
    pred = np.where(pred == 4, 0, pred)
    target = np.where(target == 4, 0, target)
    target = np.where(target == 5, 1, target)

    acc = M.ConfusionMatrix(c)
    for p, t in zip(pred, target, strict=False):  # accumulate image by image
        acc.update(p, t)
    keep = target.ravel() != IGNORE
    t_flat, p_flat = target.ravel()[keep], pred.ravel()[keep]
    ref = sk_confusion_matrix(t_flat, p_flat, labels=list(range(c)))
    np.testing.assert_array_equal(acc.matrix, ref)

    present = np.union1d(np.unique(t_flat), np.unique(p_flat))
    assert 4 not in present and 5 in present  # class 5 only predicted -> IoU 0, counted
    ref_iou = jaccard_score(t_flat, p_flat, labels=list(range(c)), average=None, zero_division=0)
    ours = M.iou_per_class(acc.matrix)
    assert np.isnan(ours[4])  # empty union: undefined, not 0
    np.testing.assert_allclose(np.delete(ours, 4), np.delete(ref_iou, 4))
    ref_miou = jaccard_score(t_flat, p_flat, labels=present, average="macro")
    assert M.mean_iou(acc.matrix) == pytest.approx(ref_miou)
    ref_dice = f1_score(t_flat, p_flat, labels=present, average="macro")
    assert M.mean_dice(acc.matrix) == pytest.approx(ref_dice)
    assert M.pixel_accuracy(acc.matrix) == pytest.approx(float((t_flat == p_flat).mean()))
    s = acc.summary([f"c{i}" for i in range(c)])
    assert s["per_class"]["c4"]["iou"] is None and s["per_class"]["c5"]["iou"] == 0.0
    assert s["classes_in_mean"] == len(present)
    assert s["num_pixels"] == keep.sum()


def test_known_answer() -> None:
    target = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255]])
    pred = np.array([[0, 1, 1, 1], [0, 0, 1, 0], [2, 0, 2, 1]])
    cm = M.confusion_matrix(pred, target, 3)
    expected = np.array([[3, 1, 0], [1, 3, 0], [1, 0, 1]])
    np.testing.assert_array_equal(cm, expected)
    # IoU: c0 3/(4+5-3)=0.5, c1 3/(4+4-3)=0.6, c2 1/(2+1-1)=0.5
    np.testing.assert_allclose(M.iou_per_class(cm), [0.5, 0.6, 0.5])
    assert M.mean_iou(cm) == pytest.approx((0.5 + 0.6 + 0.5) / 3)
    assert M.pixel_accuracy(cm) == pytest.approx(7 / 10)
    np.testing.assert_allclose(M.dice_per_class(cm), [6 / 9, 6 / 8, 2 / 3])
    np.testing.assert_allclose(M.class_pixel_share(cm), [0.4, 0.4, 0.2])


def test_accuracy_summary_known_answer() -> None:
    """The one summary export, report, evaluate and the tools report: fractions, None where undefined."""
    cm = np.array([[3, 1, 0, 0], [1, 3, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    s = M.accuracy_summary(cm, ["a", "b", "c", "never"])
    assert s == {
        "miou": pytest.approx((0.5 + 0.6 + 0.5) / 3),
        "pixel_accuracy": pytest.approx(7 / 10),
        "per_class_iou": {"a": 0.5, "b": 0.6, "c": 0.5, "never": None},
    }
    assert {k: M.summarize(cm)[k] for k in s} == M.accuracy_summary(cm)  # the full record starts with it
    with pytest.raises(ValueError, match="3 class names"):
        M.accuracy_summary(cm, ["a", "b", "c"])


def test_dataset_wide_not_per_image_mean() -> None:
    # image A: perfect on a big object; image B: misses a tiny one. Dataset-wide IoU of class 1
    # is dominated by A's pixels, unlike a mean of per-image IoUs.
    t_a = np.ones((10, 10), dtype=np.int64)
    t_b = np.zeros((10, 10), dtype=np.int64)
    t_b[0, 0] = 1
    p_a, p_b = t_a.copy(), np.zeros_like(t_b)
    acc = M.ConfusionMatrix(2).update_all([(p_a, t_a), (p_b, t_b)])
    assert M.iou_per_class(acc.matrix)[1] == pytest.approx(100 / 101)


def test_errors_and_edge_cases() -> None:
    with pytest.raises(ValueError):
        M.confusion_matrix(np.zeros((2, 2)), np.full((2, 2), 3), 3)  # target out of range, not ignore
    with pytest.raises(ValueError):
        M.confusion_matrix(np.full((2, 2), 5), np.zeros((2, 2)), 3)
    with pytest.raises(ValueError):
        M.confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)), 3)
    cm = M.confusion_matrix(np.zeros((2, 2)), np.full((2, 2), IGNORE), 3)
    assert cm.sum() == 0 and np.isnan(M.mean_iou(cm)) and M.summarize(cm)["miou"] is None


def test_torch_confusion_matches_numpy() -> None:
    from training.loops import torch_confusion

    rng = np.random.default_rng(3)
    pred, target = _random_maps(rng, 3, 7)
    ours = torch_confusion(torch.from_numpy(pred), torch.from_numpy(target), 7).numpy()
    np.testing.assert_array_equal(ours, M.confusion_matrix(pred, target, 7))


def test_metrics_module_does_not_import_torch() -> None:
    code = "import sys, training.metrics; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


# --------------------------------------------------------------------------- losses


def _perfect_logits(target: torch.Tensor, c: int, scale: float = 50.0) -> torch.Tensor:
    safe = torch.where(target == IGNORE, torch.zeros_like(target), target)
    return torch.nn.functional.one_hot(safe, c).permute(0, 3, 1, 2).float() * scale


def test_dice_of_perfect_prediction_is_zero() -> None:
    torch.manual_seed(0)
    c = 5
    target = torch.randint(0, c - 1, (2, 8, 9))  # class c-1 absent: must not spoil the loss
    target[0, :2] = IGNORE
    loss = soft_dice_loss(_perfect_logits(target, c), target)
    assert loss.item() < 1e-4
    assert SegmentationLoss("ce+dice", c)(_perfect_logits(target, c), target).item() < 1e-4
    bad = soft_dice_loss(-_perfect_logits(target, c), target)
    assert bad.item() > 0.5


def test_dice_matches_naive_one_hot() -> None:
    torch.manual_seed(3)
    c = 5
    logits = torch.randn(2, c, 7, 9)
    target = torch.randint(0, c, (2, 7, 9))
    target[1, 3:] = IGNORE
    p = logits.softmax(1)
    valid = (target != IGNORE).unsqueeze(1).float()
    oh = torch.nn.functional.one_hot(target.clamp_max(c - 1), c).permute(0, 3, 1, 2).float() * valid
    p = p * valid
    ref = 1 - (2 * (p * oh).sum((0, 2, 3)) + 1) / (p.sum((0, 2, 3)) + oh.sum((0, 2, 3)) + 1)
    assert soft_dice_loss(logits, target).item() == pytest.approx(ref.mean().item(), rel=1e-5)
    w = torch.tensor([1.0, 2.0, 0.0, 1.0, 0.5])
    assert soft_dice_loss(logits, target, class_weights=w).item() == pytest.approx(
        ((ref * w).sum() / w.sum()).item(), rel=1e-5
    )


@pytest.mark.parametrize("kind", ["ce", "dice", "ce+dice"])
def test_ignored_pixels_do_not_contribute(kind: str) -> None:
    torch.manual_seed(1)
    c = 4
    logits = torch.randn(2, c, 6, 7, requires_grad=True)
    target = torch.randint(0, c, (2, 6, 7))
    target[:, :, :3] = IGNORE
    loss_fn = SegmentationLoss(kind, c, class_weights=[1.0, 2.0, 0.5, 1.0])
    loss = loss_fn(logits, target)
    loss.backward()
    assert torch.all(logits.grad[..., :3] == 0)
    # changing logits under ignored pixels changes nothing
    other = logits.detach().clone()
    other[..., :3] = torch.randn_like(other[..., :3]) * 10
    assert loss_fn(other, target).item() == pytest.approx(loss.item(), rel=1e-6)
    # all pixels ignored: 0, not NaN
    assert loss_fn(logits, torch.full_like(target, IGNORE)).item() == pytest.approx(0.0, abs=1e-6)


def test_ce_matches_torch_with_weights() -> None:
    torch.manual_seed(2)
    logits, target = torch.randn(3, 5, 4, 4), torch.randint(0, 5, (3, 4, 4))
    target[0] = IGNORE
    w = torch.tensor([0.5, 1.0, 2.0, 1.0, 3.0])
    ref = torch.nn.functional.cross_entropy(logits, target, weight=w, ignore_index=IGNORE)
    assert SegmentationLoss("ce", 5, class_weights=w.tolist())(logits, target).item() == pytest.approx(
        ref.item(), rel=1e-5
    )


def test_class_weights() -> None:
    labels = [np.array([[0, 0, 0, 1]]), np.array([[0, 0, 2, 255]])]
    counts = np.array([5, 1, 1, 0])
    w_mf = compute_class_weights(labels, 4, "median_freq")
    # freq: c0 5/7 (both images, 7 pixels), c1 1/4, c2 1/3; median 1/3
    np.testing.assert_allclose(w_mf, [(1 / 3) / (5 / 7), (1 / 3) / (1 / 4), 1.0, 0.0], rtol=1e-6)
    w_il = class_weights_from_counts(counts, method="inv_log")
    np.testing.assert_allclose(w_il[:3], 1 / np.log(1.02 + counts[:3] / 7), rtol=1e-6)
    assert w_il[3] == 0 and w_il[1] > w_il[0]
    with pytest.raises(ValueError):
        class_weights_from_counts(counts, method="nope")


def test_distillation_kl_known_answer() -> None:
    """Two pixels, two classes: teacher logits (0, 0) and (ln 3, 0) -> p_t = (1/2, 1/2), (3/4, 1/4);
    student logits 0 -> p_s = (1/2, 1/2). KL = 0 and 3/4 ln(3/2) + 1/4 ln(1/2); at T = 1 the mean is
    half their sum; ignored pixels count for nothing."""
    teacher = torch.tensor([[0.0, np.log(3.0)], [0.0, 0.0]]).view(1, 2, 1, 2)
    student = torch.zeros(1, 2, 1, 2)
    kl1 = 0.75 * np.log(1.5) + 0.25 * np.log(0.5)
    assert float(distillation_kl(student, teacher, 1.0)) == pytest.approx(kl1 / 2, rel=1e-5)
    valid = torch.tensor([[[False, True]]])
    assert float(distillation_kl(student, teacher, 1.0, valid)) == pytest.approx(kl1, rel=1e-5)
    assert float(distillation_kl(teacher, teacher, 3.0)) == pytest.approx(0.0, abs=1e-7)
    # temperature: logits / T, times T^2 -> at T = 2 the teacher's second pixel is (sqrt 3, 1) / (1 + sqrt 3)
    p = np.sqrt(3.0) / (1.0 + np.sqrt(3.0))
    kl2 = p * np.log(2 * p) + (1 - p) * np.log(2 * (1 - p))
    assert float(distillation_kl(student, teacher, 2.0)) == pytest.approx(4 * kl2 / 2, rel=1e-5)


def test_distillation_loss_mixes_label_and_teacher_terms() -> None:
    torch.manual_seed(0)
    logits, teacher = torch.randn(2, 4, 5, 6), torch.randn(2, 4, 5, 6)
    target = torch.randint(0, 4, (2, 5, 6))
    target[0, 0, :] = 255
    label_loss = SegmentationLoss("ce+dice", 4)
    kd = distillation_kl(logits, teacher, 2.0, target != 255)
    mixed = DistillationLoss(label_loss, weight=0.25, temperature=2.0)(logits, target, teacher)
    assert float(mixed) == pytest.approx(0.75 * float(label_loss(logits, target)) + 0.25 * float(kd), rel=1e-5)
    assert float(DistillationLoss(label_loss, weight=1.0)(teacher, target, teacher)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        DistillationLoss(label_loss, weight=1.5)
