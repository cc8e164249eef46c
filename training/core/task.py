"""The surface a model family implements for the trainer.

A `Task` holds the networks and losses of one family and says how one training step goes, as
explicit phases (for GANs `d_step` then `g_step`), each returning a dict of losses whose
`"loss"` entry the trainer back-propagates and steps with that phase's optimizer. The trainer
owns everything else: devices, mixed precision, DDP gradient averaging, schedules,
checkpoints, logs and evaluation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ...models.inputs import InputSpec, encode_input
from .config import TrainConfig
from .data import Sources, paired_datasets


class Task(nn.Module):
    family: ClassVar[str] = ""
    Config: ClassVar[type[TrainConfig]] = TrainConfig
    phases: ClassVar[tuple[str, ...]] = ("d", "g")  # order within a step; each has `<phase>_step`

    def __init__(self, config: TrainConfig):
        super().__init__()
        self.config = config
        self.step = 0
        self.total_steps: int | None = None  # set by the trainer before the first step

    # ----- what the data must provide ------------------------------------------------------
    @classmethod
    def input_spec(cls, config: TrainConfig) -> InputSpec:
        """The generator's input; its label space and instance edges decide what the dataset loads."""
        raise NotImplementedError

    @classmethod
    def datasets(cls, config: TrainConfig, sources: Sources) -> tuple[Dataset, Dataset | None]:
        """(train, held-out) datasets; label -> image pairs unless a family says otherwise."""
        return paired_datasets(config, cls.input_spec(config), sources)

    def bind_data(self, train: Dataset, held_out: Dataset | None) -> None:
        """The trainer's datasets, before the first step: for families whose exported model card
        records something about the data it was trained on. Nothing by default."""

    def encode(self, batch: dict) -> Tensor:
        """The generator input of a batch (`b c h w`)."""
        return encode_input(batch["label"], self.input_spec(self.config), batch.get("instance"))

    # ----- what the trainer calls ------------------------------------------------------------
    def networks(self) -> dict[str, nn.Module]:
        """The trained networks, by the names their checkpoint files get ({"G": ..., "D": ...})."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """One optimizer per phase, keyed by phase name. Called once, after `.to(device)`."""
        raise NotImplementedError

    def set_step(self, step: int) -> None:
        """Called before each step (stage switches, warm-ups)."""
        self.step = step

    def d_step(self, batch: dict) -> dict[str, Tensor]:
        raise NotImplementedError

    def g_step(self, batch: dict) -> dict[str, Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, batch: dict) -> Tensor:
        """Synthesized images `b 3 h w` in [-1, 1] for a batch (evaluation, image logs)."""
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, batch: dict) -> dict[str, Tensor]:
        """Per-sample metrics of the held-out batch (`b`-shaped tensors): PSNR, SSIM, L1."""
        from ..metrics import psnr, ssim

        fake, real = self.generate(batch).float(), batch["image"].float()
        return {"psnr": psnr(fake, real), "ssim": ssim(fake, real), "l1": (fake - real).abs().mean((1, 2, 3))}

    @torch.no_grad()
    def evaluate_batches(self, batches: Iterable[dict]) -> dict:
        """Held-out metrics over all batches: the mean of `evaluate`'s per-sample values, and
        `samples`. Families whose metrics do not average (mIoU) override this; numbers are logged
        to TensorBoard, everything (e.g. a confusion matrix as nested lists) to metrics.jsonl."""
        totals: dict[str, float] = defaultdict(float)
        n = 0
        for batch in batches:
            values = self.evaluate(batch)
            for k, v in values.items():
                totals[k] += float(v.float().sum())
            n += len(next(iter(values.values()))) if values else 0
        return {"samples": n, **{k: v / max(n, 1) for k, v in totals.items()}}

    def visuals(self, batch: dict, fake: Tensor) -> dict[str, Tensor]:
        """Named `b 3 h w` images in [-1, 1] for the image grid: input, synthesized, real."""
        label = batch["label"]
        if label.ndim == 4:
            shown = label
        else:
            from ...labels import map_labels
            from ...recorders.datasets import image_tensor

            spec = self.input_spec(self.config)
            tags_like = label.clamp(0, 255).to(torch.uint8).cpu().numpy()
            shown = image_tensor(_colour(tags_like, spec.label_space, map_labels)).to(fake.device)
        return {"input": shown, "synthesized": fake, "real": batch["image"]}

    def export(self) -> tuple[str, nn.Module, dict]:
        """(registry name, inference network, meta) of what `from_pretrained` should rebuild."""
        raise NotImplementedError


def _colour(ids, label_space: str, map_labels):
    """Label ids in `label_space` -> colours, for display only."""
    import numpy as np

    from ...labels import cityscapes_palette, colorize

    if label_space == "cityscapes_ids":
        return cityscapes_palette()[ids]
    if label_space == "train_ids":
        from ...labels import cityscapes_id_to_train_id

        lut = cityscapes_id_to_train_id()
        train_to_id = np.zeros(256, np.uint8)
        for cid in range(255, -1, -1):
            if lut[cid] != 255:
                train_to_id[lut[cid]] = cid
        return cityscapes_palette()[train_to_id[ids]]
    return colorize(ids)
