"""Losses shared by the model families: GAN objectives, discriminator feature matching, the VGG19
perceptual loss, and the VAE's KL term.

Discriminator outputs are a tensor, or (multiscale) a list with one entry per scale, where each
entry is a tensor or the list of that scale's intermediate features with the prediction last.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import DrivesimError

log = logging.getLogger(__name__)

GAN_MODES = ("hinge", "ls", "vanilla", "wgan")


def _predictions(pred) -> list[Tensor]:
    """The final prediction of every scale."""
    if isinstance(pred, Tensor):
        return [pred]
    return [p[-1] if isinstance(p, (list, tuple)) else p for p in pred]


class GANLoss(nn.Module):
    """`hinge` (SPADE), `ls` (least squares, CycleGAN), `vanilla` (BCE on logits, pix2pix), `wgan`.

    `loss(pred, real, for_discriminator)`: the mean over pixels, averaged over scales. The
    generator's hinge loss is `-mean(pred)` (SPADE's choice).
    """

    def __init__(self, mode: Literal["hinge", "ls", "vanilla", "wgan"] = "hinge"):
        super().__init__()
        if mode not in GAN_MODES:
            raise DrivesimError(f"unknown GAN loss '{mode}'; valid: {', '.join(GAN_MODES)}")
        self.mode = mode

    def forward(self, pred, real: bool, for_discriminator: bool = True) -> Tensor:
        preds = _predictions(pred)
        return sum(self._one(p.float(), real, for_discriminator) for p in preds) / len(preds)

    def _one(self, p: Tensor, real: bool, for_discriminator: bool) -> Tensor:
        if self.mode == "vanilla":
            return F.binary_cross_entropy_with_logits(p, torch.full_like(p, float(real)))
        if self.mode == "ls":
            return F.mse_loss(p, torch.full_like(p, float(real)))
        if self.mode == "wgan":
            return -p.mean() if real else p.mean()
        if not for_discriminator:  # hinge, generator side
            if not real:
                raise ValueError("the generator's hinge loss is defined for real targets only")
            return -p.mean()
        return F.relu(1 - p).mean() if real else F.relu(1 + p).mean()


def feature_matching_loss(fake, real) -> Tensor:
    """pix2pixHD/SPADE feature matching: L1 between the discriminator's intermediate features on
    fake and (detached) real images, every layer but the prediction, averaged over scales."""
    fake = [fake] if isinstance(fake[0], Tensor) else fake
    real = [real] if isinstance(real[0], Tensor) else real
    total = fake[0][0].new_zeros((), dtype=torch.float32)
    for f_scale, r_scale in zip(fake, real, strict=True):
        for f, r in zip(f_scale[:-1], r_scale[:-1], strict=True):
            total = total + F.l1_loss(f.float(), r.detach().float())
    return total / len(fake)


def kld_loss(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)), summed over the batch and latent axes (SPADE's)."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


# VGG19 `features` slices ending at relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 (pix2pixHD/SPADE).
VGG_SLICES = (2, 7, 12, 21, 30)
VGG_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)


def vgg19_features(weights_path: str | None = None, off_switch: str = "lambda_vgg") -> nn.Sequential:
    """ImageNet VGG19 `features[:30]`, frozen, through torchvision's own loader (the torch hub cache).
    `off_switch`: the option that turns off the loss using it (named in the offline error)."""
    import torchvision

    if weights_path is not None:
        net = torchvision.models.vgg19(weights=None)
        try:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        except Exception as e:
            raise DrivesimError(f"VGG19 weights {weights_path}: cannot load ({str(e).splitlines()[0][:120]}); "
                                "give torchvision's vgg19-dcbb9e9d.pth") from None
    else:
        weights = torchvision.models.VGG19_Weights.IMAGENET1K_V1
        try:
            net = torchvision.models.vgg19(weights=weights)
        except Exception as e:
            cache = torch.hub.get_dir() + "/checkpoints/" + weights.url.rsplit("/", 1)[-1]
            raise DrivesimError(f"VGG19 weights for the perceptual loss are not in the torch hub cache and cannot "
                                f"be downloaded ({type(e).__name__}); put {weights.url} at {cache}, "
                                f"or train with --set {off_switch}=0") from None
    features = net.features[: VGG_SLICES[-1]].eval()
    features.requires_grad_(False)
    return features


class VGGLoss(nn.Module):
    """Perceptual loss: weighted L1 between VGG19 features of x and (detached) y.

    Images are `b 3 h w` in [-1, 1]. `imagenet_normalize=False` feeds them to VGG as they are,
    as pix2pixHD and SPADE do; True maps them to ImageNet statistics first.
    """

    def __init__(self, weights_path: str | None = None, imagenet_normalize: bool = False):
        super().__init__()
        self.features = vgg19_features(weights_path)
        self.imagenet_normalize = imagenet_normalize
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):  # VGG stays in eval mode
        super().train(mode)
        self.features.eval()
        return self

    def _taps(self, x: Tensor) -> list[Tensor]:
        if self.imagenet_normalize:
            x = ((x + 1) / 2 - self.mean) / self.std
        out, start = [], 0
        for end in VGG_SLICES:
            x = self.features[start:end](x)
            out.append(x)
            start = end
        return out

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        fx, fy = self._taps(x), self._taps(y)
        return sum(w * F.l1_loss(a.float(), b.detach().float()) for w, a, b in zip(VGG_WEIGHTS, fx, fy))
