"""PyTorch datasets over recorded sessions: paired (labels -> image), clips, and unpaired A/B.

Every dataset reads through `Session`s, which open their HDF5 file lazily per process, so each
DataLoader worker has its own file handle. Random crops and flips come from a generator seeded
by `(seed, epoch, index)`: a sample is the same whatever worker reads it (`set_epoch` changes
the draw). Images are float tensors in [-1, 1], `c h w`; sizes are `(h, w)`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DrivesimError
from ..labels import LABEL_MODES, check_label_mode, map_labels  # noqa: F401  (recorders.map_labels)
from .session import Sample, Session

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SESSION_SUFFIXES = (".h5", ".hdf5")


# ----- tensors -------------------------------------------------------------------------------
def image_tensor(x: np.ndarray) -> torch.Tensor:
    """`... h w 3` uint8 -> `... 3 h w` float32 in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(x)).movedim(-1, -3)
    return t.float().div_(127.5).sub_(1.0)


def label_tensor(x: np.ndarray, mode: str) -> torch.Tensor:
    """Mapped labels -> int64 `... h w`, or a float image `... 3 h w` for the colour modes."""
    if mode in ("color", "carla_color"):
        return image_tensor(x)
    return torch.from_numpy(np.ascontiguousarray(x).astype(np.int64))


# ----- geometry ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Draw:
    """One sample's random geometry: the crop window and whether to flip horizontally."""

    top: int
    left: int
    h: int
    w: int
    flip: bool


@dataclass(frozen=True)
class Augment:
    """Resize to `size` (area/bilinear for images, nearest for labels, depth and instances),
    then a random `crop` and a random horizontal `flip`, shared by every stream and frame of
    one sample. Sizes are `(h, w)`."""

    size: tuple[int, int] | None = None
    crop: tuple[int, int] | None = None
    flip: bool = False

    def draw(self, h: int, w: int, rng: np.random.Generator) -> Draw:
        h, w = self.size or (h, w)
        ch, cw = self.crop or (h, w)
        if ch > h or cw > w:
            raise DrivesimError(f"crop {ch}x{cw} (h x w) is larger than the {h}x{w} image; "
                                "choose a smaller crop or a larger size")
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        return Draw(top, left, ch, cw, bool(self.flip and rng.random() < 0.5))

    def image(self, x: np.ndarray, d: Draw) -> np.ndarray:
        """`... h w c` -> `... d.h d.w c`."""
        x = resize_image(x, self.size)[..., d.top:d.top + d.h, d.left:d.left + d.w, :]
        return x[..., ::-1, :] if d.flip else x

    def label(self, x: np.ndarray, d: Draw) -> np.ndarray:
        """`... h w` -> `... d.h d.w` (any dtype: tags, ids, depth, instances)."""
        x = resize_nearest(x, self.size)[..., d.top:d.top + d.h, d.left:d.left + d.w]
        return x[..., ::-1] if d.flip else x


def resize_image(x: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """`... h w c` images to `size`: area averaging when shrinking, bilinear otherwise."""
    h, w, c = x.shape[-3:]
    if size is None or (h, w) == tuple(size):
        return x
    interp = cv2.INTER_AREA if size[0] <= h and size[1] <= w else cv2.INTER_LINEAR
    flat = x.reshape(-1, h, w, c)
    out = np.stack([cv2.resize(f, (size[1], size[0]), interpolation=interp).reshape(*size, c) for f in flat])
    return out.reshape(*x.shape[:-3], *size, c)


def resize_nearest(x: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """`... h w` to `size` by nearest neighbour (pixel centres), keeping the dtype."""
    h, w = x.shape[-2:]
    if size is None or (h, w) == tuple(size):
        return x
    rows = ((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.intp)
    cols = ((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.intp)
    return x[..., rows[:, None], cols[None, :]]


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample: independent of worker, order and batch size."""
    return np.random.default_rng([seed, epoch, index])


class Seeded:
    """Per-sample generators derived from `seed` and the epoch."""

    seed: int = 0
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw different crops/flips (and B images) in each epoch; call it before iterating."""
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        return sample_rng(self.seed, self.epoch, index)


# ----- the index over sessions ---------------------------------------------------------------
class SessionIndex:
    """Sessions (a folder's sorted `*.h5`, or given files) with one global index over
    `(session, frame)`. In a folder, files that are not readable sessions are skipped with a
    warning; none at all is an error."""

    def __init__(self, source: str | Path | Session | Sequence[str | Path | Session]):
        self.sessions = _open_sessions(source)
        for s in self.sessions:
            s.close()  # workers open their own handles; keeps big folders under the fd limit
        self.offsets = np.cumsum([0] + [len(s) for s in self.sessions])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, g: int) -> tuple[Session, int]:
        """Global index -> (session, frame index in it)."""
        if not 0 <= g < len(self):
            raise IndexError(f"index {g} outside 0..{len(self) - 1}")
        k = int(np.searchsorted(self.offsets, g, side="right")) - 1
        return self.sessions[k], int(g - self.offsets[k])

    def __getitem__(self, g: int) -> Sample:
        s, i = self.locate(g)
        return s.read(i)

    def check(self, camera: str | None, streams: Sequence[str]) -> None:
        """Raise if a session lacks the camera or one of the streams."""
        for s in self.sessions:
            s.check_streams(camera, tuple(streams))


def _open_sessions(source) -> list[Session]:
    if isinstance(source, Session):
        return [source]
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            return _scan_folder(path)
        return [Session(path)]
    return [s if isinstance(s, Session) else Session(s) for s in source]


def _scan_folder(folder: Path) -> list[Session]:
    files = sorted(p for p in folder.iterdir() if p.suffix in SESSION_SUFFIXES and p.is_file())
    sessions = []
    for p in files:
        try:
            sessions.append(Session(p))
        except DrivesimError as e:
            log.warning("skipping %s", e)
    if not sessions:
        raise DrivesimError(f"{folder}: no readable drivesim sessions (*.h5) in it ({len(files)} .h5 files "
                            "skipped); record some with `drivesim record --out DIR`")
    return sessions


def as_index(source) -> SessionIndex:
    """A SessionIndex from an index, a Session, a session file, a folder, or a list of files."""
    return source if isinstance(source, SessionIndex) else SessionIndex(source)


# ----- datasets --------------------------------------------------------------------------------
class PairedDataset(Seeded, Dataset):
    """Semantic labels -> image pairs of one camera (pix2pix, SPADE, segmenters).

    Sample: `image` (3 h w) float [-1, 1]; `label` (h w) int64, or (3 h w) float [-1, 1] for
    the colour modes (see `map_labels`); `instance` (h w) int64 and `depth` (1 h w) float32
    metres when asked; `path` (session file) and `index` (frame in it).
    """

    def __init__(self, source, *, camera: str | None = None, labels: str = "train_ids",
                 instance: bool = False, depth: bool = False, size: tuple[int, int] | None = None,
                 crop: tuple[int, int] | None = None, flip: bool = False, seed: int = 0,
                 road_line_as_road: bool = True):
        self.index = as_index(source)
        self.labels = check_label_mode(labels)
        self.camera, self.instance, self.depth = camera, instance, depth
        self.streams = ("rgb", "semantic") + (("instance",) if instance else ()) + (("depth",) if depth else ())
        self.index.check(camera, self.streams)
        self.augment = Augment(size, crop, flip)
        self.seed, self.road_line_as_road = seed, road_line_as_road

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, g: int) -> dict:
        session, i = self.index.locate(g)
        s = session.read(i, self.camera, self.streams)
        d = self.augment.draw(*s.rgb.shape[:2], self.rng(g))
        tags = self.augment.label(s.semantic, d)
        out = {"image": image_tensor(self.augment.image(s.rgb, d)),
               "label": label_tensor(map_labels(tags, self.labels, self.road_line_as_road), self.labels),
               "path": str(session.path), "index": i}
        if self.instance:
            out["instance"] = torch.from_numpy(self.augment.label(s.instance, d).astype(np.int64))
        if self.depth:
            out["depth"] = torch.from_numpy(np.ascontiguousarray(self.augment.label(s.depth, d)))[None]
        return out


class ClipDataset(Seeded, Dataset):
    """Clips of `length` frames `stride` apart (video models, the world model), never crossing
    a session boundary; clip starts are `hop` frames apart.

    Sample: `frames` (t 3 h w) float [-1, 1]; `actions` (t 5) float32, the `/ego/control` rows
    (throttle, steer, brake, hand_brake, reverse; row k is chosen from frame k and leads to
    frame k+1; steer is negated when the clip is flipped); `speed` (t,) float32 m/s;
    `semantic` (t h w) int64 in `labels` space and `depth` (t 1 h w) float32 m when asked;
    `path` and `start` (first frame index).
    """

    def __init__(self, source, length: int, *, stride: int = 1, hop: int = 1, camera: str | None = None,
                 semantic: bool = False, depth: bool = False, labels: str = "train_ids",
                 size: tuple[int, int] | None = None, crop: tuple[int, int] | None = None,
                 flip: bool = False, seed: int = 0):
        if length < 1 or stride < 1 or hop < 1:
            raise DrivesimError(f"clip length, stride and hop must be >= 1, got {length}, {stride}, {hop}")
        self.index = as_index(source)
        self.length, self.stride, self.span = length, stride, (length - 1) * stride + 1
        self.camera, self.labels = camera, check_label_mode(labels, ("train_ids", "cityscapes_ids", "carla"))
        self.streams = ("rgb",) + (("semantic",) if semantic else ()) + (("depth",) if depth else ())
        self.index.check(camera, self.streams)
        self.augment, self.seed = Augment(size, crop, flip), seed
        self.clips = self._starts(hop)

    def _starts(self, hop: int) -> np.ndarray:
        """(k 2) int64 rows of (session number, first frame)."""
        rows = []
        for k, s in enumerate(self.index.sessions):
            if len(s) < self.span:
                log.warning("%s has %d frames, fewer than a clip of %d; skipping it", s.path, len(s), self.span)
            rows += [(k, start) for start in range(0, len(s) - self.span + 1, hop)]
        if not rows:
            longest = max(len(s) for s in self.index.sessions)
            raise DrivesimError(f"no session is long enough for clips of {self.length} frames with stride "
                                f"{self.stride} ({self.span} frames; the longest has {longest}); "
                                "use shorter clips or record longer sessions")
        return np.array(rows, np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, n: int) -> dict:
        k, start = (int(v) for v in self.clips[n])
        session = self.index.sessions[k]
        s = session.read_range(start, start + self.span, step=self.stride, camera=self.camera, streams=self.streams)
        d = self.augment.draw(*s.rgb.shape[1:3], self.rng(n))
        actions = s.control.astype(np.float32)
        if d.flip:
            actions[:, 1] = -actions[:, 1]
        out = {"frames": image_tensor(self.augment.image(s.rgb, d)), "actions": torch.from_numpy(actions),
               "speed": torch.from_numpy(s.speed.astype(np.float32)), "path": str(session.path), "start": start}
        if s.semantic is not None:
            out["semantic"] = label_tensor(map_labels(self.augment.label(s.semantic, d), self.labels), self.labels)
        if s.depth is not None:
            out["depth"] = torch.from_numpy(np.ascontiguousarray(self.augment.label(s.depth, d)))[:, None]
        return out


# ----- unpaired domains ------------------------------------------------------------------------
class ImageSource(Protocol):
    """Anything with a length and RGB images by index (`h w 3` uint8)."""

    def __len__(self) -> int: ...

    def rgb(self, i: int) -> np.ndarray: ...


class SessionImages:
    """The RGB frames of one camera over a SessionIndex, as an ImageSource."""

    def __init__(self, source, camera: str | None = None):
        self.index, self.camera = as_index(source), camera
        self.index.check(camera, ("rgb",))

    def __len__(self) -> int:
        return len(self.index)

    def rgb(self, i: int) -> np.ndarray:
        session, k = self.index.locate(i)
        return session.read(k, self.camera, ("rgb",)).rgb


class ImageFolder:
    """Every PNG/JPEG under a folder (recursive, sorted), as an ImageSource."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise DrivesimError(f"{self.root}: no images (*.png, *.jpg) in it; give a folder of images, "
                                "a session file or a folder of sessions")

    def __len__(self) -> int:
        return len(self.files)

    def rgb(self, i: int) -> np.ndarray:
        return read_rgb(self.files[i])


def read_rgb(path: Path) -> np.ndarray:
    """An image file -> `h w 3` uint8 RGB."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DrivesimError(f"{path}: cannot read this image (missing or not a PNG/JPEG)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def image_source(source, camera: str | None = None) -> ImageSource:
    """An ImageSource from sessions (file, folder of .h5, Session, SessionIndex), a folder of
    images, or anything with `__len__` and `rgb(i)` (e.g. `CityscapesDataset`)."""
    if hasattr(source, "rgb") and hasattr(source, "__len__"):
        return source
    if isinstance(source, (Session, SessionIndex)):
        return SessionImages(source, camera)
    path = Path(source)
    if path.is_dir() and not any(p.suffix in SESSION_SUFFIXES for p in path.iterdir()):
        return ImageFolder(path)
    return SessionImages(path, camera)


class UnpairedDataset(Seeded, Dataset):
    """Two image domains (CycleGAN-style): A in order, B drawn per index from a generator
    seeded by `(seed, epoch, index)`, so a sample is deterministic.

    Sample: `A`, `B` (3 h w) float [-1, 1]; `A_index`, `B_index`. Give `size` or `crop`
    when the domains differ in size.
    """

    def __init__(self, a, b, *, camera_a: str | None = None, camera_b: str | None = None,
                 size: tuple[int, int] | None = None, crop: tuple[int, int] | None = None,
                 flip: bool = False, seed: int = 0):
        self.a, self.b = image_source(a, camera_a), image_source(b, camera_b)
        if len(self.a) == 0 or len(self.b) == 0:
            raise DrivesimError(f"unpaired domains need images on both sides; A has {len(self.a)}, B {len(self.b)}")
        self.augment, self.seed = Augment(size, crop, flip), seed

    def __len__(self) -> int:
        return len(self.a)

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} outside 0..{len(self) - 1}")
        rng = self.rng(i)
        j = int(rng.integers(len(self.b)))
        a, b = self.a.rgb(i), self.b.rgb(j)
        da, db = self.augment.draw(*a.shape[:2], rng), self.augment.draw(*b.shape[:2], rng)
        return {"A": image_tensor(self.augment.image(a, da)), "B": image_tensor(self.augment.image(b, db)),
                "A_index": i, "B_index": j}
