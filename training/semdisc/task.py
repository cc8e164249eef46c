"""SemDisc training: a SPADE-family generator against the semantically-aware discriminator.

The recipe is vita-epfl/SemDisc's README (`--c2f_sem_rec --normalize_smaps --lambda_seg 1 --lambda_rec 1
--lambda_GAN 35 --lambda_feat 10 --lambda_vgg 10 --fine_grained_scale 0.05`, 256x256 crops, 100 epochs then
100 more with `--active_GSeg` while the learning rate decays to 0). D sees the image alone and learns, in every
stage, real/fake per label class and per patch (class-weighted hinge), the segmentation of real images into
Cityscapes train ids and their reconstruction. G learns from the adversarial head and feature matching
(stage 1); from `finetune_start` on (stage 2) also from D's segmentation of its image (as the input labels)
and D's reconstruction of it (as the real image).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from ...errors import DrivesimError
from ...models.inputs import InputSpec, encode_input
from ..spade.normalization import init_weights
from ..spade.task import SPADEConfig, SPADETask
from .discriminator import SemDiscDiscriminator, SemDiscOutput
from .losses import SemDiscLoss, segmentation_targets, train_id_lut

log = logging.getLogger(__name__)

SEG_CLASSES = 19  # the segmentation head predicts Cityscapes train ids, as in the reference


class SemDiscConfig(SPADEConfig):
    """SPADE's options plus SemDisc's; defaults reproduce the SemDisc README's Cityscapes runs."""

    size: tuple[int, int] | None = Field((256, 256), description="the README trains on 256x256 (aspect ratio 1)")
    gan_mode: Literal["hinge", "ls"] = Field("hinge", description="weighted per class: hinge or least squares")
    lambda_gan: float = Field(35.0, ge=0, description="adversarial terms of D and G (--lambda_GAN)")
    lambda_seg: float = Field(1.0, ge=0, description="segmentation head: D on real, G (stage 2) on fake")
    lambda_rec: float = Field(1.0, ge=0, description="reconstruction head: D on real, G (stage 2) on fake")
    normalize_smaps: bool = Field(True, description="every present class weighs the same in the fine-grained loss")
    fine_grained_scale: float = Field(0.05, ge=0, description="weight of the fine-grained maps (with normalize_smaps)")
    finetune_start: float = Field(0.5, ge=0, le=1, description="fraction of the steps after which G is also guided "
                                  "by D's segmentation and reconstruction (the README: 100 of 200 epochs)")
    finetune_step: int | None = Field(None, ge=0, description="the step of that switch; overrides finetune_start")


class SemDiscTask(SPADETask):
    family = "semdisc"
    Config = SemDiscConfig

    def __init__(self, config: SemDiscConfig):
        super().__init__(config)
        c = config
        self.semdisc = SemDiscLoss(gan_mode=c.gan_mode, lambda_gan=c.lambda_gan, lambda_seg=c.lambda_seg,
                                   lambda_rec=c.lambda_rec, lambda_feat=c.lambda_feat,
                                   normalize_smaps=c.normalize_smaps, fine_grained_scale=c.fine_grained_scale)
        self.register_buffer("train_ids", train_id_lut(c.label_space), persistent=False)
        self.total_steps: int | None = c.steps  # the trainer's run length, when it tells us
        self.guided = False

    def build_discriminator(self, spec: InputSpec) -> nn.Module:
        """D on the image alone; one fine-grained map per one-hot label channel (don't-care included)."""
        c = self.config
        net = SemDiscDiscriminator(num_classes=spec.num_classes + int(spec.dontcare), seg_classes=SEG_CLASSES,
                                   ndf=c.ndf, n_layers=c.n_layers_D, num_D=c.num_D, norm=c.norm_D,
                                   spectral=c.spectral_D)
        return init_weights(net, c.init_gain)

    # ----- the stage switch ------------------------------------------------------------------------
    def finetune_from(self) -> int:
        """The first step of stage 2."""
        c = self.config
        if c.finetune_step is not None:
            return c.finetune_step
        if self.total_steps is None:
            raise DrivesimError("semdisc switches stages at finetune_start of the run, whose length is unknown here; "
                                "set steps=N or finetune_step=N")
        return round(c.finetune_start * self.total_steps)

    def set_step(self, step: int) -> None:
        super().set_step(step)
        guided = step >= self.finetune_from()
        if guided and not self.guided:
            log.info("semdisc: stage 2 from step %d, G guided by D's segmentation and reconstruction", step)
        self.guided = guided

    # ----- the pieces SPADETask's d_step and g_step call -------------------------------------------------
    def discriminate(self, x: Tensor, fake: Tensor, real: Tensor) -> tuple[SemDiscOutput, SemDiscOutput]:
        """D on fake and real images in one batch (the labels stay out of D) -> (on fake, on real)."""
        return self.D(torch.cat([fake, real], 0)).split(len(fake))

    def d_losses(self, pred_fake: SemDiscOutput, pred_real: SemDiscOutput, batch: dict) -> dict[str, Tensor]:
        weights, target = self._weights_and_target(pred_fake, batch)
        return self.semdisc.discriminator(pred_fake, pred_real, weights, target, batch["image"])

    def g_gan_losses(self, pred_fake: SemDiscOutput, pred_real: SemDiscOutput, batch: dict) -> dict[str, Tensor]:
        weights, target = self._weights_and_target(pred_fake, batch)
        return self.semdisc.generator(pred_fake, pred_real, weights, target, batch["image"], guided=self.guided)

    def _weights_and_target(self, out: SemDiscOutput, batch: dict) -> tuple[list[Tensor], Tensor]:
        """Per-scale class weights of the adversarial maps, and the train-id targets `b h w`."""
        spec = dataclasses.replace(self.input_spec(self.config), instance_edges=False)
        onehot = encode_input(batch["label"], spec)
        return self.semdisc.weights(onehot, out), segmentation_targets(batch["label"], self.train_ids)
