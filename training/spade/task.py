"""SPADE training (NVlabs/SPADE `train.py`, the Cityscapes recipe by default).

One step, as in the reference: D learns on (labels, image) pairs, real -> real and G's output
(made under no_grad) -> fake; then G learns from the (frozen) D's verdict on a fresh fake, the
L1 distance of D's features on fake and real (feature matching), the VGG19 perceptual loss and,
with the VAE encoder, the KL term. Fake and real pass D in one batch (shared norm statistics).

Extension points (the SemDisc family subclasses `SPADEConfig` and `SPADETask`):
    build_discriminator(spec)              the D network (here the multiscale PatchGAN)
    discriminate(x, fake, real)            D's outputs on fake and on real, split apart
    d_losses(pred_fake, pred_real, batch)  D's loss terms
    g_gan_losses(pred_fake, pred_real, batch)  G's adversarial terms (GAN + feature matching)
    g_image_losses(fake, real, batch)      G's image terms (VGG)
Each loss method returns a dict of weighted terms; a step's "loss" is their sum.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from ...models.inputs import InputSpec
from ..core.config import TrainConfig
from ..core.losses import GANLoss, VGGLoss, feature_matching_loss, kld_loss
from ..core.task import Task
from .discriminators import MultiscaleDiscriminator
from .encoder import ConvEncoder, reparameterize
from .generators import NUM_UP, ASAPNetGenerator, Pix2PixHDGenerator, SPADEGenerator
from .normalization import fold_spectral_norm, init_weights

GENERATORS = {"spade": "spade.SPADEGenerator", "pix2pixhd": "spade.Pix2PixHDGenerator",
              "asapnet": "spade.ASAPNetGenerator"}
# each netG's own normalization and spectral norm (the reference's norm_G defaults)
NORM_G = {"spade": ("batch", True), "pix2pixhd": ("instance", False), "asapnet": ("instanceaffine", False)}


class SPADEConfig(TrainConfig):
    """Defaults reproduce NVlabs/SPADE's Cityscapes recipe (`--dataset_mode cityscapes`)."""

    netG: Literal["spade", "pix2pixhd", "asapnet"] = Field("spade", description="SemDisc's --netG choices")
    label_space: Literal["cityscapes_ids", "train_ids", "carla"] = "cityscapes_ids"
    label_nc: int = Field(35, ge=1, description="one-hot label channels (ids >= label_nc: all-zero or don't-care)")
    contain_dontcare_label: bool = Field(False, description="a channel for labels >= label_nc (e.g. 255)")
    instance_edges: bool = Field(True, description="an instance-boundary channel (needs the instance stream)")
    # generator
    ngf: int = Field(64, ge=1)
    spade_hidden: int = Field(128, ge=1, description="width of SPADE's shared conv (128 in the reference; the "
                              "generator's main cost at full resolution)")
    num_upsampling_layers: Literal["normal", "more", "most"] = Field("more", description="SPADE: 5, 6, 7 2x ups")
    norm_G: Literal["batch", "instance", "instanceaffine", "none"] | None = Field(
        None, description="None = the netG's own: spade batch (SPADE's param-free norm; SyncBatchNorm on several "
        "GPUs), pix2pixhd instance, asapnet instanceaffine")
    spectral_G: bool | None = Field(None, description="None = the netG's own: spade on, others off")
    use_vae: bool = Field(False, description="SPADE only: an image encoder gives the latent (multimodal)")
    z_dim: int = Field(256, ge=1)
    resnet_n_downsample: int = Field(4, ge=0, description="pix2pixhd")
    resnet_n_blocks: int = Field(9, ge=0, description="pix2pixhd")
    asap_downsampling: int = Field(16, ge=1, description="asapnet: tile size of the per-pixel MLPs")
    asap_learned_ds_factor: int = Field(16, ge=1, description="asapnet: downsampling learned by strided convs")
    asap_lr_width: int = Field(64, ge=1)
    asap_lr_max_width: int = Field(1024, ge=1)
    asap_lr_depth: int = Field(7, ge=0)
    asap_hr_width: int = Field(64, ge=1)
    asap_hr_depth: int = Field(5, ge=1)
    # discriminator
    ndf: int = Field(64, ge=1)
    num_D: int = Field(2, ge=1)
    n_layers_D: int = Field(4, ge=1)
    norm_D: Literal["instance", "batch", "none"] = "instance"
    spectral_D: bool = True
    # losses and optimizer
    gan_mode: Literal["hinge", "ls", "vanilla", "wgan"] = "hinge"
    lambda_feat: float = Field(10.0, ge=0, description="discriminator feature matching; 0 = off")
    lambda_vgg: float = Field(10.0, ge=0, description="VGG19 perceptual loss; 0 = off (no VGG weights needed)")
    lambda_kld: float = Field(0.05, ge=0)
    vgg_weights: str | None = Field(None, description="a torchvision vgg19 .pth; None = the torch hub cache")
    lr: float = Field(2e-4, gt=0)
    beta1: float = Field(0.0, ge=0, lt=1)
    beta2: float = Field(0.9, ge=0, lt=1)
    ttur: bool = Field(True, description="two time-scale update rule: G at lr/2, D at lr*2")
    init_gain: float = Field(0.02, gt=0, description="Xavier gain of the initial weights")

    @model_validator(mode="after")
    def _check(self):
        if self.use_vae and self.netG != "spade":
            raise ValueError(f"use_vae needs netG=spade (the {self.netG} generator takes no latent)")
        if self.netG == "spade" and self.norm_G not in (None, "batch", "instance"):
            raise ValueError(f"netG=spade takes norm_G batch or instance (SPADE's param-free norm), not {self.norm_G}")
        size = self.crop or self.size
        if self.use_vae and size is None:
            raise ValueError("use_vae needs a fixed image size (set size or crop)")
        step = {"spade": 2 ** NUM_UP[self.num_upsampling_layers], "pix2pixhd": 2 ** self.resnet_n_downsample,
                "asapnet": self.asap_downsampling}[self.netG]
        if size is not None and (size[0] % step or size[1] % step):
            raise ValueError(f"netG={self.netG} needs image sizes divisible by {step}, got {size[0]}x{size[1]}")
        return self

    def generator_norm(self) -> tuple[str, bool]:
        """(norm, spectral) of the generator: the explicit options, else the netG's own."""
        norm, spectral = NORM_G[self.netG]
        return (self.norm_G or norm), (spectral if self.spectral_G is None else self.spectral_G)


def build_generator(config: SPADEConfig, input_nc: int) -> nn.Module:
    """The `config.netG` generator for `input_nc` input channels, with its reference options."""
    c = config
    norm, spectral = c.generator_norm()
    if c.netG == "spade":
        latent = None
        if c.use_vae:
            h, w = c.crop or c.size
            latent = [h // 2 ** NUM_UP[c.num_upsampling_layers], w // 2 ** NUM_UP[c.num_upsampling_layers]]
        return SPADEGenerator(semantic_nc=input_nc, ngf=c.ngf, num_upsampling_layers=c.num_upsampling_layers,
                              norm=norm, spectral=spectral, use_vae=c.use_vae, z_dim=c.z_dim, latent_size=latent,
                              hidden=c.spade_hidden)
    if c.netG == "pix2pixhd":
        return Pix2PixHDGenerator(input_nc=input_nc, ngf=c.ngf, n_downsample=c.resnet_n_downsample,
                                  n_blocks=c.resnet_n_blocks, norm=norm, spectral=spectral)
    return ASAPNetGenerator(input_nc=input_nc, lr_instance=c.instance_edges, downsampling=c.asap_downsampling,
                            learned_ds_factor=c.asap_learned_ds_factor, lr_width=c.asap_lr_width,
                            lr_max_width=c.asap_lr_max_width, lr_depth=c.asap_lr_depth, hr_width=c.asap_hr_width,
                            hr_depth=c.asap_hr_depth, norm=norm, spectral=spectral)


class SPADETask(Task):
    family = "spade"
    Config = SPADEConfig

    def __init__(self, config: SPADEConfig):
        super().__init__(config)
        spec = self.input_spec(config)
        self.G = init_weights(build_generator(config, spec.channels), config.init_gain)
        self.D = self.build_discriminator(spec)
        self.E = init_weights(ConvEncoder(ngf=config.ngf, z_dim=config.z_dim), config.init_gain) \
            if config.use_vae else None
        self.gan = GANLoss(config.gan_mode)
        self.vgg = VGGLoss(config.vgg_weights) if config.lambda_vgg > 0 else None
        _sync_batchnorm_on_gpus(self)

    @classmethod
    def input_spec(cls, config: SPADEConfig) -> InputSpec:
        return InputSpec(kind="onehot", label_space=config.label_space, num_classes=config.label_nc,
                         dontcare=config.contain_dontcare_label, instance_edges=config.instance_edges)

    def build_discriminator(self, spec: InputSpec) -> nn.Module:
        """D for (labels, image) pairs: the multiscale PatchGAN with the config's options."""
        c = self.config
        return init_weights(MultiscaleDiscriminator(spec.channels + 3, ndf=c.ndf, n_layers=c.n_layers_D, num_D=c.num_D,
                                                    norm=c.norm_D, spectral=c.spectral_D), c.init_gain)

    def networks(self) -> dict[str, nn.Module]:
        nets = {"G": self.G, "D": self.D}
        if self.E is not None:
            nets["E"] = self.E
        return nets

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        g_lr, d_lr = (c.lr / 2, c.lr * 2) if c.ttur else (c.lr, c.lr)
        g_params = list(self.G.parameters()) + (list(self.E.parameters()) if self.E is not None else [])
        return {"d": torch.optim.Adam(self.D.parameters(), d_lr, betas=(c.beta1, c.beta2)),
                "g": torch.optim.Adam(g_params, g_lr, betas=(c.beta1, c.beta2))}

    # ----- the two phases ------------------------------------------------------------------------
    def d_step(self, batch: dict) -> dict[str, Tensor]:
        x, real = self.encode(batch), batch["image"]
        with torch.no_grad():
            fake, _ = self.generate_fake(x, real)
        pred_fake, pred_real = self.discriminate(x, fake, real)
        losses = self.d_losses(pred_fake, pred_real, batch)
        return {"loss": sum(losses.values()), **losses}

    def g_step(self, batch: dict) -> dict[str, Tensor]:
        x, real = self.encode(batch), batch["image"]
        fake, kld = self.generate_fake(x, real, with_kld=True)
        with _frozen(self.D):
            pred_fake, pred_real = self.discriminate(x, fake, real)
        losses = {} if kld is None else {"kld": self.config.lambda_kld * kld}
        losses.update(self.g_gan_losses(pred_fake, pred_real, batch))
        losses.update(self.g_image_losses(fake, real, batch))
        return {"loss": sum(losses.values()), **losses}

    # ----- overridable pieces -----------------------------------------------------------------------
    def generate_fake(self, x: Tensor, real: Tensor | None, with_kld: bool = False) -> tuple[Tensor, Tensor | None]:
        """G's image for input `x` (with the VAE: from the encoding of `real`), and the KL term."""
        z = kld = None
        if self.E is not None and real is not None:
            mu, logvar = self.E(real)
            z = reparameterize(mu, logvar)
            if with_kld:
                kld = kld_loss(mu, logvar)
        return self.G(x, z), kld

    def discriminate(self, x: Tensor, fake: Tensor, real: Tensor):
        """D on (x, fake) and (x, real) in one batch -> (pred_fake, pred_real)."""
        pred = self.D(torch.cat([torch.cat([x, fake], 1), torch.cat([x, real], 1)], 0))
        return split_batch(pred)

    def d_losses(self, pred_fake, pred_real, batch: dict) -> dict[str, Tensor]:
        return {"fake": self.gan(pred_fake, False), "real": self.gan(pred_real, True)}

    def g_gan_losses(self, pred_fake, pred_real, batch: dict) -> dict[str, Tensor]:
        losses = {"gan": self.gan(pred_fake, True, for_discriminator=False)}
        if self.config.lambda_feat > 0:
            losses["feat"] = self.config.lambda_feat * feature_matching_loss(pred_fake, pred_real)
        return losses

    def g_image_losses(self, fake: Tensor, real: Tensor, batch: dict) -> dict[str, Tensor]:
        if self.vgg is None:
            return {}
        return {"vgg": self.config.lambda_vgg * self.vgg(fake, real)}

    # ----- inference -----------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, batch: dict) -> Tensor:
        fake, _ = self.generate_fake(self.encode(batch), batch.get("image"))
        return fake

    def export(self) -> tuple[str, nn.Module, dict]:
        """The generator with spectral norm folded into its weights (a copy; training goes on)."""
        net = fold_spectral_norm(self.G).eval()
        size = self.config.crop or self.config.size
        meta = {"family": self.family, "input": self.input_spec(self.config).to_dict(), "netG": self.config.netG}
        if size is not None:
            meta["size"] = list(size)
        return GENERATORS[self.config.netG], net, meta


def split_batch(pred):
    """D's output on a fake-then-real batch -> (fake half, real half), nested lists kept."""
    if isinstance(pred, Tensor):
        half = pred.shape[0] // 2
        return pred[:half], pred[half:]
    halves = [split_batch(p) for p in pred]
    return [h[0] for h in halves], [h[1] for h in halves]


@contextlib.contextmanager
def _frozen(net: nn.Module):
    """`net`'s parameters take no gradient inside the block (G's phase through D)."""
    flags = [p.requires_grad for p in net.parameters()]
    net.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(net.parameters(), flags):
            p.requires_grad_(flag)


def _sync_batchnorm_on_gpus(task: nn.Module) -> None:
    """On several GPUs, batch norms share statistics across them (the reference's SyncBatchNorm)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1 and dist.get_backend() == "nccl":
        for name in ("G", "D", "E"):
            net = getattr(task, name)
            if net is not None:
                setattr(task, name, nn.SyncBatchNorm.convert_sync_batchnorm(net))
