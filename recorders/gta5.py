"""GTA5 ("Playing for Data") folders as a labelled dataset: the source domain of ADVENT's benchmark.

Layout, as valeoai/ADVENT's `GTA5DataSet` reads it: `ROOT/images/<name>.png` and
`ROOT/labels/<name>.png` with the same `<name>`, the labels holding Cityscapes label ids (GTA5
ships them as palette PNGs: the palette indices are the ids). Ids without a train id become 255.
A few GTA5 pairs differ in size; the label is then resized (nearest) to its image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ..errors import DrivesimError
from .cityscapes import CITYSCAPES_LABEL_MODES, map_cityscapes_ids
from .datasets import (
    IMAGE_SUFFIXES,
    Augment,
    Seeded,
    check_label_mode,
    image_tensor,
    label_tensor,
    read_rgb,
    resize_nearest,
)


def is_gta5_root(path: str | Path) -> bool:
    path = Path(path)
    return (path / "images").is_dir() and (path / "labels").is_dir()


class GTA5Dataset(Seeded, Dataset):
    """GTA5 images with their labels, with the keys of `PairedDataset`: `image` (3 h w) float in
    [-1, 1]; `label` (h w) int64 train ids (or Cityscapes ids, or (3 h w) colours); `path`, `index`.
    Also an ImageSource (`rgb(i)`), so its images can be an unlabelled domain."""

    def __init__(self, root: str | Path, *, labels: str = "train_ids", size: tuple[int, int] | None = None,
                 crop: tuple[int, int] | None = None, flip: bool = False, seed: int = 0):
        self.root = Path(root)
        self.labels = check_label_mode(labels, CITYSCAPES_LABEL_MODES)
        self.images, self.label_files = _pairs(self.root)
        self.augment, self.seed = Augment(size, crop, flip), seed

    def __len__(self) -> int:
        return len(self.images)

    def rgb(self, i: int) -> np.ndarray:
        """Image `i` as `h w 3` uint8 RGB."""
        return read_rgb(self.images[i])

    def label_ids(self, i: int) -> np.ndarray:
        """Label `i` as `h w` uint8 Cityscapes label ids."""
        return read_id_png(self.label_files[i])

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} outside 0..{len(self) - 1}")
        image, ids = self.rgb(i), self.label_ids(i)
        if ids.shape != image.shape[:2]:
            ids = resize_nearest(ids, image.shape[:2])
        d = self.augment.draw(*image.shape[:2], self.rng(i))
        label = map_cityscapes_ids(np.ascontiguousarray(self.augment.label(ids, d)), self.labels)
        return {"image": image_tensor(self.augment.image(image, d)), "label": label_tensor(label, self.labels),
                "path": str(self.images[i]), "index": i}


def _pairs(root: Path) -> tuple[list[Path], list[Path]]:
    if not is_gta5_root(root):
        raise DrivesimError(f"{root}: not a GTA5-layout folder; it needs images/ and labels/ side by side "
                            "(images/<name>.png with labels/<name>.png)")
    images = sorted(p for p in (root / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DrivesimError(f"{root / 'images'}: no images (*.png, *.jpg) in it")
    labels = [root / "labels" / (p.stem + ".png") for p in images]
    missing = [p for p in labels if not p.is_file()]
    if missing:
        raise DrivesimError(f"{missing[0]}: missing label for {root / 'images' / (missing[0].stem)}.* "
                            f"({len(missing)} of {len(images)} images have none); every image needs "
                            "labels/<name>.png")
    return images, labels


def read_id_png(path: Path) -> np.ndarray:
    """A label PNG holding ids: greyscale, or a palette image whose indices are the ids."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            mode = im.mode
            ids = np.asarray(im) if mode in ("P", "L") else None
    except OSError as e:
        raise DrivesimError(f"{path}: cannot read this label image ({e})") from None
    if ids is None:
        raise DrivesimError(f"{path}: a {mode} image; labels must be single-channel id maps (greyscale or "
                            "palette PNGs of Cityscapes label ids, as GTA5 ships them)")
    return ids.astype(np.uint8, copy=False)
