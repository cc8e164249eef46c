"""Random access to a recorded session: frames, ranges of frames, the ego table and events.

A `Session` stores only its path and opens the HDF5 file lazily in each process, so it can be
pickled and handed to DataLoader workers: every worker opens its own file handle.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, fields
from pathlib import Path

import h5py
import numpy as np

from ..errors import DrivesimError
from .hdf5 import consistent_frames, open_session_file

log = logging.getLogger(__name__)

IMAGE_STREAMS = ("rgb", "semantic", "depth", "instance", "flow")
_FLOAT_STREAMS = ("depth", "flow")  # stored as float16, read back as float32


@dataclass(frozen=True)
class CameraInfo:
    """A recorded camera: size, optics and the streams in the file."""

    name: str
    width: int
    height: int
    fov: float  # horizontal, degrees
    intrinsics: np.ndarray  # 3x3, OpenCV convention
    extrinsics: np.ndarray  # 4x4, ego -> camera-local
    mount: np.ndarray  # (6,) x, y, z, pitch, yaw, roll in the ego frame
    streams: tuple[str, ...]


@dataclass(frozen=True)
class EgoTable:
    """The `/ego` datasets, trimmed to the session's consistent frames (n rows each)."""

    frame: np.ndarray  # (n,) int64 simulator frame id
    time: np.ndarray  # (n,) float64 s
    transform: np.ndarray  # (n 6) float32 x, y, z, pitch, yaw, roll
    velocity: np.ndarray  # (n 3) float32 m/s
    speed: np.ndarray  # (n,) float32 m/s
    control: np.ndarray  # (n 5) float32 throttle, steer, brake, hand_brake, reverse chosen from frame i
    applied_control: np.ndarray  # (n 5) float32 applied in the tick that produced frame i
    route_progress: np.ndarray  # (n,) float32 m
    route_completion: np.ndarray  # (n,) float32 0..1


@dataclass
class Sample:
    """One camera's streams at one frame (arrays `h w [c]`), or at t frames (`t h w [c]`) when
    read as a range; streams not asked for are None."""

    index: np.ndarray | int  # frame index (or t indices) into the session
    camera: str
    frame: np.ndarray | int  # simulator frame id(s)
    time: np.ndarray | float  # s
    control: np.ndarray  # ([t] 5) float32, the action chosen from this frame
    speed: np.ndarray | float  # m/s
    pose: np.ndarray  # ([t] 6) float32 world pose of the camera
    rgb: np.ndarray | None = None  # uint8 RGB
    semantic: np.ndarray | None = None  # uint8 CARLA tags
    depth: np.ndarray | None = None  # float32 metres
    instance: np.ndarray | None = None  # int32, 0 = none
    flow: np.ndarray | None = None  # float32 pixels (du, dv)


class Session:
    """A session file opened for reading: `len(session)` frames, `session[i]`, `session[a:b]`.

    Interrupted recordings read up to their last consistent frame (with a warning).
    Bad files raise `DrivesimError` with one line naming the problem and the fix.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._h5: h5py.File | None = None
        self._pid = -1
        f = self._file()
        try:
            self.attrs: dict = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
            self.cameras: dict[str, CameraInfo] = {name: _camera_info(f, name) for name in _camera_names(f)}
            self.n_frames = consistent_frames(f)
        except (KeyError, ValueError, OSError) as e:
            self.close()
            raise DrivesimError(f"{self.path} is a damaged session ({e}); record it again") from e
        self._ego: EgoTable | None = None
        if not self.complete:
            log.warning("%s is an interrupted recording: reading its %d consistent frames "
                        "(`drivesim inspect --repair` trims and closes it)", self.path, self.n_frames)

    # ----- file handle, one per process --------------------------------------------------------
    def _file(self) -> h5py.File:
        if self._h5 is None or self._pid != os.getpid():
            if self._h5 is not None:  # inherited through fork: never share it with the parent
                _close_quietly(self._h5)
            self._h5 = open_session_file(self.path)
            self._pid = os.getpid()
        return self._h5

    def close(self) -> None:
        """Close this process's handle; the next read opens it again."""
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_h5=None, _pid=-1, _ego=None)  # each process opens (and reads) its own
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # ----- metadata ----------------------------------------------------------------------------
    @property
    def complete(self) -> bool:
        return bool(self.attrs.get("complete", False))

    @property
    def fps(self) -> float:
        return float(self.attrs["fps"])

    @property
    def primary_camera(self) -> str:
        return next(iter(self.cameras))

    def camera(self, name: str | None = None) -> CameraInfo:
        """The camera called `name` (the primary camera when None)."""
        if name is None:
            name = self.primary_camera
        if name not in self.cameras:
            raise DrivesimError(f"{self.path}: no camera '{name}'; it has: {', '.join(self.cameras)}")
        return self.cameras[name]

    def check_streams(self, camera: str | None, streams: tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
        """The streams to read (all the camera has when None); raises on one it lacks."""
        info = self.camera(camera)
        if streams is None:
            return info.streams
        missing = [s for s in streams if s not in info.streams]
        if missing:
            raise DrivesimError(f"{self.path}: camera '{info.name}' has no {', '.join(missing)} stream; "
                                f"it has: {', '.join(info.streams)}")
        return tuple(streams)

    @property
    def ego(self) -> EgoTable:
        """The ego table as numpy arrays (read once, then cached)."""
        if self._ego is None:
            g = self._file()["ego"]
            self._ego = EgoTable(**{k.name: g[k.name][: self.n_frames] for k in fields(EgoTable)})
        return self._ego

    @property
    def events(self) -> dict[str, np.ndarray]:
        """Event tables (structured arrays with fields i, frame, other_id, other_type, impulse,
        x, y) limited to events at readable frames."""
        out = {}
        for name, table in self._file()["events"].items():
            rows = table[:]
            out[name] = rows[rows["i"] < self.n_frames]
        return out

    @property
    def route(self) -> np.ndarray:
        """(m 4) float32 planned route: x, y, yaw, s."""
        return self._file()["route/waypoints"][:]

    # ----- frames ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.n_frames

    def __getitem__(self, key: int | slice) -> Sample:
        if isinstance(key, slice):
            start, stop, step = key.indices(self.n_frames)
            return self.read_range(start, stop, step=step)
        return self.read(key)

    def read(self, i: int, camera: str | None = None, streams: tuple[str, ...] | list[str] | None = None) -> Sample:
        """Frame `i` of one camera (the primary camera when None): arrays `h w [c]`."""
        i = self._check_index(i)
        return self._read(slice(i, i + 1), camera, streams, squeeze=True)

    def read_range(self, start: int, stop: int, *, step: int = 1, camera: str | None = None,
                   streams: tuple[str, ...] | list[str] | None = None) -> Sample:
        """Frames `start:stop:step`, read with one HDF5 call per stream: arrays `t h w [c]`."""
        if step < 1:
            raise ValueError(f"step must be >= 1, got {step}")
        if not 0 <= start <= stop <= self.n_frames:
            raise IndexError(f"frames {start}:{stop} outside 0:{self.n_frames} of {self.path}")
        return self._read(slice(start, stop, step), camera, streams, squeeze=False)

    def _check_index(self, i: int) -> int:
        j = int(i) + self.n_frames if i < 0 else int(i)
        if not 0 <= j < self.n_frames:
            raise IndexError(f"frame {i} outside 0..{self.n_frames - 1} of {self.path}")
        return j

    def _read(self, rows: slice, camera: str | None, streams, *, squeeze: bool) -> Sample:
        info = self.camera(camera)
        names = self.check_streams(info.name, streams)
        g = self._file()["cameras"][info.name]
        ego = self.ego
        data = {s: _stream(g[s], rows) for s in names}
        data["pose"] = g["pose"][rows]
        ego_rows = {"index": np.arange(self.n_frames)[rows], "frame": ego.frame[rows], "time": ego.time[rows],
                    "control": ego.control[rows], "speed": ego.speed[rows]}
        if squeeze:
            data = {k: v[0] for k, v in data.items()}
            ego_rows = {k: (v[0].item() if v.ndim == 1 else v[0]) for k, v in ego_rows.items()}
        return Sample(camera=info.name, **ego_rows, **data)


def _stream(d: h5py.Dataset, rows: slice) -> np.ndarray:
    out = d[rows]
    return out.astype(np.float32) if d.dtype == np.float16 else out


def _camera_names(f: h5py.File) -> list[str]:
    names = json.loads(f.attrs.get("cameras", "[]")) or list(f["cameras"])
    return [n for n in names if n in f["cameras"]]


def _camera_info(f: h5py.File, name: str) -> CameraInfo:
    a = f["cameras"][name].attrs
    return CameraInfo(name=name, width=int(a["width"]), height=int(a["height"]), fov=float(a["fov"]),
                      intrinsics=np.asarray(a["intrinsics"]), extrinsics=np.asarray(a["extrinsics"]),
                      mount=np.asarray(a["mount"]), streams=tuple(json.loads(a["streams"])))


def _close_quietly(f: h5py.File) -> None:
    try:
        f.close()
    except Exception as e:  # noqa: BLE001 - a handle inherited through fork
        log.debug("closing an inherited handle failed: %s", e)
