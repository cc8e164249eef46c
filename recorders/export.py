"""Export a session to the Cityscapes folder layout, so tools written for Cityscapes read it.

Writes `leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png` and, beside it in
`gtFine/`, `_gtFine_labelIds.png`, `_gtFine_trainIds.png`, `_gtFine_color.png` and (when the
camera recorded instances) `_gtFine_instanceIds.png`. `<frame>` is the frame index in the
session. Files are written into a temporary folder and moved into place once all are written.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

from .. import labels as L
from ..errors import DrivesimError
from .session import Session

log = logging.getLogger(__name__)

_CITY = re.compile(r"^[A-Za-z0-9-]+$")  # Cityscapes names split on "_"
_SPLIT = re.compile(r"^[A-Za-z0-9_-]+$")
_BATCH = 32  # frames read per HDF5 call


def export_cityscapes(session_path: str | Path, out_dir: str | Path, *, camera: str | None = None,
                      split: str = "train", city: str = "drivesim", every: int = 1, seq: int | None = None,
                      road_line_as_road: bool = True) -> int:
    """Write every `every`-th frame of one camera as a Cityscapes sequence; returns the number of
    frames written. `seq` defaults to the next sequence number free for `city` in `out_dir`, so
    several sessions can be exported into one folder. Never overwrites a file."""
    _check_names(split, city, every, seq)
    out_dir = Path(out_dir)
    with Session(session_path) as session:
        cam = session.camera(camera).name
        streams = session.check_streams(cam, ("rgb", "semantic"))
        streams += ("instance",) if "instance" in session.camera(cam).streams else ()
        if len(session) == 0:
            raise DrivesimError(f"{session.path} has no complete frame to export; record a longer session")
        _prepare(out_dir)
        seq = _next_seq(out_dir, split, city) if seq is None else seq
        tmp = Path(tempfile.mkdtemp(prefix=".export-", suffix=".tmp", dir=out_dir))
        try:
            written = _write_all(session, cam, streams, tmp, f"{split}/{city}", f"{city}_{seq:06d}",
                                 every, road_line_as_road)
            _move_into_place(tmp, out_dir, written)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    n = sum(r.startswith("leftImg8bit/") for r in written)
    log.info("exported %d frames of %s (camera %s) to %s as %s_%06d", n, session_path, cam, out_dir, city, seq)
    return n


def _check_names(split: str, city: str, every: int, seq: int | None) -> None:
    if not _CITY.match(city):
        raise DrivesimError(f"city '{city}' is not usable in Cityscapes file names; use letters, digits and '-'")
    if not _SPLIT.match(split):
        raise DrivesimError(f"split '{split}' is not a folder name; use e.g. train, val or test")
    if every < 1:
        raise DrivesimError(f"--every must be at least 1, got {every}")
    if seq is not None and not 0 <= seq <= 999_999:
        raise DrivesimError(f"sequence number {seq} does not fit Cityscapes' 6 digits")


def _prepare(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise DrivesimError(f"--out {out_dir} is a file; give a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DrivesimError(f"cannot create {out_dir}: {e.strerror}") from e
    if not os.access(out_dir, os.W_OK):
        raise DrivesimError(f"cannot write to {out_dir}")


def _next_seq(out_dir: Path, split: str, city: str) -> int:
    pattern = re.compile(rf"^{city}_(\d+)_\d+_")
    used = [int(m[1]) for sub in ("leftImg8bit", "gtFine") for p in (out_dir / sub / split / city).glob("*.png")
            if (m := pattern.match(p.name))]
    return max(used, default=-1) + 1


def _write_all(session: Session, cam: str, streams: tuple[str, ...], tmp: Path, rel: str, stem: str,
               every: int, road_line_as_road: bool) -> list[str]:
    """Write the PNGs under `tmp`; returns their paths relative to it."""
    for top in ("leftImg8bit", "gtFine"):
        (tmp / top / rel).mkdir(parents=True)
    written = []
    for start in range(0, len(session), _BATCH * every):
        stop = min(start + _BATCH * every, len(session))
        s = session.read_range(start, stop, step=every, camera=cam, streams=streams)
        for k, i in enumerate(s.index):
            name = f"{stem}_{int(i):06d}"
            images = cityscapes_images(s.rgb[k], s.semantic[k], None if s.instance is None else s.instance[k],
                                       road_line_as_road)
            for suffix, image in images.items():
                path = f"{'leftImg8bit' if suffix == 'leftImg8bit' else 'gtFine'}/{rel}/{name}_{suffix}.png"
                _write_png(tmp / path, image)
                written.append(path)
    return written


def cityscapes_images(rgb: np.ndarray, semantic: np.ndarray, instance: np.ndarray | None = None,
                      road_line_as_road: bool = True) -> dict[str, np.ndarray]:
    """One frame's Cityscapes files, by name suffix, as arrays ready for `cv2.imwrite` (BGR)."""
    ids = L.to_cityscapes_ids(semantic, road_line_as_road)
    out = {"leftImg8bit": cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), "gtFine_labelIds": ids,
           "gtFine_trainIds": L.cityscapes_id_to_train_id()[ids],
           "gtFine_color": cv2.cvtColor(L.cityscapes_palette()[ids], cv2.COLOR_RGB2BGR)}
    if instance is not None:
        out["gtFine_instanceIds"] = to_cityscapes_instance_ids(ids, instance)
    return out


def to_cityscapes_instance_ids(ids: np.ndarray, instance: np.ndarray) -> np.ndarray:
    """(h w) uint16 in Cityscapes' encoding: `id * 1000 + k` on objects of classes with
    instances (k numbers the objects of that class in this image, in order of their instance
    id), the label id elsewhere."""
    from cityscapesscripts.helpers.labels import labels

    out = ids.astype(np.uint16)
    for label in (lb for lb in labels if lb.hasInstances and 0 <= lb.id < 256):
        mask = (ids == label.id) & (instance > 0)
        if mask.any():
            objects, k = np.unique(instance[mask], return_inverse=True)
            if len(objects) > 1000:
                raise DrivesimError(f"more than 1000 '{label.name}' objects in one frame; "
                                    "Cityscapes' instance encoding cannot hold them")
            out[mask] = label.id * 1000 + k.reshape(-1)
    return out


def _write_png(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise DrivesimError(f"cannot write {path}")


def _move_into_place(tmp: Path, out_dir: Path, written: list[str]) -> None:
    """Move every file to `out_dir`, refusing to replace one; on failure, remove those moved."""
    clash = next((out_dir / r for r in written if (out_dir / r).exists()), None)
    if clash is not None:
        raise DrivesimError(f"{clash} exists; export to another --out or --city (nothing was written)")
    moved: list[Path] = []
    try:
        for r in written:
            (out_dir / r).parent.mkdir(parents=True, exist_ok=True)
            if (out_dir / r).exists():
                raise FileExistsError(f"{out_dir / r} appeared during the export")
            os.rename(tmp / r, out_dir / r)
            moved.append(out_dir / r)
    except OSError as e:
        for p in moved:
            p.unlink(missing_ok=True)
        raise DrivesimError(f"moving the export into {out_dir} failed ({e}); nothing was kept") from e
