"""Segmentation losses: cross-entropy, soft multi-class Dice, and their sum.

The reference study found CE + Dice best on the atWork data: CE gives well-behaved
per-pixel gradients from the start, Dice counters the heavy background / small
object imbalance because every class contributes equally to it regardless of
its pixel count. Class weights (median-frequency or inverse-log) are the other,
optional, counter-measure for imbalance.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from seg_perception.classes import IGNORE_INDEX

LOSSES = ("ce", "dice", "ce+dice")
CLASS_WEIGHTINGS = ("none", "median_freq", "inv_log")

log = logging.getLogger(__name__)


def soft_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    smooth: float = 1.0,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """1 - mean soft Dice over classes, computed over the whole batch.

    ``logits``: (N, C, H, W); ``target``: (N, H, W) int64 with ``ignore_index``
    for unlabelled pixels, which contribute neither to intersections nor to the
    cardinalities. Dice per class is ``(2 sum(p t) + s) / (sum(p) + sum(t) + s)``;
    with smoothing ``s`` a class absent from the batch scores ~1 once its
    probabilities go to 0, so a perfect prediction gives a loss of ~0.
    """
    return _dice_from_probs(logits.float().softmax(dim=1), target, ignore_index, smooth, class_weights)


def _dice_from_probs(
    probs: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int,
    smooth: float,
    class_weights: torch.Tensor | None,
) -> torch.Tensor:
    """Soft Dice from class probabilities without materialising a one-hot target.

    Intersections are the probabilities of each pixel's true class summed per class
    (gather + scatter_add); target cardinalities are label counts; ignored pixels are
    masked out of both and of the probability sums.
    """
    c = probs.shape[1]
    valid = target != ignore_index
    safe = target.masked_fill(~valid, 0)
    validf = valid.to(probs.dtype)
    p_true = probs.gather(1, safe.unsqueeze(1)).squeeze(1) * validf  # 0 on ignored pixels
    intersection = probs.new_zeros(c).scatter_add(0, safe.reshape(-1), p_true.reshape(-1))
    prob_sum = torch.einsum("nchw,nhw->c", probs, validf)
    target_count = torch.bincount(safe[valid], minlength=c).to(probs.dtype)
    dice = (2.0 * intersection + smooth) / (prob_sum + target_count + smooth)
    loss = 1.0 - dice
    if class_weights is not None:
        w = class_weights.to(loss.device, loss.dtype)
        return (loss * w).sum() / w.sum().clamp_min(1e-12)
    return loss.mean()


class SegmentationLoss(nn.Module):
    """``ce``, ``dice`` or ``ce+dice`` (CE + ``dice_weight`` * Dice), with ignore index and class weights."""

    def __init__(
        self,
        kind: str = "ce+dice",
        num_classes: int | None = None,
        class_weights: Sequence[float] | None = None,
        ignore_index: int = IGNORE_INDEX,
        dice_weight: float = 1.0,
        dice_smooth: float = 1.0,
    ) -> None:
        super().__init__()
        if kind not in LOSSES:
            raise ValueError(f"unknown loss {kind!r}; valid: {list(LOSSES)}")
        self.kind = kind
        self.ignore_index = ignore_index
        self.dice_weight = float(dice_weight)
        self.dice_smooth = float(dice_smooth)
        weight = None
        if class_weights is not None:
            weight = torch.as_tensor(np.asarray(class_weights, dtype=np.float32))
            if num_classes is not None and weight.numel() != num_classes:
                raise ValueError(f"{weight.numel()} class weights for {num_classes} classes")
        # a buffer follows .to(device) and is not a parameter
        self.register_buffer("weight", weight, persistent=False)

    def _cross_entropy(self, log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Weighted mean CE over valid pixels; 0 (not NaN) when every pixel is ignored."""
        summed = F.nll_loss(log_probs, target, weight=self.weight, ignore_index=self.ignore_index, reduction="sum")
        valid = target != self.ignore_index
        if self.weight is None:
            denom = valid.sum()
        else:
            denom = (self.weight[target.masked_fill(~valid, 0)] * valid).sum()
        return summed / denom.to(summed.dtype).clamp_min(1e-12)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # one log-softmax serves both terms (the loss is a visible share of a CPU step)
        log_probs = F.log_softmax(logits.float(), dim=1)
        total = log_probs.new_zeros(())
        if self.kind in ("ce", "ce+dice"):
            total = total + self._cross_entropy(log_probs, target)
        if self.kind in ("dice", "ce+dice"):
            w = self.dice_weight if self.kind == "ce+dice" else 1.0
            total = total + w * _dice_from_probs(
                log_probs.exp(), target, self.ignore_index, self.dice_smooth, self.weight
            )
        return total


def class_pixel_counts(
    labels: Iterable, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class pixel counts, and per class the pixel total of the images that contain it.

    ``labels`` yields label maps (numpy arrays or tensors, any shape; a batch is fine).
    """
    counts = np.zeros(num_classes, dtype=np.int64)
    image_pixels = np.zeros(num_classes, dtype=np.int64)
    for lab in labels:
        arr = lab.numpy() if isinstance(lab, torch.Tensor) else np.asarray(lab)
        maps = arr.reshape((-1,) + arr.shape[-2:]) if arr.ndim >= 2 else arr.reshape(1, -1)
        for m in maps:
            flat = m.reshape(-1).astype(np.int64)
            flat = flat[flat != ignore_index]
            if flat.size and (flat.min() < 0 or flat.max() >= num_classes):
                raise ValueError(f"label values outside [0, {num_classes})")
            c = np.bincount(flat, minlength=num_classes)
            counts += c
            image_pixels[c > 0] += flat.size
    return counts, image_pixels


def class_weights_from_counts(
    counts: np.ndarray, image_pixels: np.ndarray | None = None, method: str = "median_freq", c: float = 1.02
) -> np.ndarray:
    """Class weights from pixel counts.

    * ``median_freq`` (Eigen & Fergus 2015): ``freq_c = pixels_c / pixels of images
      containing c``; ``w_c = median(freq) / freq_c``.
    * ``inv_log`` (ENet, Paszke et al. 2016): ``w_c = 1 / ln(c + p_c)``, ``p_c`` the
      class's share of all pixels; bounded in ``(0, 1/ln(c)]``.

    Classes with no pixels get weight 0 (they cannot contribute to CE anyway).
    """
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    if not present.any():
        raise ValueError("no labelled pixels to compute class weights from")
    if method == "median_freq":
        denom = np.asarray(
            image_pixels if image_pixels is not None else np.full_like(counts, counts.sum()), dtype=np.float64
        )
        freq = counts[present] / denom[present]
        weights[present] = np.median(freq) / freq
    elif method == "inv_log":
        share = counts / counts.sum()
        weights[present] = 1.0 / np.log(c + share[present])
    else:
        raise ValueError(f"unknown class weighting {method!r}; valid: {list(CLASS_WEIGHTINGS[1:])}")
    if not present.all():
        log.warning("class weights: classes %s have no pixels; weight 0", np.flatnonzero(~present).tolist())
    return weights.astype(np.float32)


def compute_class_weights(
    labels: Iterable, num_classes: int, method: str = "median_freq", ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """Class weights straight from a label iterator (see :func:`class_weights_from_counts`)."""
    counts, image_pixels = class_pixel_counts(labels, num_classes, ignore_index)
    return class_weights_from_counts(counts, image_pixels, method)


def distillation_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-pixel ``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, mean over valid pixels.

    Hinton et al.'s soft-target loss: the ``T^2`` keeps its gradient scale independent of ``T``.
    ``valid`` (N, H, W) bool excludes pixels (e.g. padding labelled ``ignore``); 0 when none is valid.
    """
    t = float(temperature)
    log_p_student = F.log_softmax(student_logits.float() / t, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / t, dim=1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1)  # (N, H, W)
    if valid is None:
        return kl.mean() * t * t
    validf = valid.to(kl.dtype)
    return (kl * validf).sum() / validf.sum().clamp_min(1.0) * t * t


class DistillationLoss(nn.Module):
    """``(1 - weight) * label_loss(student, labels) + weight * distillation_kl(student, teacher)``.

    Called as ``loss(student_logits, targets, teacher_logits)``; pixels labelled ``ignore_index``
    count for neither term.
    """

    def __init__(
        self, label_loss: nn.Module, weight: float = 0.5, temperature: float = 2.0, ignore_index: int = IGNORE_INDEX
    ) -> None:
        super().__init__()
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"distillation weight must be in [0, 1], got {weight}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.label_loss = label_loss
        self.weight = float(weight)
        self.temperature = float(temperature)
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        kd = distillation_kl(logits, teacher_logits, self.temperature, target != self.ignore_index)
        if self.weight >= 1.0:
            return kd
        return (1.0 - self.weight) * self.label_loss(logits, target) + self.weight * kd
