"""The multiscale PatchGAN discriminator of pix2pixHD and SPADE (NVlabs/SPADE `--netD multiscale`)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .normalization import conv_norm


class NLayerDiscriminator(nn.Module):
    """PatchGAN: 4x4 convs, stride 2 but the last two, width doubling up to 512; the first and the
    last conv without norm. `b input_nc h w` -> [features..., prediction `b 1 h' w'`], one entry
    per layer (`model0` ... `model{n_layers}`)."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 4, norm: str = "instance", spectral: bool = True):
        super().__init__()
        self.n_layers = n_layers
        pad = 2  # ceil((4 - 1) / 2)
        self.model0 = nn.Sequential(nn.Conv2d(input_nc, ndf, 4, stride=2, padding=pad), nn.LeakyReLU(0.2))
        width = ndf
        for n in range(1, n_layers):
            prev, width = width, min(2 * width, 512)
            stride = 1 if n == n_layers - 1 else 2
            conv = nn.Conv2d(prev, width, 4, stride=stride, padding=pad)
            self.add_module(f"model{n}", nn.Sequential(conv_norm(conv, norm, spectral), nn.LeakyReLU(0.2)))
        self.add_module(f"model{n_layers}", nn.Sequential(nn.Conv2d(width, 1, 4, stride=1, padding=pad)))

    def forward(self, x: Tensor) -> list[Tensor]:
        out = []
        for n in range(self.n_layers + 1):
            x = getattr(self, f"model{n}")(x)
            out.append(x)
        return out


class MultiscaleDiscriminator(nn.Module):
    """`num_D` PatchGANs on the input at full, 1/2, 1/4 ... resolution (3x3 average pooling).

    `b input_nc h w` -> a list over scales of [intermediate features..., prediction], the
    format `core.losses.GANLoss` and `feature_matching_loss` take.
    """

    def __init__(self, input_nc: int = 39, ndf: int = 64, n_layers: int = 4, num_D: int = 2, norm: str = "instance",
                 spectral: bool = True):
        super().__init__()
        self.config = dict(input_nc=input_nc, ndf=ndf, n_layers=n_layers, num_D=num_D, norm=norm, spectral=spectral)
        self.num_D = num_D
        for i in range(num_D):
            self.add_module(f"discriminator_{i}", NLayerDiscriminator(input_nc, ndf, n_layers, norm, spectral))

    def forward(self, x: Tensor) -> list[list[Tensor]]:
        result = []
        for i in range(self.num_D):
            if i:
                x = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)
            result.append(getattr(self, f"discriminator_{i}")(x))
        return result
