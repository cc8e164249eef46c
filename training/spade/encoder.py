"""SPADE's image encoder for the VAE mode (NVlabs/SPADE `ConvEncoder`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .normalization import conv_norm


class ConvEncoder(nn.Module):
    """An image `b 3 h w` in [-1, 1] -> (mu, logvar), each `b z_dim`: the image resized to
    256x256 (bilinear), six stride-2 3x3 convs (widths ngf, 2, 4, 8, 8, 8 x ngf) with leaky ReLU,
    then two linear heads on the 4x4 grid."""

    def __init__(self, ngf: int = 64, z_dim: int = 256, norm: str = "instance", spectral: bool = True):
        super().__init__()
        self.config = dict(ngf=ngf, z_dim=z_dim, norm=norm, spectral=spectral)
        widths = [3, ngf, 2 * ngf, 4 * ngf, 8 * ngf, 8 * ngf, 8 * ngf]
        for i in range(6):
            conv = nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1)
            self.add_module(f"layer{i + 1}", conv_norm(conv, norm, spectral))
        self.fc_mu = nn.Linear(8 * ngf * 4 * 4, z_dim)
        self.fc_var = nn.Linear(8 * ngf * 4 * 4, z_dim)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        x = image
        if x.shape[-2:] != (256, 256):
            x = F.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False)
        x = self.layer1(x)
        for i in range(2, 7):
            x = getattr(self, f"layer{i}")(F.leaky_relu(x, 0.2))
        x = F.leaky_relu(x, 0.2).flatten(1)
        return self.fc_mu(x), self.fc_var(x)


def reparameterize(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """z = mu + eps * exp(logvar / 2), eps ~ N(0, 1)."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + eps * torch.exp(0.5 * logvar)
