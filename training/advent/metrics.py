"""Segmentation scores over the 19 Cityscapes train ids: confusion matrix, per-class IoU, mIoU.

As valeoai/ADVENT (`advent/utils/func.py`: `fast_hist`, `per_class_iu`) and the Cityscapes
benchmark count them: one confusion matrix over every scored pixel of a set (rows: ground truth,
columns: prediction; label 255 is not scored), IoU = TP / (TP + FP + FN) per class, and mIoU the
mean over the classes whose IoU is defined (a class absent from both labels and predictions has
none, NaN here).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from torch import Tensor

from ...errors import DrivesimError

IGNORE = 255


@cache
def class_names() -> tuple[str, ...]:
    """The 19 train-id class names in train-id order (cityscapesscripts' spelling)."""
    from cityscapesscripts.helpers.labels import labels

    names = {lb.trainId: lb.name for lb in labels if 0 <= lb.trainId < IGNORE}
    return tuple(names[i] for i in range(len(names)))


@cache
def train_id_palette() -> np.ndarray:
    """(256 3) uint8: the Cityscapes colour of each train id; 255 and unknown ids are black."""
    from cityscapesscripts.helpers.labels import labels

    lut = np.zeros((256, 3), np.uint8)
    for lb in labels:
        if 0 <= lb.trainId < IGNORE:
            lut[lb.trainId] = lb.color
    lut.flags.writeable = False
    return lut


def colorize_train_ids(ids: Tensor) -> Tensor:
    """`... h w` train ids -> `... 3 h w` float colours in [-1, 1] (for image logs)."""
    lut = torch.from_numpy(train_id_palette().copy()).to(ids.device)
    rgb = lut[ids.long().clamp(0, 255)].float()
    return rgb.movedim(-1, -3) / 127.5 - 1


def confusion_matrix(pred: Tensor, label: Tensor, num_classes: int = 19) -> Tensor:
    """(k k) int64 pixel counts, rows = label, columns = prediction; labels of 255 are skipped.

    `pred` and `label` are integer tensors of one shape. A label outside 0..k-1 (other than 255)
    means the labels and the model disagree on the classes: an error, not a silent skip."""
    if pred.shape != label.shape:
        raise DrivesimError(f"predictions {tuple(pred.shape)} and labels {tuple(label.shape)} differ in shape; "
                            "upsample the predictions to the labels' size")
    label, pred = label.reshape(-1).long(), pred.reshape(-1).long()
    scored = label != IGNORE
    label, pred = label[scored], pred[scored]
    if label.numel() and (int(label.min()) < 0 or int(label.max()) >= num_classes):
        raise DrivesimError(f"labels hold class {int(label.max())}, outside the model's {num_classes} classes "
                            f"(0..{num_classes - 1}, {IGNORE} = ignore); give labels as the 19 Cityscapes train ids")
    if pred.numel() and (int(pred.min()) < 0 or int(pred.max()) >= num_classes):
        raise DrivesimError(f"predictions hold class {int(pred.max())}, outside 0..{num_classes - 1}")
    return torch.bincount(label * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_iou(confusion: Tensor) -> Tensor:
    """(k,) float64 IoU per class; NaN where a class is in neither labels nor predictions."""
    c = confusion.double()
    tp = c.diag()
    union = c.sum(0) + c.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))


def mean_iou(confusion: Tensor) -> float:
    """The mean of the defined per-class IoUs (NaN when none is)."""
    iou = per_class_iou(confusion)
    defined = iou[~iou.isnan()]
    return float(defined.mean()) if defined.numel() else float("nan")


@dataclass(frozen=True)
class SegmentationScores:
    """The scores of a set: its confusion matrix and what follows from it."""

    confusion: Tensor  # (k k) int64, rows = label

    @property
    def iou(self) -> Tensor:
        return per_class_iou(self.confusion)

    @property
    def miou(self) -> float:
        return mean_iou(self.confusion)

    @property
    def pixel_accuracy(self) -> float:
        total = int(self.confusion.sum())
        return float(self.confusion.diag().sum()) / total if total else float("nan")

    @property
    def pixels(self) -> int:
        return int(self.confusion.sum())

    def scalars(self) -> dict[str, float]:
        """mIoU, pixel accuracy and `iou/<class>` for the classes with a defined IoU."""
        names = _names(len(self.confusion))
        out = {"miou": self.miou, "pixel_accuracy": self.pixel_accuracy}
        out |= {f"iou/{n}": float(v) for n, v in zip(names, self.iou.tolist(), strict=True) if v == v}
        return out

    def to_dict(self) -> dict:
        names = _names(len(self.confusion))
        return {"miou": _finite(self.miou), "pixel_accuracy": _finite(self.pixel_accuracy), "pixels": self.pixels,
                "classes": list(names), "iou": [_finite(v) for v in self.iou.tolist()],
                "confusion": self.confusion.tolist()}

    def table(self) -> str:
        """A Markdown table: class, IoU (%), labelled pixels; then the mIoU."""
        names = _names(len(self.confusion))
        gt = self.confusion.sum(1).tolist()
        lines = ["| class | IoU (%) | labelled pixels |", "|---|---:|---:|"]
        for name, v, n in zip(names, self.iou.tolist(), gt, strict=True):
            lines.append(f"| {name} | {'-' if v != v else f'{100 * v:.2f}'} | {n} |")
        lines.append(f"| **mIoU** | **{100 * self.miou:.2f}** | {self.pixels} |")
        return "\n".join(lines)


def _names(k: int) -> tuple[str, ...]:
    names = class_names()
    return names if k == len(names) else tuple(f"class_{i}" for i in range(k))


def _finite(v: float) -> float | None:
    return None if v != v else v
