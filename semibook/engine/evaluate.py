"""Evaluation: predictions over uint8 images, the test metric (accuracy or mIoU with its
per-class IoU), the agreement of the method's model pairs on the tracked unlabeled images, and
the samples a chapter shows; ``Trainer`` holds what one run keeps in memory."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import Config
from ..data import ImageSet
from ..data.transforms import normalize
from ..metrics import SegmentationMeter, sliding_window_logits
from ..methods.base import SemiMethod
from ..tracking import agreement
from .batches import StepData
from .step import _autocast, speed_options



def encode(t: torch.Tensor) -> dict[str, Any]:
    """A small uint8 tensor as JSON: shape and base64 bytes."""
    import base64
    return {"shape": list(t.shape), "b64": base64.b64encode(t.to(torch.uint8).numpy().tobytes())
            .decode()}


def decode(d: dict[str, Any]) -> torch.Tensor:
    import base64
    raw = np.frombuffer(base64.b64decode(d["b64"]), dtype=np.uint8).copy()
    return torch.from_numpy(raw.reshape(d["shape"]))


def _fixed_subset(n: int, size: int, salt: int) -> torch.Tensor:
    """A fixed, seed-independent subset (so every run is evaluated on the same images)."""
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(salt))
    return idx[:size] if 0 < size < n else torch.arange(n)


def _channels_last(model: nn.Module) -> bool:
    """Whether ``model``'s first 4-d weight is stored channels-last."""
    w = next((p for p in model.parameters() if p.ndim == 4), None)
    return w is not None and w.is_contiguous(memory_format=torch.channels_last) \
        and not w.is_contiguous()


@torch.inference_mode()
def predict(model: nn.Module, x_uint8: torch.Tensor, prep, batch: int,
            device: torch.device, window: tuple[int, int, int] | None = None,
            bf16: bool | None = None) -> torch.Tensor:
    """Predicted labels (class ids, or label maps) of ``model`` in eval mode over uint8
    images; ``prep`` turns a uint8 batch into the model's input; ``window`` = (crop, stride,
    classes) evaluates segmentation with sliding windows. Inputs take the model's memory format
    (channels-last where the run trains so). Returned on the CPU."""
    was_training = model.training
    model.eval()
    out = []
    nhwc = _channels_last(model)
    for i in range(0, len(x_uint8), batch):
        x = prep(x_uint8[i:i + batch].to(device))
        if nhwc and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(device, bf16):
            logits = sliding_window_logits(model, x, *window) if window else model(x)
        out.append(logits.argmax(1).cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


@dataclass
class Trainer:
    """Everything one run holds in memory; ``fit`` drives it."""
    cfg: Config
    method: SemiMethod
    data: StepData
    test_x: torch.Tensor
    test_y: torch.Tensor
    track_x: torch.Tensor
    track_y: torch.Tensor
    image_set: ImageSet
    device: torch.device
    step_fn: Any = None  # runs method.training_step; inside DistributedDataParallel when wrapped
    test_index: Any = None  # positions of test_x in the test set, of track_x in the train set
    track_index: Any = None
    eval_on: str = "test"  # "validation": test_x are held-out training images (test_index too)

    @cached_property
    def decay(self) -> list[nn.Parameter]:
        """The kernels (conv and dense weights) that decoupled weight decay shrinks."""
        return [p for p in self.method.trainable_parameters() if p.ndim > 1]

    @property
    def bf16(self) -> bool:
        """Whether this run computes in bf16 autocast (training and evaluation alike)."""
        return speed_options(self.cfg, self.device)["bf16"]

    @property
    def segmentation(self) -> bool:
        return self.image_set.info.task == "segmentation"

    @property
    def metric(self) -> str:
        """The reported metric: test accuracy, or mean IoU for segmentation."""
        return "miou" if self.segmentation else "acc"

    def prep(self, x_uint8: torch.Tensor) -> torch.Tensor:
        if self.segmentation:  # segmentation models normalise inside
            return x_uint8.float().div_(255)
        if self.data.whiten is not None:
            return self.data.whiten(x_uint8)
        return normalize(x_uint8, self.image_set.mean, self.image_set.std)

    def score(self, pred: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, Any]:
        """The metric of predictions ``pred`` of the test images (or of labels ``y``)."""
        y = self.test_y if y is None else y
        if not self.segmentation:  # with each class's accuracy (the per-class diagnosis)
            right = (pred == y).float()
            k = self.image_set.info.num_classes
            n = torch.bincount(y, minlength=k).clamp_min(1)
            per = torch.bincount(y, weights=right, minlength=k) / n
            return {"acc": right.mean().item(), "class_acc": [round(v, 6) for v in per.tolist()]}
        meter = SegmentationMeter(self.image_set.info.num_classes,
                                  self.image_set.info.ignore_index)
        meter.update(pred, y)
        res = meter.compute()
        return {"miou": res["miou"], "iou": res["iou"]}

    @torch.no_grad()
    def samples(self, n: int = 8) -> dict[str, Any]:
        """What a chapter shows without the weights: the evaluated model's label maps on the
        first ``n`` test images, and the first tracked model's confidence (max softmax,
        quantised to 1/255) and pseudo labels on the first ``n`` tracked unlabeled images."""
        model = next(iter(self.method.eval_models().values()))
        pairs = self.method.agreement_pairs()
        teacher = next(iter(pairs.values()))[0] if pairs else model
        k = min(n, len(self.test_x))
        out = {"test_index": (self.test_index[:k].tolist() if self.test_index is not None
                              else list(range(k))),
               "test_pred": encode(predict(model, self.test_x[:n], self.prep, n, self.device,
                                                  bf16=self.bf16)),
               "track_model": next(iter(pairs), "model")}
        if self.eval_on != "test":  # test_index then names training images
            out["eval_on"] = self.eval_on
        was = teacher.training
        teacher.eval()
        x = self.prep(self.track_x[:n].to(self.device))
        with _autocast(self.device, self.bf16):
            conf, pseudo = F.softmax(teacher(x).float(), 1).max(1)
        teacher.train(was)
        if self.track_index is not None:
            out["track_index"] = self.track_index[:n].tolist()
        out["track_conf"] = encode((conf * 255).round().byte().cpu())
        out["track_pseudo"] = encode(pseudo.byte().cpu())
        maps = getattr(self.method, "sample_maps", None)  # a method's own maps, in [0, 1]
        if maps is not None:
            with _autocast(self.device, self.bf16):
                for key, m in maps(x).items():
                    out[key] = encode((m.float().clamp(0, 1) * 255).round().byte().cpu())
        return out

    @cached_property
    def subset(self) -> torch.Tensor | None:
        """Positions in the test images of the fixed subset on which the intermediate
        evaluations run (``cfg.eval_subset``; None: every evaluation sees every test image)."""
        n = self.cfg.eval_subset
        return _fixed_subset(len(self.test_x), n, salt=2026) if 0 < n < len(self.test_x) \
            else None

    def evaluate(self, step: int, whole: bool | None = None) -> dict[str, Any]:
        """The evaluation row of ``step``: each evaluated model's metric, and agreement on the
        tracked images. With ``cfg.eval_subset``, intermediate steps are scored on the fixed
        subset (``eval_images`` says how many) and the last one (``whole``, default: the
        run's last step) on every test image, where the subset's score is kept as
        ``subset_<metric>``, so the curve's points are comparable with one another."""
        cfg, out = self.cfg, {"kind": "eval", "step": step}
        whole = step >= cfg.steps if whole is None else whole
        names = list(self.method.eval_models())
        window = None
        if self.segmentation and cfg.eval_crop:
            window = (cfg.eval_crop, cfg.eval_stride or max(1, cfg.eval_crop * 2 // 3),
                      self.image_set.info.num_classes)
        sub = self.subset
        x, y = (self.test_x, self.test_y) if whole or sub is None else \
            (self.test_x[sub], self.test_y[sub])
        for i, (name, model) in enumerate(self.method.eval_models().items()):
            pred = predict(model, x, self.prep, cfg.eval_batch, self.device, window, self.bf16)
            scores = self.score(pred, y)
            if i == 0:
                out.update(scores)
                if sub is not None:
                    out["eval_images"] = len(x)
                    if whole:
                        out[f"subset_{self.metric}"] = self.score(pred[sub], y[sub])[self.metric]
            else:
                out[f"{self.metric}_{name}"] = scores[self.metric]
        out["eval_model"] = names[0]
        agree = {}
        ignore = self.image_set.info.ignore_index if self.segmentation else None
        for pair, (a, b) in self.method.agreement_pairs().items():
            pa = predict(a, self.track_x, self.prep, cfg.eval_batch, self.device, bf16=self.bf16)
            pb = predict(b, self.track_x, self.prep, cfg.eval_batch, self.device, bf16=self.bf16)
            agree[pair] = agreement(pa, pb, self.track_y, self.method.spec.num_classes, ignore)
        if self.segmentation:
            x = self.prep(self.track_x.to(self.device))
            tags = None
            if getattr(self.data, "tags", None) is not None and self.track_index is not None:
                tags = self.data.tags[torch.as_tensor(self.track_index)].to(self.device)
            with _autocast(self.device, self.bf16):
                labels = self.method.tracked_labels(x, tags)
            for pair, (pa, pb) in labels.items():
                agree[pair] = agreement(pa, pb, self.track_y, self.method.spec.num_classes, ignore)
        if agree:
            out["agreement"] = agree
        return out
