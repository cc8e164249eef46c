"""pix2pix networks: the U-Net generator with skip connections and the PatchGAN discriminator.

State-dict names and shapes are those of junyanz/pytorch-CycleGAN-and-pix2pix (`netG`:
`model.model.0.weight`, `model.model.1.model.1.weight`, ... one nested `model` per U-Net level;
`netD`: `model.0.weight`, ...), so that project's checkpoints load with no renaming. As there,
convolutions carry a bias only with instance norm (batch norm has its own shift), the outermost
down-convolution and the innermost level have no norm, and dropout (p 0.5) sits only in the
levels at the full `8 * ngf` width between the innermost level and the four outer ones.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from ...errors import DrivesimError

Norm = Literal["batch", "instance"]
NORMS = ("batch", "instance")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """BatchNorm with affine parameters and running statistics, or InstanceNorm with neither."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    raise ValueError(f"unknown norm '{kind}'; valid: {', '.join(NORMS)}")


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """The reference initialization: conv weights ~ N(0, gain), norm scales ~ N(1, gain), biases 0."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return net


class UnetLevel(nn.Module):
    """One U-Net level: a stride-2 conv down, the deeper levels, a stride-2 transposed conv up.

    `b outer h w` -> `b 2*outer h w`: LeakyReLU(input) concatenated with the level's output (the
    skip carries the activated input, as the reference's in-place LeakyReLU makes it do), except
    the outermost level: `b in h w` -> `b outer h w` through tanh. Layers sit in `self.model` at
    the reference's indices (outermost: down 0, inner 1, up 3; middle: LeakyReLU 0, down 1,
    norm 2, inner 3, up 5, norm 6; innermost: LeakyReLU 0, down 1, up 3, norm 4).
    """

    def __init__(self, outer: int, inner: int, *, in_channels: int | None = None, sub: nn.Module | None = None,
                 norm: str = "batch", dropout: bool = False, outermost: bool = False):
        super().__init__()
        self.outermost = outermost
        bias = norm == "instance"
        down = nn.Conv2d(in_channels or outer, inner, 4, stride=2, padding=1, bias=bias)
        up_in = inner if sub is None else 2 * inner
        if outermost:
            layers = [down, sub, nn.ReLU(True), nn.ConvTranspose2d(up_in, outer, 4, stride=2, padding=1), nn.Tanh()]
        else:
            up = [nn.ReLU(True), nn.ConvTranspose2d(up_in, outer, 4, stride=2, padding=1, bias=bias),
                  norm_layer(norm, outer)]
            if sub is None:  # innermost: no norm at the 1x1 bottleneck
                layers = [nn.LeakyReLU(0.2), down, *up]
            else:
                layers = [nn.LeakyReLU(0.2), down, norm_layer(norm, inner), sub, *up]
                if dropout:
                    layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if self.outermost:
            return self.model(x)
        skip = self.model[0](x)
        return torch.cat([skip, self.model[1:](skip)], 1)


class UnetGenerator(nn.Module):
    """pix2pix's U-Net: `b input_nc h w` -> `b output_nc h w` in [-1, 1].

    `num_downs` halvings (8 = the reference's `unet_256`, 7 = `unet_128`); h and w must be
    multiples of `2**num_downs`. Widths: ngf, 2, 4, then 8 * ngf for every deeper level.
    """

    def __init__(self, input_nc: int = 3, output_nc: int = 3, num_downs: int = 8, ngf: int = 64,
                 norm: Norm = "batch", use_dropout: bool = True):
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"num_downs must be at least 5 (the four outer levels and the innermost), got {num_downs}")
        if norm not in NORMS:
            raise ValueError(f"unknown norm '{norm}'; valid: {', '.join(NORMS)}")
        self.config = dict(input_nc=input_nc, output_nc=output_nc, num_downs=num_downs, ngf=ngf, norm=norm,
                           use_dropout=use_dropout)
        self.num_downs = num_downs
        level = UnetLevel(8 * ngf, 8 * ngf, norm=norm)
        for _ in range(num_downs - 5):
            level = UnetLevel(8 * ngf, 8 * ngf, sub=level, norm=norm, dropout=use_dropout)
        for mult in (4, 2, 1):
            level = UnetLevel(mult * ngf, 2 * mult * ngf, sub=level, norm=norm)
        self.model = UnetLevel(output_nc, ngf, in_channels=input_nc, sub=level, norm=norm, outermost=True)

    def forward(self, x: Tensor) -> Tensor:
        """`b input_nc h w` -> `b output_nc h w`."""
        step = 2 ** self.num_downs
        if x.shape[-2] % step or x.shape[-1] % step:
            raise DrivesimError(f"a U-Net with {self.num_downs} downsamplings takes h and w that are multiples of "
                                f"{step}, got {tuple(x.shape[-2:])}; resize or crop the input")
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """The PatchGAN: `b input_nc h w` -> `b 1 h' w'` logits, one per overlapping patch
    (70x70 with `n_layers=3`). pix2pix's is conditional: input_nc = label + image channels."""

    def __init__(self, input_nc: int = 6, ndf: int = 64, n_layers: int = 3, norm: Norm = "batch"):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be at least 1, got {n_layers}")
        if norm not in NORMS:
            raise ValueError(f"unknown norm '{norm}'; valid: {', '.join(NORMS)}")
        self.config = dict(input_nc=input_nc, ndf=ndf, n_layers=n_layers, norm=norm)
        bias = norm == "instance"
        widths = [ndf * min(2**n, 8) for n in range(n_layers + 1)]
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        for n in range(1, n_layers + 1):
            stride = 2 if n < n_layers else 1  # the last widening conv keeps the resolution
            layers += [nn.Conv2d(widths[n - 1], widths[n], 4, stride=stride, padding=1, bias=bias),
                       norm_layer(norm, widths[n]), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(widths[-1], 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """`b input_nc h w` -> `b 1 h' w'` (h' = h/8 - 2 for n_layers 3)."""
        return self.model(x)
