"""Pseudo-label agreement between two models over training.

On a fixed set of unlabeled images (or pixels), the predictions of two models in play (teacher
and student, two CPS networks, ...) either agree or not; using the images' hidden labels, for
analysis only and never for training, agreement splits into agree-and-correct and
agree-and-wrong. Recorded overall and per class (of the true label) at every evaluation.
"""

from __future__ import annotations

import torch


def agreement(pred_a: torch.Tensor, pred_b: torch.Tensor, target: torch.Tensor,
              num_classes: int, ignore_index: int | None = None) -> dict:
    """Shares of samples (or pixels) where a and b agree and are right, agree and are wrong,
    or disagree. Per-class shares are over the samples of each true class."""
    a, b, t = pred_a.reshape(-1), pred_b.reshape(-1), target.reshape(-1)
    if ignore_index is not None:
        keep = t != ignore_index
        a, b, t = a[keep], b[keep], t[keep]
    n = max(len(t), 1)
    same = a == b
    right = same & (a == t)
    wrong = same & (a != t)
    per_class = {}
    for c in range(num_classes):
        sel = t == c
        k = int(sel.sum())
        if k:
            per_class[str(c)] = {"agree": float(same[sel].float().mean()),
                                 "agree_correct": float(right[sel].float().mean()),
                                 "n": k}
    return {"agree": float(same.sum()) / n, "agree_correct": float(right.sum()) / n,
            "agree_wrong": float(wrong.sum()) / n, "disagree": float((~same).sum()) / n,
            "n": len(t), "per_class": per_class}


def agreement_curves(history: list[dict], pair: str) -> dict[str, list[float]]:
    """Steps and shares of one tracked pair from a run's evaluation history."""
    rows = [r for r in history if r.get("kind") == "eval" and pair in r.get("agreement", {})]
    out: dict[str, list[float]] = {"step": [r["step"] for r in rows]}
    for key in ("agree", "agree_correct", "agree_wrong", "disagree"):
        out[key] = [r["agreement"][pair][key] for r in rows]
    return out
