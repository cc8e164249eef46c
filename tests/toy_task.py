"""A tiny GAN family for the trainer's tests: real recordings in, two small conv nets, hinge loss.

Importing this module registers its generator as "toy.Generator" (tests only).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from drivesim_carla.models.inputs import InputSpec
from drivesim_carla.models.registry import NETWORKS
from drivesim_carla.training.core.config import TrainConfig
from drivesim_carla.training.core.losses import GANLoss
from drivesim_carla.training.core.task import Task

NETWORKS.setdefault("toy.Generator", "toy_task:ToyGenerator")
SPEC = InputSpec(kind="onehot", label_space="train_ids", num_classes=19, dontcare=True)


class ToyGenerator(nn.Module):
    def __init__(self, in_channels: int = 20, width: int = 8, dropout: float = 0.0):
        super().__init__()
        self.config = dict(in_channels=in_channels, width=width, dropout=dropout)
        self.body = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.Dropout2d(dropout),
                                  nn.Conv2d(width, 3, 3, padding=1), nn.Tanh())

    def forward(self, x):
        return self.body(x)


class ToyConfig(TrainConfig):
    lr: float = 2e-3
    width: int = 8
    dropout: float = 0.0
    optimizer: str = "adam"  # sgd for comparisons where Adam's normalisation would amplify float noise
    size: tuple[int, int] | None = (32, 64)
    log_every: int = 1
    image_every: int = 2
    eval_every: int = 2
    save_every: int = 2


class ToyTask(Task):
    family = "toy"
    Config = ToyConfig

    def __init__(self, config: ToyConfig):
        super().__init__(config)
        self.G = ToyGenerator(SPEC.channels, config.width, config.dropout)
        self.D = nn.Sequential(nn.Conv2d(SPEC.channels + 3, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 1, 3, 1, 1))
        self.gan = GANLoss("hinge")

    @classmethod
    def input_spec(cls, config):
        return SPEC

    def networks(self):
        return {"G": self.G, "D": self.D}

    def optimizers(self):
        if self.config.optimizer == "sgd":
            return {"d": torch.optim.SGD(self.D.parameters(), 0.05), "g": torch.optim.SGD(self.G.parameters(), 0.05)}
        return {"d": torch.optim.Adam(self.D.parameters(), self.config.lr, betas=(0.5, 0.999)),
                "g": torch.optim.Adam(self.G.parameters(), self.config.lr, betas=(0.5, 0.999))}

    def d_step(self, batch):
        x = self.encode(batch)
        with torch.no_grad():
            fake = self.G(x)
        real = self.gan(self.D(torch.cat([x, batch["image"]], 1)), True)
        fake_loss = self.gan(self.D(torch.cat([x, fake], 1)), False)
        return {"loss": real + fake_loss, "real": real, "fake": fake_loss}

    def g_step(self, batch):
        x = self.encode(batch)
        fake = self.G(x)
        adv = self.gan(self.D(torch.cat([x, fake], 1)), True, for_discriminator=False)
        l1 = F.l1_loss(fake, batch["image"])
        return {"loss": adv + 10 * l1, "gan": adv, "l1": l1}

    @torch.no_grad()
    def generate(self, batch):
        return self.G(self.encode(batch))

    def export(self):
        return "toy.Generator", self.G, {"input": SPEC.to_dict()}
