"""CycleGAN's ResNet generator (Johnson et al.'s transformation network), as in
junyanz/pytorch-CycleGAN-and-pix2pix and the unsupervised Recycle-GAN built on it.

State-dict names and shapes are the reference's, so its `latest_net_G_A.pth` files load with no
renaming: one flat `model` Sequential of [pad 0, conv 1, norm 2, relu 3], two stride-2
downsamplings (conv, norm, relu at 4-6 and 7-9), `n_blocks` residual blocks at 10.. (each a
`conv_block` Sequential), two transposed-conv upsamplings, then [pad, conv, tanh]. As there,
convolutions carry a bias only with instance norm, and the last convolution always has one.
The discriminator is pix2pix's PatchGAN (`training.pix2pix.networks.NLayerDiscriminator`).
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from ...errors import DrivesimError
from ..pix2pix.networks import NORMS, norm_layer

PADDINGS = ("reflect", "replicate", "zero")
DOWNSAMPLINGS = 2  # the reference's n_downsampling; h and w must be multiples of 2**2


def _pad(padding_type: str, width: int) -> tuple[list[nn.Module], int]:
    """(padding layers before a convolution, the convolution's own zero padding)."""
    if padding_type == "reflect":
        return [nn.ReflectionPad2d(width)], 0
    if padding_type == "replicate":
        return [nn.ReplicationPad2d(width)], 0
    if padding_type == "zero":
        return [], width
    raise ValueError(f"unknown padding_type '{padding_type}'; valid: {', '.join(PADDINGS)}")


class ResnetBlock(nn.Module):
    """`b dim h w` -> `b dim h w`: x + (pad, conv3, norm, relu, [dropout 0.5], pad, conv3, norm)(x)."""

    def __init__(self, dim: int, padding_type: str, norm: str, use_dropout: bool, use_bias: bool):
        super().__init__()
        layers: list[nn.Module] = []
        for second in (False, True):
            pad, p = _pad(padding_type, 1)
            layers += [*pad, nn.Conv2d(dim, dim, 3, padding=p, bias=use_bias), norm_layer(norm, dim)]
            if not second:
                layers.append(nn.ReLU(True))
                if use_dropout:
                    layers.append(nn.Dropout(0.5))
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """`b input_nc h w` -> `b output_nc h w` in [-1, 1]; h and w multiples of 4.

    `n_blocks` 9 is the reference's `resnet_9blocks` (CycleGAN's default), 6 `resnet_6blocks`
    (the unsupervised Recycle-GAN's). Widths ngf, 2 ngf, then 4 ngf through the blocks.
    """

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, n_blocks: int = 9,
                 norm: Literal["instance", "batch"] = "instance", use_dropout: bool = False,
                 padding_type: Literal["reflect", "replicate", "zero"] = "reflect"):
        super().__init__()
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
        if norm not in NORMS:
            raise ValueError(f"unknown norm '{norm}'; valid: {', '.join(NORMS)}")
        _pad(padding_type, 1)  # validates it
        self.config = dict(input_nc=input_nc, output_nc=output_nc, ngf=ngf, n_blocks=n_blocks, norm=norm,
                           use_dropout=use_dropout, padding_type=padding_type)
        bias = norm == "instance"
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=bias),
                                   norm_layer(norm, ngf), nn.ReLU(True)]
        for i in range(DOWNSAMPLINGS):
            c = ngf * 2**i
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=bias), norm_layer(norm, 2 * c), nn.ReLU(True)]
        width = ngf * 2**DOWNSAMPLINGS
        layers += [ResnetBlock(width, padding_type, norm, use_dropout, bias) for _ in range(n_blocks)]
        for i in range(DOWNSAMPLINGS):
            c = ngf * 2 ** (DOWNSAMPLINGS - i)
            layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                       norm_layer(norm, c // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """`b input_nc h w` -> `b output_nc h w`."""
        step = 2**DOWNSAMPLINGS
        if x.shape[-2] % step or x.shape[-1] % step:
            raise DrivesimError(f"the ResNet generator takes h and w that are multiples of {step}, got "
                                f"{tuple(x.shape[-2:])}; resize or crop the input")
        return self.model(x)
