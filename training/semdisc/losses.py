"""SemDisc's loss terms: the class-weighted coarse-to-fine adversarial loss, and the segmentation and
reconstruction losses of the discriminator's extra heads.

The plain GAN objectives, feature matching and the VGG loss come from `training/core/losses.py`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import DrivesimError
from ...labels import IGNORE, carla_to_train_id, cityscapes_id_to_train_id
from ..core.losses import feature_matching_loss
from .discriminator import SemDiscOutput

WEIGHTED_GAN_MODES = ("hinge", "ls")


def class_weight_maps(onehot: Tensor, size: tuple[int, int], *, normalize: bool = True,
                      fine_grained_scale: float = 0.05) -> Tensor:
    """Per-pixel weights of the adversarial map at one scale.

    `onehot`: `b c H W` label map (one channel per fine-grained class). Returns `b (c + 1) h w`:
    the one-hot resized (nearest) to `size`, then a channel of ones for the coarse map. With
    `normalize`, class k's channel becomes `fine_grained_scale / c * onehot_k / (area of k)`, so every
    present class weighs the same whatever its size (SemDisc's `--normalize_smaps`).
    """
    maps = F.interpolate(onehot.float(), size=size, mode="nearest")
    if normalize:
        area = (maps + 1e-9).mean((2, 3), keepdim=True)
        maps = fine_grained_scale / onehot.shape[1] * maps / area
    return torch.cat([maps, maps.new_ones(maps[:, :1].shape)], 1)


def weighted_gan_loss(preds: list[Tensor], weights: list[Tensor], real: bool, *, for_discriminator: bool = True,
                      mode: str = "hinge") -> Tensor:
    """Class-weighted adversarial loss, averaged over scales.

    `preds[s]`, `weights[s]`: `b (c + 1) h w` adversarial map and its weights (`class_weight_maps`).
    Per scale, the mean over every element of `weight * term`, where term is the hinge
    (`relu(1 - p)` / `relu(1 + p)`; the generator's `-p`) or the least-squares error.
    """
    _check_mode(mode)
    total = preds[0].new_zeros((), dtype=torch.float32)
    for p, w in zip(preds, weights, strict=True):
        p = p.float()
        if mode == "ls":
            term = (p - float(real)) ** 2
        elif not for_discriminator:
            if not real:
                raise ValueError("the generator's hinge loss is defined for real targets only")
            term = -p
        else:
            term = F.relu(1 - p) if real else F.relu(1 + p)
        total = total + (w * term).mean()
    return total / len(preds)


def _check_mode(mode: str) -> str:
    if mode not in WEIGHTED_GAN_MODES:
        raise DrivesimError(f"SemDisc weights its GAN loss per class, defined for {', '.join(WEIGHTED_GAN_MODES)}; "
                            f"set gan_mode to one of them, not '{mode}'")
    return mode


def segmentation_loss(logits: list[Tensor], target: Tensor, ignore_index: int = IGNORE) -> Tensor:
    """Cross-entropy of every scale's `b k h' w'` logits, upsampled (bilinear) to the `b H W` target, summed."""
    size = target.shape[-2:]
    return sum(F.cross_entropy(_up(x, size), target, ignore_index=ignore_index) for x in logits)


def reconstruction_loss(recs: list[Tensor], image: Tensor) -> Tensor:
    """L1 between every scale's `b 3 h' w'` reconstruction, upsampled (bilinear) to `image` (`b 3 H W`), summed."""
    return sum(F.l1_loss(_up(x, image.shape[-2:]), image.float()) for x in recs)


def _up(x: Tensor, size) -> Tensor:
    return F.interpolate(x.float(), size=tuple(size), mode="bilinear", align_corners=False)


def train_id_lut(label_space: str) -> Tensor:
    """(256,) int64: label id in `label_space` -> Cityscapes train id (0..18, 255 ignore), the
    segmentation head's targets."""
    if label_space == "cityscapes_ids":
        lut = cityscapes_id_to_train_id()
    elif label_space == "carla":
        lut = carla_to_train_id(True)  # Cityscapes annotates lane markings as road
    elif label_space == "train_ids":
        lut = np.full(256, IGNORE, np.uint8)
        lut[:19] = np.arange(19)
    else:
        raise DrivesimError(f"SemDisc's segmentation head needs a label map (train_ids, cityscapes_ids or carla), "
                            f"not '{label_space}'; set label_space to one of them")
    return torch.from_numpy(np.asarray(lut, np.int64))


def segmentation_targets(label: Tensor, lut: Tensor) -> Tensor:
    """`b h w` labels -> `b h w` int64 train ids through `lut` (values outside 0..255 are ignored)."""
    inside = (label >= 0) & (label < lut.numel())
    return torch.where(inside, lut.to(label.device)[label.clamp(0, lut.numel() - 1)], IGNORE)


class SemDiscLoss:
    """SemDisc's weighted loss terms of one step, from the discriminator's outputs on fake and real images.

    Defaults are the paper's recipe (README of vita-epfl/SemDisc): lambda_GAN 35, lambda_seg 1,
    lambda_rec 1, lambda_feat 10, normalized class weights with fine_grained_scale 0.05.
    """

    def __init__(self, *, gan_mode: str = "hinge", lambda_gan: float = 35.0, lambda_seg: float = 1.0,
                 lambda_rec: float = 1.0, lambda_feat: float = 10.0, normalize_smaps: bool = True,
                 fine_grained_scale: float = 0.05):
        self.gan_mode, self.lambda_gan, self.lambda_seg = _check_mode(gan_mode), lambda_gan, lambda_seg
        self.lambda_rec, self.lambda_feat = lambda_rec, lambda_feat
        self.normalize_smaps, self.fine_grained_scale = normalize_smaps, fine_grained_scale

    def weights(self, onehot: Tensor, out: SemDiscOutput) -> list[Tensor]:
        """`b c H W` one-hot labels -> per-scale `b (c + 1) h w` weights of `out`'s adversarial maps."""
        return [class_weight_maps(onehot, a.shape[-2:], normalize=self.normalize_smaps,
                                  fine_grained_scale=self.fine_grained_scale) for a in out.adversarial]

    def discriminator(self, fake: SemDiscOutput, real: SemDiscOutput, weights: list[Tensor], target: Tensor,
                      image: Tensor) -> dict[str, Tensor]:
        """Adversarial terms on both, plus segmentation and reconstruction of the real image (every stage)."""
        return {
            "fake": self.lambda_gan * weighted_gan_loss(fake.adversarial, weights, False, mode=self.gan_mode),
            "real": self.lambda_gan * weighted_gan_loss(real.adversarial, weights, True, mode=self.gan_mode),
            "seg": self.lambda_seg * segmentation_loss(real.segmentation, target),
            "rec": self.lambda_rec * reconstruction_loss(real.reconstruction, image),
        }

    def generator(self, fake: SemDiscOutput, real: SemDiscOutput, weights: list[Tensor], target: Tensor,
                  image: Tensor, *, guided: bool) -> dict[str, Tensor]:
        """Adversarial and feature-matching terms; with `guided` (stage 2) also the segmentation of the
        fake image as the real labels and its reconstruction as the real image."""
        out = {"gan": self.lambda_gan * weighted_gan_loss(fake.adversarial, weights, True, for_discriminator=False,
                                                          mode=self.gan_mode)}
        if self.lambda_feat:
            out["feat"] = self.lambda_feat * feature_matching_loss(fake.features, real.features)
        if guided:
            out["seg"] = self.lambda_seg * segmentation_loss(fake.segmentation, target)
            out["rec"] = self.lambda_rec * reconstruction_loss(fake.reconstruction, image)
        return out
