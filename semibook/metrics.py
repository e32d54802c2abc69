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


def iou_per_class(cm: torch.Tensor) -> torch.Tensor:
    """IoU of each class from a confusion matrix: TP / (TP + FP + FN); NaN for a class that
    appears neither in the targets nor in the predictions."""
    cm = cm.double()
    tp = cm.diag()
    union = cm.sum(0) + cm.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))


def mean_iou(cm: torch.Tensor) -> float:
    """Mean IoU over the classes present (in targets or predictions)."""
    iou = iou_per_class(cm)
    return float(iou[~iou.isnan()].mean()) if (~iou.isnan()).any() else float("nan")


class SegmentationMeter:
    """Accumulates a confusion matrix over batches of (pred, target) label maps."""

    def __init__(self, num_classes: int, ignore_index: int | None = 255):
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.cm = torch.zeros(num_classes, num_classes, dtype=torch.long)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        self.cm += confusion_matrix(pred.cpu(), target.cpu(), self.num_classes,
                                    self.ignore_index)

    def compute(self) -> dict:
        iou = iou_per_class(self.cm)
        return {"miou": mean_iou(self.cm), "iou": [None if v != v else float(v) for v in iou],
                "pixel_acc": float(self.cm.diag().sum() / self.cm.sum().clamp_min(1))}


@torch.no_grad()
def sliding_window_logits(model, x: torch.Tensor, crop: int, stride: int,
                          num_classes: int) -> torch.Tensor:
    """Logits of a segmentation model over images larger than its training crop: windows of
    ``crop`` x ``crop`` every ``stride`` pixels (the last window flush with the border), their
    logits averaged where windows overlap. Images smaller than a window are padded with 0."""
    n, _, h, w = x.shape
    ph, pw = max(crop - h, 0), max(crop - w, 0)
    xp = torch.nn.functional.pad(x, (0, pw, 0, ph))
    H, W = xp.shape[-2:]
    out = torch.zeros(n, num_classes, H, W, device=x.device)
    count = torch.zeros(1, 1, H, W, device=x.device)
    starts = lambda size: sorted({*range(0, size - crop + 1, stride), size - crop})
    for top in starts(H):
        for left in starts(W):
            window = xp[:, :, top:top + crop, left:left + crop]
            out[:, :, top:top + crop, left:left + crop] += model(window).float()
            count[:, :, top:top + crop, left:left + crop] += 1
    return (out / count)[:, :, :h, :w]
