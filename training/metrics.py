"""Segmentation metrics: the runtime's pure-numpy implementation (one place for both halves)."""

from seg_perception.metrics import (  # noqa: F401
    IGNORE_INDEX,
    ConfusionMatrix,
    accuracy_summary,
    class_pixel_share,
    confusion_matrix,
    dice_per_class,
    frequency_weighted_iou,
    iou_per_class,
    mean_class_accuracy,
    mean_dice,
    mean_iou,
    pixel_accuracy,
    summarize,
)
