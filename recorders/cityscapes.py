"""Cityscapes folders as datasets, so real data trains the same models as our recordings.

Fine annotations: `leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png` with
`gtFine/<split>/<city>/<stem>_gtFine_labelIds.png` (and `_instanceIds.png`), where `<stem>` is
`<city>_<seq>_<frame>`. Sequences: `leftImg8bit_sequence/<split>/<city>/<stem>_leftImg8bit.png`.
`drivesim export --format cityscapes` writes the fine layout.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .. import labels as L
from ..errors import DrivesimError
from .datasets import Augment, Seeded, check_label_mode, image_tensor, label_tensor, read_rgb

CITYSCAPES_LABEL_MODES = ("train_ids", "cityscapes_ids", "color")
_NAME = re.compile(r"^(?P<city>[^_]+)_(?P<seq>\d+)_(?P<frame>\d+)_leftImg8bit\.png$")


def map_cityscapes_ids(ids: np.ndarray, mode: str) -> np.ndarray:
    """Cityscapes label ids (`... h w`) -> train ids, the ids unchanged, or colours (`... h w 3`)."""
    check_label_mode(mode, CITYSCAPES_LABEL_MODES)
    if mode == "train_ids":
        return L.cityscapes_id_to_train_id()[ids]
    if mode == "color":
        return L.cityscapes_palette()[ids]
    return ids


def _split_dir(root: Path, folder: str, split: str) -> Path:
    base = root / folder
    if not base.is_dir():
        raise DrivesimError(f"{root}: no {folder}/ folder; give the root of a Cityscapes-style dataset "
                            f"(with {folder}/<split>/<city>/)")
    if not (base / split).is_dir():
        splits = sorted(p.name for p in base.iterdir() if p.is_dir())
        raise DrivesimError(f"{base}: no split '{split}'; it has: {', '.join(splits) or 'none'}")
    return base / split


def _images(root: Path, folder: str, split: str) -> list[Path]:
    d = _split_dir(root, folder, split)
    files = sorted(p for p in d.glob("*/*_leftImg8bit.png") if _NAME.match(p.name))
    if not files:
        raise DrivesimError(f"{d}: no <city>/<city>_<seq>_<frame>_leftImg8bit.png images in it")
    return files


class CityscapesDataset(Seeded, Dataset):
    """Cityscapes fine annotations as paired samples, with the keys of `PairedDataset`:
    `image` (3 h w) float [-1, 1]; `label` (h w) int64 (or (3 h w) float for `color`);
    `instance` (h w) int64 (Cityscapes' id*1000+k encoding) when asked; `path`, `index`."""

    def __init__(self, root: str | Path, split: str = "train", *, labels: str = "train_ids",
                 instance: bool = False, size: tuple[int, int] | None = None,
                 crop: tuple[int, int] | None = None, flip: bool = False, seed: int = 0):
        self.root = Path(root)
        self.labels = check_label_mode(labels, CITYSCAPES_LABEL_MODES)
        self.instance = instance
        self.files = _images(self.root, "leftImg8bit", split)
        self.split = split
        for f in self.files:  # a missing annotation fails here, not mid-epoch
            _annotation(self.root, split, f, "labelIds")
            if instance:
                _annotation(self.root, split, f, "instanceIds")
        self.augment, self.seed = Augment(size, crop, flip), seed

    def __len__(self) -> int:
        return len(self.files)

    def rgb(self, i: int) -> np.ndarray:
        """Image `i` as `h w 3` uint8 RGB (makes this an ImageSource for UnpairedDataset)."""
        return read_rgb(self.files[i])

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} outside 0..{len(self) - 1}")
        image = self.rgb(i)
        ids = _read_png(_annotation(self.root, self.split, self.files[i], "labelIds"))
        d = self.augment.draw(*image.shape[:2], self.rng(i))
        out = {"image": image_tensor(self.augment.image(image, d)),
               "label": label_tensor(map_cityscapes_ids(self.augment.label(ids, d), self.labels), self.labels),
               "path": str(self.files[i]), "index": i}
        if self.instance:
            inst = _read_png(_annotation(self.root, self.split, self.files[i], "instanceIds"))
            out["instance"] = torch.from_numpy(self.augment.label(inst, d).astype(np.int64))
        return out


def _annotation(root: Path, split: str, image: Path, kind: str) -> Path:
    stem = image.name[: -len("_leftImg8bit.png")]
    path = root / "gtFine" / split / image.parent.name / f"{stem}_gtFine_{kind}.png"
    if not path.is_file():
        raise DrivesimError(f"{path}: missing annotation for {image.name}; a Cityscapes folder needs "
                            f"gtFine/{split}/<city>/<stem>_gtFine_{kind}.png beside leftImg8bit/")
    return path


def _read_png(path: Path) -> np.ndarray:
    """A single-channel PNG with its stored depth (uint8 label ids, uint16 instance ids)."""
    x = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if x is None or x.ndim != 2:
        raise DrivesimError(f"{path}: not a single-channel PNG annotation")
    return x


class CityscapesSequence(Seeded, Dataset):
    """Clips of `length` consecutive frames (`stride` apart in frame number) from the sequence
    layout; a clip never spans two `<city>_<seq>` snippets or a gap in frame numbers.

    Sample: `frames` (t 3 h w) float [-1, 1]; `path` (first frame's file); `start` (its frame
    number). `folder="leftImg8bit"` reads consecutive frames of the fine layout (e.g. an export).
    """

    def __init__(self, root: str | Path, split: str = "train", length: int = 2, *, stride: int = 1,
                 hop: int = 1, folder: str = "leftImg8bit_sequence", size: tuple[int, int] | None = None,
                 crop: tuple[int, int] | None = None, flip: bool = False, seed: int = 0):
        if length < 1 or stride < 1 or hop < 1:
            raise DrivesimError(f"clip length, stride and hop must be >= 1, got {length}, {stride}, {hop}")
        self.root, self.length, self.stride = Path(root), length, stride
        self.clips = _sequence_clips(_images(self.root, folder, split), length, stride, hop)
        if not self.clips:
            raise DrivesimError(f"{self.root / folder / split}: no run of {length} consecutive frames "
                                f"(stride {stride}); use shorter clips")
        self.augment, self.seed = Augment(size, crop, flip), seed

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, n: int) -> dict:
        files = self.clips[n]
        frames = np.stack([read_rgb(f) for f in files])
        d = self.augment.draw(*frames.shape[1:3], self.rng(n))
        start = int(_NAME.match(files[0].name)["frame"])
        return {"frames": image_tensor(self.augment.image(frames, d)), "path": str(files[0]), "start": start}


def _sequence_clips(files: list[Path], length: int, stride: int, hop: int) -> list[list[Path]]:
    """Clips of files whose frame numbers are start, start+stride, ..., within one snippet."""
    snippets: dict[tuple[str, str, str], dict[int, Path]] = defaultdict(dict)
    for f in files:
        m = _NAME.match(f.name)
        snippets[(f.parent.name, m["city"], m["seq"])][int(m["frame"])] = f
    clips = []
    for key in sorted(snippets):
        frames = snippets[key]
        starts = [s for s in sorted(frames) if all(s + k * stride in frames for k in range(length))]
        clips += [[frames[s + k * stride] for k in range(length)] for s in starts[::hop]]
    return clips
