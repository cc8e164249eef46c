"""pix2pix training: a U-Net maps label colours to photos against a conditional PatchGAN.

The recipe is the reference's (junyanz/pytorch-CycleGAN-and-pix2pix, `--model pix2pix`): Adam
2e-4 with betas (0.5, 0.999), the vanilla (BCE) GAN loss, L1 weighted 100, `unet_256` (8
downsamplings), batch norm, dropout in the generator, 100 epochs at a constant rate then 100
decaying to 0, no image pool, random jitter (resize 256 -> 286, random crop back; here at 1:2).
Added: pix2pixHD's VGG19 perceptual loss (weight 10; `--set lambda_vgg=0` turns it off).

One step, as in the reference: G runs once (in `d_step`); D learns on the detached fake, then G
learns against the updated D from that same fake (`g_step`).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from ...models.inputs import InputSpec
from ..core.config import TrainConfig
from ..core.losses import GANLoss, VGGLoss
from ..core.task import Task
from .networks import NLayerDiscriminator, UnetGenerator, init_weights


class Pix2PixConfig(TrainConfig):
    """Defaults reproduce the reference's `--model pix2pix` training options."""

    lr: float = Field(2e-4, gt=0)
    beta1: float = Field(0.5, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    gan_mode: Literal["vanilla", "ls", "hinge", "wgan"] = "vanilla"
    lambda_L1: float = Field(100.0, ge=0)
    lambda_vgg: float = Field(10.0, ge=0, description="VGG19 perceptual loss (pix2pixHD's weight); 0 = off")
    num_downs: int = Field(8, ge=5, description="U-Net downsamplings: 8 = the reference's unet_256, 7 = unet_128; "
                           "h and w must be multiples of 2**num_downs")
    ngf: int = Field(64, ge=1)
    ndf: int = Field(64, ge=1)
    n_layers_D: int = Field(3, ge=1)
    norm: Literal["batch", "instance"] = "batch"
    dropout: bool = True
    init_gain: float = Field(0.02, gt=0, description="std of the N(0, gain) initial conv weights")
    # the reference's random jitter (resize 256 -> 286, random crop back), at the recordings' 1:2 aspect
    size: tuple[int, int] | None = Field((286, 572), description="resize (h, w) before cropping")
    crop: tuple[int, int] | None = Field((256, 512), description="random crop (h, w); multiples of 2**num_downs")
    label_space: Literal["color", "carla_color"] = Field("color", description="Cityscapes colours of label ids, "
                                                         "or CARLA's palette of its tags")


class Pix2PixTask(Task):
    family = "pix2pix"
    Config = Pix2PixConfig

    def __init__(self, config: Pix2PixConfig):
        super().__init__(config)
        spec = self.input_spec(config)
        self.G = init_weights(UnetGenerator(spec.channels, 3, config.num_downs, config.ngf, config.norm,
                                            config.dropout), config.init_gain)
        self.D = init_weights(NLayerDiscriminator(spec.channels + 3, config.ndf, config.n_layers_D, config.norm),
                              config.init_gain)
        self.gan = GANLoss(config.gan_mode)
        self.vgg = VGGLoss() if config.lambda_vgg > 0 else None
        self._fake: tuple[Tensor, Tensor, Tensor] | None = None  # (label, input, G(input)) of this step

    @classmethod
    def input_spec(cls, config: Pix2PixConfig) -> InputSpec:
        return InputSpec(kind="color", label_space=config.label_space)

    def networks(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        return {"d": torch.optim.Adam(self.D.parameters(), c.lr, betas=(c.beta1, c.beta2)),
                "g": torch.optim.Adam(self.G.parameters(), c.lr, betas=(c.beta1, c.beta2))}

    def d_step(self, batch: dict) -> dict[str, Tensor]:
        """Run G once for the step; D: real pairs -> 1, (input, detached fake) pairs -> 0."""
        x = self.encode(batch)
        fake = self.G(x)
        self._fake = (batch["label"], x, fake)
        real = self.gan(self.D(torch.cat([x, batch["image"]], 1)), True)
        fake_loss = self.gan(self.D(torch.cat([x, fake.detach()], 1)), False)
        return {"loss": 0.5 * (real + fake_loss), "real": real, "fake": fake_loss}

    def g_step(self, batch: dict) -> dict[str, Tensor]:
        """G: fool the (frozen) D, match the photo in L1 and, when on, in VGG features."""
        x, fake = self._step_fake(batch)
        self.D.requires_grad_(False)
        try:
            gan = self.gan(self.D(torch.cat([x, fake], 1)), True, for_discriminator=False)
        finally:
            self.D.requires_grad_(True)
        l1 = F.l1_loss(fake.float(), batch["image"].float())
        losses = {"gan": gan, "l1": l1}
        total = gan + self.config.lambda_L1 * l1
        if self.vgg is not None:
            losses["vgg"] = self.vgg(fake, batch["image"])
            total = total + self.config.lambda_vgg * losses["vgg"]
        return {"loss": total, **losses}

    def _step_fake(self, batch: dict) -> tuple[Tensor, Tensor]:
        """The (input, fake) of this step's `d_step`, or a fresh G forward when there was none."""
        cached, self._fake = self._fake, None
        if cached is not None and cached[0] is batch["label"]:
            return cached[1], cached[2]
        x = self.encode(batch)
        return x, self.G(x)

    @torch.no_grad()
    def generate(self, batch: dict) -> Tensor:
        return self.G(self.encode(batch))

    def export(self) -> tuple[str, nn.Module, dict]:
        return "pix2pix.UnetGenerator", self.G, {"family": self.family,
                                                 "input": self.input_spec(self.config).to_dict()}
