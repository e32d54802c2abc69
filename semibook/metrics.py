"""Classification metrics (segmentation's confusion-matrix mIoU joins here)."""

from __future__ import annotations

import torch


def accuracy(logits_or_pred: torch.Tensor, target: torch.Tensor) -> float:
    pred = logits_or_pred.argmax(1) if logits_or_pred.ndim > target.ndim else logits_or_pred
    return float((pred == target).float().mean())


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int | None = None) -> torch.Tensor:
    """Rows: true class, columns: predicted class; ``ignore_index`` targets are left out."""
    p, t = pred.reshape(-1).long(), target.reshape(-1).long()
    if ignore_index is not None:
        keep = t != ignore_index
        p, t = p[keep], t[keep]
    return torch.bincount(t * num_classes + p, minlength=num_classes ** 2).reshape(
        num_classes, num_classes)
