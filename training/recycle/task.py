"""CycleGAN and the unsupervised Recycle-GAN: unpaired translation of domain A (`--data`) into
domain B (`--target`).

CycleGAN (junyanz/pytorch-CycleGAN-and-pix2pix, `models/cycle_gan_model.py`): generators
G_A: A -> B and G_B: B -> A (ResNet), PatchGAN discriminators D_A (B vs G_A(A)) and D_B (A vs
G_B(B)), least-squares GAN losses, cycle losses lambda_A |G_B(G_A(A)) - A| and lambda_B
|G_A(G_B(B)) - B|, identity losses lambda_identity * (lambda_B |G_A(B) - B| + lambda_A |G_B(A) - A|),
and an image pool of 50 past fakes per discriminator.

Unsupervised Recycle-GAN (wangkaihong/Unsup_Recycle_GAN, `models/unsup_model_single.py`, Wang et
al., AAAI 2022) adds pseudo-supervision from synthetic optical flow W (`flow.synthetic_pair`: warp
plus noise) on single frames:
- unsupervised spatial loss: |G_A(W(A)) - W(G_A(A))| (and for B with G_B): translating a moved
  frame must equal moving the translation;
- unsupervised recycle loss: |G_B(W(G_A(A))) - W(A)| (and for B): the moved translation maps back
  to the moved input;
- content loss: MSE between instance-normalised VGG features of G_A(A) and A (and for B);
each with its own (A, B) weights. The plain cycle and identity losses stay, weighted by
`lambda_cycle` and `lambda_identity` (unscaled, as that code weighs them).

One step, as both references: G_A and G_B learn first (D_A and D_B frozen), then D_A and D_B
learn from the same step's fakes, passed through their pools (one Adam over both generators,
one over both discriminators). Every loss returned is already weighted; `loss` is their sum.
The pools are not checkpointed (the references do not save them either): a resumed run refills
them, so `--resume` continues bit-for-bit only with `pool_size=0` (Recycle-GAN's default).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BeforeValidator, Field, model_validator
from torch import Tensor, nn
from torch.utils.data import Dataset

from ...errors import DrivesimError
from ...models.inputs import InputSpec
from ..core.config import TrainConfig
from ..core.data import Sources, split_tail
from ..core.losses import GANLoss, vgg19_features
from ..core.task import Task
from ..pix2pix.networks import NLayerDiscriminator, init_weights
from .flow import synthetic_pair, warp
from .networks import DOWNSAMPLINGS, ResnetGenerator

log = logging.getLogger(__name__)

RGB = InputSpec(kind="rgb", label_space="rgb")
NETWORK = "cyclegan.ResnetGenerator"


def _pair(value):
    """A scalar weight means the same for A and B."""
    return (value, value) if isinstance(value, (int, float)) else value


Pair = Annotated[tuple[float, float], BeforeValidator(_pair)]


# ----- configs --------------------------------------------------------------------------------------
class CycleGANConfig(TrainConfig):
    """Defaults reproduce the reference's `--model cycle_gan` training options (options/train_options.py,
    options/base_options.py, models/cycle_gan_model.py)."""

    lr: float = Field(2e-4, gt=0)
    beta1: float = Field(0.5, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    gan_mode: Literal["ls", "vanilla", "hinge", "wgan"] = Field("ls", description="ls = the reference's lsgan")
    lambda_A: float = Field(10.0, ge=0, description="cycle loss A -> B -> A")
    lambda_B: float = Field(10.0, ge=0, description="cycle loss B -> A -> B")
    lambda_identity: float = Field(0.5, ge=0, description="identity loss, times lambda_B (G_A) and lambda_A (G_B)")
    pool_size: int = Field(50, ge=0, description="past fakes each discriminator also sees; 0 = none")
    ngf: int = Field(64, ge=1)
    ndf: int = Field(64, ge=1)
    n_blocks: int = Field(9, ge=0, description="ResNet blocks: 9 = resnet_9blocks, 6 = resnet_6blocks")
    n_layers_D: int = Field(3, ge=1)
    norm: Literal["instance", "batch"] = "instance"
    dropout: bool = Field(False, description="dropout in the ResNet blocks (the reference's --no_dropout is on)")
    init_gain: float = Field(0.02, gt=0, description="std of the N(0, gain) initial conv weights")
    target_camera: str | None = Field(None, description="camera of --target sessions [default: their first]")
    # load 286 -> random crop 256, flips; here at the recordings' 1:2 aspect
    size: tuple[int, int] | None = Field((286, 572), description="resize (h, w) before cropping")
    crop: tuple[int, int] | None = Field((256, 512), description="random crop (h, w); multiples of 4")
    flip: bool = True

    @model_validator(mode="after")
    def _check_size(self):
        size, step = self.crop or self.size, 2**DOWNSAMPLINGS
        if size is not None and (size[0] % step or size[1] % step):
            raise ValueError(f"the ResNet generator needs image sizes divisible by {step}, got {size[0]}x{size[1]}; "
                             "change crop (or size when crop is none)")
        return self


class RecycleConfig(CycleGANConfig):
    """Defaults: the Viper -> Cityscapes video-to-video command of the reference's README and `script`
    (resnet_6blocks, no dropout, pool 0, lambda_spa_unsup 10, lambda_unsup_cycle 10, lambda_cycle 0,
    lambda_content 1, noise_level 0.001, load 286x542 -> crop 256x512, 2 epochs at a constant rate);
    the flow shapes are options/train_options.py's defaults (motion 8, shift 10, scale 0). Weights
    are (A, B) pairs; one number sets both (`--set lambda_cycle=10`)."""

    lambda_spa_unsup: Pair = Field((10.0, 10.0), description="unsupervised spatial loss (A, B)")
    lambda_unsup_cycle: Pair = Field((10.0, 10.0), description="unsupervised recycle loss (A, B)")
    lambda_cycle: Pair = Field((0.0, 0.0), description="plain cycle loss (A, B); CycleGAN's lambda_A/B")
    lambda_content: Pair = Field((1.0, 1.0), description="VGG content loss (A, B); 0 needs no VGG19 weights")
    lambda_identity: float = Field(0.0, ge=0, description="identity loss, unscaled (the reference's weighting)")
    noise_level: float = Field(0.001, ge=0, description="std of the noise added to a warped frame (x 1..2)")
    motion_level: float = Field(8.0, ge=0, description="std (pixels) of the random flow, one value per 100 px")
    shift_level: int = Field(10, ge=0, description="random global shift (pixels) of the flow, each axis")
    scale_level: float = Field(0.0, ge=0, description="> 0: a random zoom flow instead (up to 3 * this pixels)")
    vgg_weights: str | None = Field(None, description="a torchvision vgg19 .pth; None = the torch hub cache")
    lambda_A: float = Field(10.0, exclude=True, description="CycleGAN's; unused here (lambda_cycle)")
    lambda_B: float = Field(10.0, exclude=True, description="CycleGAN's; unused here (lambda_cycle)")
    n_blocks: int = Field(6, ge=0, description="ResNet blocks: 6 = resnet_6blocks (the reference's), 9")
    pool_size: int = Field(0, ge=0, description="past fakes each discriminator also sees; 0 = none")
    epochs: float = Field(2, gt=0)
    lr_decay_start: float = Field(1.0, ge=0, le=1, description="1 = constant (the reference's --niter_decay 0)")
    size: tuple[int, int] | None = Field((286, 542), description="resize (h, w) before cropping")
    flip: bool = False

    @model_validator(mode="after")
    def _check_weights(self):
        stray = {"lambda_A", "lambda_B"} & self.model_fields_set
        if stray:
            raise ValueError(f"{' and '.join(sorted(stray))} are CycleGAN's cycle weights; Recycle-GAN's are "
                             "lambda_cycle=[A, B]")
        for name in ("lambda_spa_unsup", "lambda_unsup_cycle", "lambda_cycle", "lambda_content"):
            if min(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        return self


# ----- data ---------------------------------------------------------------------------------------
class ConcatImages:
    """Several image sources as one (an ImageSource: `len` and `rgb(i)`)."""

    def __init__(self, sources: Sequence):
        self.sources = list(sources)
        self.offsets = np.cumsum([0] + [len(s) for s in self.sources])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def rgb(self, i: int) -> np.ndarray:
        k = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return self.sources[k].rgb(i - int(self.offsets[k]))


def domain_images(paths: Sequence[str | Path], camera: str | None = None):
    """One domain's frames: session files or folders of them, folders of images (the reference's
    trainA/, train/A), Cityscapes roots (leftImg8bit_sequence/train, else leftImg8bit/train)."""
    from ...recorders.datasets import ImageFolder, image_source

    sources = []
    for p in map(Path, paths):
        if not p.exists():
            raise DrivesimError(f"{p}: not found; give session files, folders of sessions or folders of images")
        if p.is_dir() and ((p / "leftImg8bit").is_dir() or (p / "leftImg8bit_sequence").is_dir()):
            seq = p / "leftImg8bit_sequence" / "train"
            sources.append(ImageFolder(seq if seq.is_dir() else p / "leftImg8bit" / "train"))
        else:
            sources.append(image_source(p, camera))
    return sources[0] if len(sources) == 1 else ConcatImages(sources)


def unpaired_datasets(config: CycleGANConfig, sources: Sources) -> tuple[Dataset, Dataset | None]:
    """(train, held-out) A/B pairs: A from `--data` in order (held out: its tail), B drawn at random."""
    from ...recorders.datasets import UnpairedDataset

    target = sources.extra.get("target")
    if not sources.data or not target:
        raise DrivesimError("unpaired translation needs two domains: frames to translate as --data (A) and "
                            "frames of the look to reach as --target (B)")
    if sources.cityscapes is not None:
        raise DrivesimError("--cityscapes gives labelled data; for unpaired translation pass the Cityscapes root "
                            "as --data or --target")
    a, b = domain_images(sources.data, config.camera), domain_images(target, config.target_camera)
    if config.size is None and config.crop is None:
        ha, hb = a.rgb(0).shape[:2], b.rgb(0).shape[:2]
        if ha != hb:
            raise DrivesimError(f"domain A frames are {ha[0]}x{ha[1]} and domain B frames {hb[0]}x{hb[1]} "
                                "(h x w); set a common size, e.g. --set size=[256,512]")
    common = dict(size=config.size, crop=config.crop, seed=config.seed)
    full = UnpairedDataset(a, b, flip=config.flip, **common)
    held = UnpairedDataset(a, b, flip=False, **common)
    return split_tail(full, held, config.val_fraction)


# ----- pieces ----------------------------------------------------------------------------------------
class ImagePool:
    """The references' buffer of past fakes (`util/image_pool.py`). While filling, each image
    is stored and returned; once full, each image is, with probability 1/2, swapped for a random
    stored one (which is returned, the new one kept), else returned as is. Draws come from the
    torch generator given (default: the global one)."""

    def __init__(self, size: int):
        self.size = size
        self.images: list[Tensor] = []

    def query(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """`b c h w` fakes -> `b c h w` images for the discriminator (detached)."""
        images = images.detach()
        if self.size == 0:
            return images
        out = []
        for image in images.split(1):
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif float(torch.rand((), generator=generator)) > 0.5:
                k = int(torch.randint(self.size, (), generator=generator))
                out.append(self.images[k])
                self.images[k] = image
            else:
                out.append(image)
        return torch.cat(out)


class ContentLoss(nn.Module):
    """MSE between instance-normalised VGG19 features of x and (detached) y, `b 3 h w` in [-1, 1].

    The reference runs AdaIN's `vgg_normalised.pth` through relu5_4 on the raw [-1, 1] images; that
    file is not a torchvision download, so this uses torchvision's ImageNet VGG19 (the torch hub
    cache) up to relu5_1, the deepest layer the shared loader keeps, on ImageNet-normalised input.
    """

    def __init__(self, weights_path: str | None = None):
        super().__init__()
        self.features = vgg19_features(weights_path, off_switch="lambda_content")
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):  # VGG stays in eval mode
        super().train(mode)
        self.features.eval()
        return self

    def _features(self, x: Tensor) -> Tensor:
        return F.instance_norm(self.features(((x + 1) / 2 - self.mean) / self.std).float())

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return F.mse_loss(self._features(x), self._features(y).detach())


@contextlib.contextmanager
def _frozen(*nets: nn.Module):
    """The nets' parameters take no gradient inside the block (gradients still flow through them)."""
    params = [p for n in nets for p in n.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def _l1(a: Tensor, b: Tensor) -> Tensor:
    return F.l1_loss(a.float(), b.float())


# ----- tasks -----------------------------------------------------------------------------------------
class CycleGANTask(Task):
    family = "cyclegan"
    Config = CycleGANConfig
    phases = ("g", "d")

    def __init__(self, config: CycleGANConfig):
        super().__init__(config)
        c = config
        gen = dict(ngf=c.ngf, n_blocks=c.n_blocks, norm=c.norm, use_dropout=c.dropout)
        self.G_A = init_weights(ResnetGenerator(3, 3, **gen), c.init_gain)
        self.G_B = init_weights(ResnetGenerator(3, 3, **gen), c.init_gain)
        self.D_A = init_weights(NLayerDiscriminator(3, c.ndf, c.n_layers_D, c.norm), c.init_gain)
        self.D_B = init_weights(NLayerDiscriminator(3, c.ndf, c.n_layers_D, c.norm), c.init_gain)
        self.gan = GANLoss(c.gan_mode)
        self.pool_A, self.pool_B = ImagePool(c.pool_size), ImagePool(c.pool_size)  # fakes of A (for D_B), of B
        self._fakes: tuple[Tensor, Tensor, Tensor] | None = None  # (real A, fake A, fake B) of this step

    @classmethod
    def input_spec(cls, config: CycleGANConfig) -> InputSpec:
        return RGB

    @classmethod
    def datasets(cls, config: CycleGANConfig, sources: Sources) -> tuple[Dataset, Dataset | None]:
        return unpaired_datasets(config, sources)

    def networks(self) -> dict[str, nn.Module]:
        return {"G_A": self.G_A, "G_B": self.G_B, "D_A": self.D_A, "D_B": self.D_B}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        return {"g": torch.optim.Adam(itertools.chain(self.G_A.parameters(), self.G_B.parameters()), c.lr,
                                      betas=(c.beta1, c.beta2)),
                "d": torch.optim.Adam(itertools.chain(self.D_A.parameters(), self.D_B.parameters()), c.lr,
                                      betas=(c.beta1, c.beta2))}

    def g_step(self, batch: dict) -> dict[str, Tensor]:
        """G_A and G_B: fool the frozen discriminators, plus the translation losses."""
        real_A, real_B = batch["A"], batch["B"]
        fake_B, fake_A = self.G_A(real_A), self.G_B(real_B)
        with _frozen(self.D_A, self.D_B):
            terms = {"G_A": self.gan(self.D_A(fake_B), True, for_discriminator=False),
                     "G_B": self.gan(self.D_B(fake_A), True, for_discriminator=False)}
        terms |= self.translation_terms(real_A, real_B, fake_A, fake_B)
        self._fakes = (real_A, fake_A.detach(), fake_B.detach())
        return {"loss": sum(terms.values()), **terms}

    def translation_terms(self, real_A: Tensor, real_B: Tensor, fake_A: Tensor, fake_B: Tensor) -> dict[str, Tensor]:
        """CycleGAN's weighted cycle and identity losses."""
        c = self.config
        terms = {"cycle_A": c.lambda_A * _l1(self.G_B(fake_B), real_A),
                 "cycle_B": c.lambda_B * _l1(self.G_A(fake_A), real_B)}
        if c.lambda_identity > 0:
            terms["idt_A"] = c.lambda_identity * c.lambda_B * _l1(self.G_A(real_B), real_B)
            terms["idt_B"] = c.lambda_identity * c.lambda_A * _l1(self.G_B(real_A), real_A)
        return terms

    def d_step(self, batch: dict) -> dict[str, Tensor]:
        """D_A: real B -> 1, pooled G_A(A) -> 0; D_B: real A -> 1, pooled G_B(B) -> 0; each halved."""
        fake_A, fake_B = self._step_fakes(batch)
        d_A = self._d_loss(self.D_A, batch["B"], self.pool_B.query(fake_B))
        d_B = self._d_loss(self.D_B, batch["A"], self.pool_A.query(fake_A))
        return {"loss": d_A + d_B, "D_A": d_A, "D_B": d_B}

    def _d_loss(self, net: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        return 0.5 * (self.gan(net(real), True) + self.gan(net(fake), False))

    def _step_fakes(self, batch: dict) -> tuple[Tensor, Tensor]:
        """(fake A, fake B) of this step's `g_step`, or fresh ones when it did not run on this batch."""
        cached, self._fakes = self._fakes, None
        if cached is not None and cached[0] is batch["A"]:
            return cached[1], cached[2]
        with torch.no_grad():
            return self.G_B(batch["B"]), self.G_A(batch["A"])

    @torch.no_grad()
    def generate(self, batch: dict) -> Tensor:
        """G_A(A), `b 3 h w` in [-1, 1]."""
        return self.G_A(batch["A"])

    @torch.no_grad()
    def evaluate(self, batch: dict) -> dict[str, Tensor]:
        """Per sample: cycle L1 both ways, and `warp_A`, |G_A(W(A)) - W(G_A(A))| for one fixed
        synthetic flow W (how far translating a moved frame is from moving its translation)."""
        a, b = batch["A"].float(), batch["B"].float()
        fake_B = self.G_A(a)
        moved, flow = synthetic_pair(a, noise_level=0.0, generator=torch.Generator().manual_seed(0))
        return {"cycle_A": (self.G_B(fake_B).float() - a).abs().mean((1, 2, 3)),
                "cycle_B": (self.G_A(self.G_B(b)).float() - b).abs().mean((1, 2, 3)),
                "warp_A": (self.G_A(moved).float() - warp(fake_B.float(), flow)).abs().mean((1, 2, 3))}

    def visuals(self, batch: dict, fake: Tensor) -> dict[str, Tensor]:
        return {"A": batch["A"], "G_A(A)": fake, "B": batch["B"]}

    def export(self) -> tuple[str, nn.Module, dict]:
        size = self.config.crop or self.config.size
        meta = {"family": self.family, "input": RGB.to_dict(), "direction": "AtoB"}
        if size is not None:
            meta["size"] = list(size)
        return NETWORK, self.G_A, meta


class RecycleTask(CycleGANTask):
    family = "recycle"
    Config = RecycleConfig

    def __init__(self, config: RecycleConfig):
        super().__init__(config)
        self.content = ContentLoss(config.vgg_weights) if max(config.lambda_content) > 0 else None

    def _moved(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(x under a fresh synthetic flow, plus noise; that flow)."""
        c = self.config
        return synthetic_pair(x, motion_level=c.motion_level, shift_level=c.shift_level, scale_level=c.scale_level,
                              noise_level=c.noise_level)

    def _recycle(self, fake: Tensor, real: Tensor, back: nn.Module) -> Tensor:
        """|back(W(fake) + noise) - W(real)|: the moved translation maps back to the moved input."""
        moved, flow = self._moved(fake)
        return _l1(back(moved), warp(real, flow))

    def _spatial(self, real: Tensor, fake: Tensor, forward: nn.Module) -> Tensor:
        """|forward(W(real) + noise) - W(fake)|: translating a moved frame equals moving the translation."""
        moved, flow = self._moved(real)
        return _l1(forward(moved), warp(fake, flow))

    def translation_terms(self, real_A: Tensor, real_B: Tensor, fake_A: Tensor, fake_B: Tensor) -> dict[str, Tensor]:
        """The weighted Recycle-GAN terms, in the reference's order (which fixes the random draws)."""
        c, terms = self.config, {}
        (cyc_a, cyc_b), (rec_a, rec_b) = c.lambda_cycle, c.lambda_unsup_cycle
        (spa_a, spa_b), (con_a, con_b) = c.lambda_spa_unsup, c.lambda_content
        if cyc_a > 0:
            terms["cycle_A"] = cyc_a * _l1(self.G_B(fake_B), real_A)
        if cyc_b > 0:
            terms["cycle_B"] = cyc_b * _l1(self.G_A(fake_A), real_B)
        if rec_a > 0:
            terms["unsup_cycle_A"] = rec_a * self._recycle(fake_B, real_A, self.G_B)
        if rec_b > 0:
            terms["unsup_cycle_B"] = rec_b * self._recycle(fake_A, real_B, self.G_A)
        if spa_a > 0:
            terms["spa_A"] = spa_a * self._spatial(real_A, fake_B, self.G_A)
        if spa_b > 0:
            terms["spa_B"] = spa_b * self._spatial(real_B, fake_A, self.G_B)
        if self.content is not None:
            terms["content_A"] = con_a * self.content(fake_B, real_A)
            terms["content_B"] = con_b * self.content(fake_A, real_B)
        if c.lambda_identity > 0:
            terms["idt_A"] = c.lambda_identity * _l1(self.G_A(real_B), real_B)
            terms["idt_B"] = c.lambda_identity * _l1(self.G_B(real_A), real_A)
        return terms
