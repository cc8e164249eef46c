"""SemDisc's semantically-aware discriminator (Saadatnejad et al., "A Shared Representation for
Photorealistic Driving Simulators", T-ITS 2021).

One multiscale PatchGAN trunk sees only the image and learns a shared representation; its last
convolution is split by channel into the heads:

    [ fine-grained real/fake, one map per label class | coarse real/fake | segmentation logits | RGB reconstruction ]

Module names follow vita-epfl/SemDisc's `MultiscaleDiscriminator` (`discriminator_<scale>.model<n>`); spectral
norm is torch's parametrization, as in the SPADE family, so its `latest_net_D.pth` loads after renaming the
`weight_orig/_u/_v` suffixes (see `convert.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import DrivesimError
from ..spade.normalization import CONV_NORMS, check_choice, conv_norm

REC_CHANNELS = 3


@dataclass
class SemDiscOutput:
    """What the discriminator says about a batch, one list entry per scale (finest first).

    `features[s]`: the trunk's intermediate maps at scale s, then the adversarial map
    `b (num_classes + 1) h' w'` last (the layout `core.losses.feature_matching_loss` reads).
    `segmentation[s]`: `b seg_classes h' w'` logits; `reconstruction[s]`: `b 3 h' w'`. Both are None
    when only the adversarial head ran.
    """

    features: list[list[Tensor]]
    segmentation: list[Tensor] | None = None
    reconstruction: list[Tensor] | None = None

    @property
    def adversarial(self) -> list[Tensor]:
        """`b (num_classes + 1) h' w'` per scale: the fine-grained maps, then the coarse one."""
        return [f[-1] for f in self.features]

    @property
    def fine(self) -> list[Tensor]:
        """`b num_classes h' w'` per scale: real/fake per label class."""
        return [a[:, :-1] for a in self.adversarial]

    @property
    def coarse(self) -> list[Tensor]:
        """`b 1 h' w'` per scale: real/fake for the whole patch."""
        return [a[:, -1:] for a in self.adversarial]

    def split(self, n: int) -> tuple[SemDiscOutput, SemDiscOutput]:
        """The first `n` samples of the batch and the rest (fake and real of one joint pass)."""
        return self._select(slice(None, n)), self._select(slice(n, None))

    def _select(self, rows: slice) -> SemDiscOutput:
        def pick(maps):
            return None if maps is None else [m[rows] for m in maps]

        return SemDiscOutput([pick(scale) for scale in self.features], pick(self.segmentation),
                             pick(self.reconstruction))


class _Trunk(nn.Module):
    """One scale: `n_layers` strided 4x4 convs (the shared representation), then the joint head conv."""

    def __init__(self, in_channels: int, out_channels: int, ndf: int, n_layers: int, norm: str, spectral: bool):
        super().__init__()
        nf = ndf
        self.model0 = nn.Sequential(nn.Conv2d(in_channels, nf, 4, stride=2, padding=2), nn.LeakyReLU(0.2))
        for n in range(1, n_layers):
            nf_prev, nf = nf, min(nf * 2, 512)
            stride = 1 if n == n_layers - 1 else 2
            conv = nn.Conv2d(nf_prev, nf, 4, stride=stride, padding=2)
            self.add_module(f"model{n}", nn.Sequential(conv_norm(conv, norm, spectral), nn.LeakyReLU(0.2)))
        self.add_module(f"model{n_layers}", nn.Sequential(nn.Conv2d(nf, out_channels, 4, stride=1, padding=2)))

    def forward(self, x: Tensor, out_channels: int | None = None) -> tuple[list[Tensor], Tensor]:
        """`b c h w` -> (intermediate maps, head map); `out_channels` keeps only the head's first channels."""
        *body, head = self.children()
        feats = []
        for block in body:
            x = block(x)
            feats.append(x)
        conv = head[0]
        if out_channels is None:
            return feats, conv(x)
        bias = None if conv.bias is None else conv.bias[:out_channels]
        return feats, F.conv2d(x, conv.weight[:out_channels], bias, stride=conv.stride, padding=conv.padding)


class SemDiscDiscriminator(nn.Module):
    """Multiscale SemDisc discriminator on RGB images `b 3 h w` in [-1, 1].

    `num_classes`: fine-grained real/fake maps, one per generator label channel (the reference:
    35 Cityscapes label ids); `seg_classes`: segmentation logits (the reference: 19 Cityscapes
    train ids); `ndf`, `n_layers`, `num_D`, `norm`, `spectral`: as SPADE's `MultiscaleDiscriminator`
    (the reference's `--ndf`, `--n_layers_D`, `--num_D`, `--norm_D spectralinstance`).
    """

    def __init__(self, num_classes: int = 35, seg_classes: int = 19, input_nc: int = 3, ndf: int = 64,
                 n_layers: int = 4, num_D: int = 2, norm: str = "instance", spectral: bool = True):
        super().__init__()
        check_choice(norm, CONV_NORMS, "discriminator normalization")
        if min(num_classes, seg_classes, input_nc, ndf, n_layers, num_D) < 1:
            raise DrivesimError("SemDiscDiscriminator sizes must all be >= 1; check num_classes, seg_classes, "
                                "ndf, n_layers and num_D")
        self.config = dict(num_classes=num_classes, seg_classes=seg_classes, input_nc=input_nc, ndf=ndf,
                           n_layers=n_layers, num_D=num_D, norm=norm, spectral=spectral)
        self.num_classes, self.seg_classes = num_classes, seg_classes
        out_channels = self.adversarial_channels + seg_classes + REC_CHANNELS
        for i in range(num_D):
            self.add_module(f"discriminator_{i}", _Trunk(input_nc, out_channels, ndf, n_layers, norm, spectral))

    @property
    def adversarial_channels(self) -> int:
        return self.num_classes + 1

    def forward(self, image: Tensor, *, adversarial_only: bool = False) -> SemDiscOutput:
        """`b 3 h w` -> every head at every scale; `adversarial_only` computes the fine and coarse maps only."""
        features, seg, rec = [], [], []
        keep = self.adversarial_channels if adversarial_only else None
        for i, trunk in enumerate(self.children()):
            if i:
                image = F.avg_pool2d(image, kernel_size=3, stride=2, padding=1, count_include_pad=False)
            feats, head = trunk(image, keep)
            a, s = self.adversarial_channels, self.adversarial_channels + self.seg_classes
            features.append([*feats, head[:, :a]])
            seg.append(head[:, a:s])
            rec.append(head[:, s:])
        if adversarial_only:
            return SemDiscOutput(features)
        return SemDiscOutput(features, seg, rec)
