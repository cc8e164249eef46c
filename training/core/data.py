"""Training data: datasets from recordings or Cityscapes folders, a held-out tail, and a
deterministic, resumable stream of batches.

The batch at step `s` is a pure function of (seed, s, rank): the sample order is a fixed
permutation per epoch, and a sample's augmentation comes from (seed, epoch, index) (see
`recorders.datasets.Seeded`). Resuming at step `s` skips straight to it without loading data,
which is what makes `--resume` continue bit-for-bit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from ...errors import DrivesimError
from ...models.inputs import InputSpec
from .config import TrainConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sources:
    """Where training data comes from: session files/folders and/or a Cityscapes root."""

    data: tuple[Path, ...] = ()
    cityscapes: Path | None = None
    extra: dict = field(default_factory=dict)  # family-specific sources (e.g. a target domain)

    def __post_init__(self):
        if not self.data and self.cityscapes is None and not self.extra:
            raise DrivesimError("no training data; pass --data SESSIONS_OR_DIR and/or --cityscapes DIR")
        for p in self.data:
            if not Path(p).exists():
                raise DrivesimError(f"--data {p}: not found; give a session file (.h5) or a folder of sessions")


def paired_datasets(config: TrainConfig, spec: InputSpec, sources: Sources) -> tuple[Dataset, Dataset | None]:
    """Label -> image pairs for a generator taking `spec`: (train, held-out) datasets."""
    from ...recorders.cityscapes import CITYSCAPES_LABEL_MODES, CityscapesDataset
    from ...recorders.datasets import PairedDataset

    labels = spec.label_space
    common = dict(labels=labels, instance=spec.needs_instance, size=config.size, seed=config.seed)
    train, val = [], []
    if sources.data:
        full = PairedDataset(list(sources.data), camera=config.camera, crop=config.crop, flip=config.flip, **common)
        held = PairedDataset(full.index, camera=config.camera, crop=config.crop, flip=False, **common)
        t, v = split_tail(full, held, config.val_fraction)
        train.append(t)
        if v is not None:
            val.append(v)
    if sources.cityscapes is not None:
        if labels not in CITYSCAPES_LABEL_MODES:
            raise DrivesimError(f"this model takes labels as '{labels}', which Cityscapes folders do not have; "
                                f"use one of {', '.join(CITYSCAPES_LABEL_MODES)}")
        root = Path(sources.cityscapes)
        train.append(CityscapesDataset(root, "train", crop=config.crop, flip=config.flip, **common))
        if (root / "leftImg8bit" / "val").is_dir():
            val.append(CityscapesDataset(root, "val", crop=config.crop, flip=False, **common))
    return _concat(train), (_concat(val) if val else None)


def split_tail(full: Dataset, held: Dataset, fraction: float) -> tuple[Dataset, Dataset | None]:
    """The first (1 - fraction) of `full` for training, the rest of `held` (no flips) for evaluation."""
    n = len(full)
    k = int(round(n * fraction))
    if fraction > 0 and n >= 2:
        k = max(k, 1)
    if k == 0:
        return full, None
    return Subset(full, range(n - k)), Subset(held, range(n - k, n))


def _concat(parts: list[Dataset]) -> Dataset:
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


def set_epoch(ds: Dataset, epoch: int) -> None:
    """Propagate the epoch to every `Seeded` dataset inside subsets and concatenations."""
    if isinstance(ds, Subset):
        set_epoch(ds.dataset, epoch)
    elif isinstance(ds, ConcatDataset):
        for d in ds.datasets:
            set_epoch(d, epoch)
    elif hasattr(ds, "set_epoch"):
        ds.set_epoch(epoch)


class EpochIndexed(Dataset):
    """`ds[(epoch, i)]`: sample `i` drawn with that epoch's augmentation, in any worker."""

    def __init__(self, ds: Dataset):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key: tuple[int, int]):
        epoch, i = key
        set_epoch(self.ds, epoch)
        return self.ds[i]


class StepBatches:
    """Endless batches of `(epoch, index)` for one rank, starting at step `start`.

    Positions `p = (s * world + rank) * batch + j` run through one permutation of the data per
    epoch (epoch `p // n`), so every rank sees a disjoint share of each global batch.
    """

    def __init__(self, n: int, batch: int, *, seed: int, rank: int = 0, world: int = 1, start: int = 0):
        if n == 0:
            raise DrivesimError("the training set is empty; record more frames or lower val_fraction")
        self.n, self.batch, self.seed, self.rank, self.world, self.start = n, batch, seed, rank, world, start
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perms = {epoch: torch.randperm(self.n, generator=g)}  # keep one epoch cached
        return self._perms[epoch]

    def at(self, step: int) -> list[tuple[int, int]]:
        first = (step * self.world + self.rank) * self.batch
        out = []
        for p in range(first, first + self.batch):
            epoch = p // self.n
            out.append((epoch, int(self._perm(epoch)[p % self.n])))
        return out

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start
        while True:
            yield self.at(step)
            step += 1


def steps_per_epoch(n: int, batch: int, world: int) -> int:
    return max(1, -(-n // (batch * world)))


def train_loader(ds: Dataset, config: TrainConfig, *, rank: int, world: int, start: int, pin: bool) -> DataLoader:
    sampler = StepBatches(len(ds), config.batch_size, seed=config.seed, rank=rank, world=world, start=start)
    return DataLoader(EpochIndexed(ds), batch_sampler=sampler, num_workers=config.num_workers, pin_memory=pin,
                      persistent_workers=config.num_workers > 0, generator=_own_generator(config.seed))


def eval_loader(ds: Dataset, config: TrainConfig) -> DataLoader:
    k = min(len(ds), config.val_max)
    return DataLoader(Subset(ds, range(k)), batch_size=config.batch_size, shuffle=False,
                      num_workers=config.num_workers, generator=_own_generator(config.seed))


def _own_generator(seed: int) -> torch.Generator:
    """A loader's own generator: starting its iterator must not draw from the global RNG, or a
    resumed run's dropout and noise would drift from an uninterrupted one."""
    return torch.Generator().manual_seed(seed)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def describe(ds: Dataset | None) -> str:
    return "none" if ds is None else f"{len(ds)} samples"


__all__: Sequence[str] = ["Sources", "paired_datasets", "train_loader", "eval_loader", "StepBatches"]
