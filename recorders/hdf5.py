"""The HDF5 session file: writing it off the loop's thread, opening it safely, repairing it.

The layout is documented in docs/recording-format.md. Crash safety comes from HDF5's
single-writer/multiple-reader (SWMR) mode: every dataset is created before the first frame,
the writer only appends, and HDF5 orders its metadata writes so that the file on disk is
consistent after every flush. After `kill -9`, every frame flushed before the kill reads back
and the root attribute `complete` is still False.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import h5py
import hdf5plugin
import numpy as np
import zstandard

from ..errors import DrivesimError
from ..taps import RunInfo, Step
from ..types import CameraSpec, Control, Frame

log = logging.getLogger(__name__)

FORMAT = "drivesim-session"
FORMAT_VERSION = 1
LIBVER = ("v110", "v110")  # SWMR needs the 1.10 file format; readable by HDF5 >= 1.10
EVENT_TABLES = {"collision": "collisions", "lane_invasion": "lane_invasions", "off_road": "off_road"}
EVENT_DTYPE = np.dtype([("i", "<i8"), ("frame", "<i8"), ("other_id", "<i8"), ("other_type", "S32"),
                        ("impulse", "<f4"), ("x", "<f4"), ("y", "<f4")])
STREAM_DTYPES = {"rgb": np.uint8, "semantic": np.uint8, "depth": np.float16, "instance": np.int32,
                 "flow": np.float16}
# (shape after (N, H, W), dtype) of the ego table's datasets
EGO_FIELDS = {"frame": ((), np.int64), "time": ((), np.float64), "transform": ((6,), np.float32),
              "velocity": ((3,), np.float32), "speed": ((), np.float32), "control": ((5,), np.float32),
              "applied_control": ((5,), np.float32), "route_progress": ((), np.float32),
              "route_completion": ((), np.float32)}
# Compression, chosen with `benchmarks/bench_record.py --codecs 200`: Zstandard at level 1
# (hdf5plugin) wrote 2-7x faster than gzip-1, smaller on every stream of the flat style (gzip-1
# is ~13% smaller on textured rgb only), and smaller than LZ4 and Blosc-LZ4 on every stream;
# `none` trades disk for the last bit of speed.
CODECS = {"zstd": hdf5plugin.Zstd(clevel=1), "none": {}}
ZSTD_LEVEL = 1


def _stream_shape(spec: CameraSpec, stream: str) -> tuple[int, ...]:
    hw = (spec.height, spec.width)
    return {"rgb": (*hw, 3), "flow": (*hw, 2)}.get(stream, hw)


def _control_row(c: Control | None) -> tuple[float, ...]:
    """A control as a table row; NaN when no driver chose one (a loop stepped from outside)."""
    if c is None:
        return (float("nan"),) * 5
    return (c.throttle, c.steer, c.brake, float(c.hand_brake), float(c.reverse))


@dataclass
class _Item:
    """One frame's rows, as the writer thread needs them."""

    frame: Frame
    control: Control | None


class Recorder:
    """Loop tap writing one HDF5 session per episode, on its own thread.

    `on_step` hands the frame to a bounded queue; when the disk falls behind, the loop waits for
    room (back-pressure) instead of dropping frames. The file is flushed every `flush_interval`
    seconds. Errors of the writer thread surface in the loop's thread at the next step or at close.
    """

    def __init__(self, path: str | Path, *, flush_interval: float = 1.0, queue_size: int = 16,
                 codec: str = "zstd", overwrite: bool = False):
        if codec not in CODECS:
            raise DrivesimError(f"unknown codec '{codec}'; valid: {', '.join(CODECS)}")
        if flush_interval <= 0:
            raise DrivesimError(f"flush interval must be positive, got {flush_interval}")
        self.path = Path(path)
        self.flush_interval = flush_interval
        self.codec = codec
        self.overwrite = overwrite
        check_target(self.path, overwrite)
        self.n_frames = 0
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._failed = False
        self._file: h5py.File | None = None
        self._cameras: list[CameraSpec] = []

    # ----- loop thread -----------------------------------------------------------------------
    def on_reset(self, info: RunInfo) -> None:
        self._cameras = list(info.cameras)
        self._file = _create(self.path, info, self.codec)
        self._thread = threading.Thread(target=self._write_loop, name="drivesim-recorder", daemon=True)
        self._thread.start()

    def on_step(self, step: Step) -> None:
        self._raise_writer_error()
        self._queue.put(_Item(step.frame, step.control))

    def on_close(self) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join()
        self._thread = None
        self._raise_writer_error()
        if not self._failed:  # a failed file stays marked incomplete: `inspect --repair` trims it
            _finish(self.path, self.n_frames)
        log.info("recorded %d frames to %s", self.n_frames, self.path)

    def _raise_writer_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise DrivesimError(f"recording to {self.path} failed: {error} "
                                f"(the first {self.n_frames} frames are in the file)") from error

    # ----- writer thread ---------------------------------------------------------------------
    def _write_loop(self) -> None:
        writer: _SessionWriter | None = None
        last_flush = time.monotonic()
        try:
            writer = _SessionWriter(self._file, self._cameras, self.codec)
            while (item := self._queue.get()) is not None:
                writer.append(item)
                self.n_frames = writer.n
                if time.monotonic() - last_flush >= self.flush_interval:
                    writer.flush()
                    last_flush = time.monotonic()
                    log.debug("flushed %d frames", writer.n)
            writer.flush()
        except BaseException as e:  # noqa: BLE001 - handed to the loop's thread
            self._error, self._failed = e, True
            self.n_frames = _salvage(writer)
            while self._queue.get() is not None:  # unblock the loop until it sees the error
                pass
        finally:
            self._file.close()
            self._file = None


def _salvage(writer: _SessionWriter | None) -> int:
    """After a failure, try to flush the whole frames still buffered; return the frames on disk."""
    if writer is None:
        return 0
    try:
        writer.flush()
    except Exception as e:  # noqa: BLE001 - the first error is the one reported
        log.warning("could not flush the last frames after the failure: %s", e)
    return writer.flushed


def check_target(path: Path, overwrite: bool) -> None:
    """Refuse to clobber an existing file or to write where we cannot, before anything runs."""
    if path.suffix not in (".h5", ".hdf5"):
        raise DrivesimError(f"{path}: a session file must end in .h5 or .hdf5")
    if path.exists() and not overwrite:
        raise DrivesimError(f"{path} exists; choose another name or pass --overwrite")
    if not path.parent.is_dir():
        raise DrivesimError(f"{path.parent} is not a directory; create it first")
    if not os.access(path.parent, os.W_OK):
        raise DrivesimError(f"cannot write to {path.parent}")


def _create(path: Path, info: RunInfo, codec: str) -> h5py.File:
    """Create the file with every dataset, write the header, and switch to SWMR appending."""
    from .. import __version__

    f = h5py.File(path, "w", libver=LIBVER)
    try:
        f.attrs.update(
            format=FORMAT, format_version=FORMAT_VERSION, toolkit_version=__version__,
            created_utc=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            world=info.world, map=info.map_name, weather=info.weather, style=info.style,
            agent=info.agent, synth=info.synth, seed=info.seed, fps=float(info.fps),
            scenario=info.scenario_text, cameras=json.dumps([c.name for c in info.cameras]),
            complete=False, n_frames=0,
        )
        for spec in info.cameras:
            g = f.create_group(f"cameras/{spec.name}")
            g.attrs.update(width=spec.width, height=spec.height, fov=spec.fov,
                           intrinsics=spec.intrinsics(), extrinsics=np.linalg.inv(spec.mount.matrix()),
                           mount=np.asarray(spec.mount.as_array(), np.float64),
                           streams=json.dumps(list(spec.streams)))
            for stream in spec.streams:
                shape = _stream_shape(spec, stream)
                g.create_dataset(stream, (0, *shape), STREAM_DTYPES[stream], maxshape=(None, *shape),
                                 chunks=(1, *shape), **CODECS[codec])
            g.create_dataset("pose", (0, 6), np.float32, maxshape=(None, 6), chunks=(1024, 6))
        for name, (shape, dtype) in EGO_FIELDS.items():
            f.create_dataset(f"ego/{name}", (0, *shape), dtype, maxshape=(None, *shape), chunks=(1024, *shape))
        for table in EVENT_TABLES.values():
            f.create_dataset(f"events/{table}", (0,), EVENT_DTYPE, maxshape=(None,), chunks=(256,))
        route = np.array([(w.x, w.y, w.yaw, w.s) for w in info.route.waypoints], np.float32).reshape(-1, 4)
        f.create_dataset("route/waypoints", data=route)
        f.swmr_mode = True
    except BaseException:
        f.close()
        path.unlink(missing_ok=True)
        raise
    return f


class _SessionWriter:
    """Appends frames to an open session (writer thread only).

    Images are compressed here with `zstandard` (which releases the GIL, so the loop keeps
    running) and stored with `write_direct_chunk`, one chunk per frame, bypassing HDF5's filter
    pipeline; readers decompress them through the Zstd filter registered by `hdf5plugin`. The
    small per-frame tables (ego, camera poses, events) are buffered and written at each flush,
    so the ego table's length is the number of whole frames a crash leaves behind.
    """

    def __init__(self, f: h5py.File, cameras: list[CameraSpec], codec: str):
        self.f = f
        self.zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL) if codec == "zstd" else None
        self.images = [(spec.name, stream, f["cameras"][spec.name][stream], STREAM_DTYPES[stream])
                       for spec in cameras for stream in spec.streams]
        self.rows: dict[str, list] = {name: [] for name in self._tables()}
        self.n = self.flushed = 0

    def _tables(self) -> list[str]:
        names = [f"ego/{k}" for k in EGO_FIELDS] + [f"events/{t}" for t in EVENT_TABLES.values()]
        return names + [f"cameras/{name}/pose" for name in self.f["cameras"]]

    def append(self, item: _Item) -> None:
        frame, i = item.frame, self.n
        for name, stream, d, dtype in self.images:
            value = getattr(frame.cameras[name], stream)
            if value is None:
                raise DrivesimError(f"camera '{name}' delivered no {stream} at frame {frame.frame}")
            data = _stored(value, dtype)
            if data.shape != d.shape[1:]:
                raise DrivesimError(f"camera '{name}' {stream} has shape {data.shape}, the file {d.shape[1:]}")
            d.resize(i + 1, axis=0)
            d.id.write_direct_chunk((i,) + (0,) * data.ndim, self.zstd.compress(data) if self.zstd else data.tobytes())
        for name, cam in frame.cameras.items():
            if f"cameras/{name}/pose" in self.rows:
                self.rows[f"cameras/{name}/pose"].append(cam.transform.as_array())
        ego = frame.ego
        for key, value in (("time", frame.time), ("transform", ego.transform.as_array()), ("velocity", ego.velocity),
                           ("speed", ego.speed), ("control", _control_row(item.control)),
                           ("applied_control", _control_row(ego.control)), ("route_progress", ego.route_progress),
                           ("route_completion", ego.route_completion), ("frame", frame.frame)):
            self.rows[f"ego/{key}"].append(value)
        for e in frame.events:
            self.rows[f"events/{EVENT_TABLES[e.kind]}"].append(
                (i, e.frame, e.other_id, e.other_type.encode()[:32], e.impulse, *e.location))
        self.n += 1

    def flush(self) -> None:
        """Write the buffered table rows (the ego table last) and flush the file to disk."""
        for name in sorted(self.rows, key=lambda k: k == "ego/frame"):
            rows = self.rows[name]
            if not rows:
                continue
            d = self.f[name]
            block = np.array(rows, EVENT_DTYPE) if name.startswith("events/") else np.asarray(rows, d.dtype)
            start = len(d)
            d.resize(start + len(block), axis=0)
            d[start:] = block
            rows.clear()
        self.f.flush()
        self.flushed = self.n


def _stored(value: np.ndarray, dtype: type) -> np.ndarray:
    """`value` as the file stores it. float32 -> float16 goes through OpenCV (adding -0.0, the
    IEEE identity, so that -0.0 stays -0.0): bit-identical to numpy's cast (round to nearest
    even) but vectorized and off the GIL, 10x faster here."""
    if dtype is np.float16 and value.dtype == np.float32:
        return np.asarray(cv2.add(np.ascontiguousarray(value), -0.0, dtype=cv2.CV_16F))
    return np.ascontiguousarray(value, dtype)


def _finish(path: Path, n_frames: int) -> None:
    """Mark a cleanly closed file complete (outside SWMR mode, where attributes may change)."""
    with h5py.File(path, "r+") as f:
        f.attrs["n_frames"] = n_frames
        f.attrs["complete"] = True


# ----- reading and repairing -----------------------------------------------------------------
def open_session_file(path: str | Path) -> h5py.File:
    """Open a session file read-only, checking that it is one this version can read.

    Interrupted recordings are opened in SWMR-read mode (a killed writer leaves the file marked
    as open for writing). Raises `DrivesimError` with one line naming the problem and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise DrivesimError(f"{path}: no such session file")
    if not h5py.is_hdf5(path):
        raise DrivesimError(f"{path} is not an HDF5 file (a drivesim session is written by "
                            "`drivesim record` or `drivesim run --record`)")
    try:
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            if "already open for write" not in str(e):
                raise
            f = h5py.File(path, "r", swmr=True)
    except OSError as e:
        raise DrivesimError(f"{path} is truncated or damaged; HDF5 cannot read it ({_first_line(e)})") from e
    fmt, version = f.attrs.get("format"), f.attrs.get("format_version")
    if fmt != FORMAT:
        f.close()
        raise DrivesimError(f"{path} is an HDF5 file but not a drivesim session (no format='{FORMAT}')")
    if version != FORMAT_VERSION:
        f.close()
        raise DrivesimError(f"{path} is session format version {version}; this drivesim reads version "
                            f"{FORMAT_VERSION} (use a drivesim release that matches the file)")
    return f


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def per_frame_datasets(f: h5py.File) -> list[h5py.Dataset]:
    """Every dataset indexed by frame (cameras and ego)."""
    out = [f["ego"][k] for k in f["ego"]]
    for cam in f["cameras"].values():
        out += [cam[k] for k in cam]
    return out


def consistent_frames(f: h5py.File) -> int:
    """Frames present in every per-frame dataset: all of them for a complete file; for an
    interrupted one, the frames written before its last flush."""
    return min((len(d) for d in per_frame_datasets(f)), default=0)


def repair_session(path: str | Path) -> int:
    """Trim an interrupted session to its last consistent frame and mark it complete.

    The repaired copy is written beside the file and replaces it only once it is whole, so a
    failure leaves the original untouched. Returns the number of frames kept.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".repair.tmp")
    with open_session_file(path) as src:
        if src.attrs["complete"]:
            return int(src.attrs["n_frames"])
        n = consistent_frames(src)
        try:
            with h5py.File(tmp, "w", libver=LIBVER) as dst:
                for key, value in src.attrs.items():
                    dst.attrs[key] = value
                for name in src:
                    src.copy(src[name], dst, name=name)  # chunks are copied as stored, not recompressed
                for d in per_frame_datasets(dst):
                    d.resize(n, axis=0)
                for table in dst["events"].values():
                    table.resize(int(np.count_nonzero(table["i"][:] < n)), axis=0)
                dst.attrs.update(n_frames=n, complete=True, repaired=True)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return n


def inspect_session(path: str | Path) -> dict:
    """What `drivesim inspect` prints: cameras, frames, duration, distance, events, completeness."""
    path = Path(path)
    with open_session_file(path) as f:
        n = consistent_frames(f)
        cameras = {}
        for name, g in f["cameras"].items():
            cameras[name] = {
                "size": [int(g.attrs["width"]), int(g.attrs["height"])], "fov": float(g.attrs["fov"]),
                "streams": {k: {"shape": list(g[k].shape[1:]), "dtype": str(g[k].dtype),
                                "codec": _codec_name(g[k])} for k in json.loads(g.attrs["streams"])},
            }
        xy = f["ego/transform"][:n, :2].astype(np.float64)
        time_s = f["ego/time"][:n]
        events = {k: int(np.count_nonzero(t["i"][:] < n)) for k, t in f["events"].items()}
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
    return {
        "path": str(path), "bytes": path.stat().st_size, "complete": bool(attrs["complete"]),
        "frames": n, "n_frames_attr": int(attrs["n_frames"]),
        "duration_s": float(time_s[-1] - time_s[0] + 1.0 / attrs["fps"]) if n else 0.0,
        "distance_m": float(np.linalg.norm(np.diff(xy, axis=0), axis=1).sum()) if n > 1 else 0.0,
        "events": events, "cameras": cameras,
        **{k: attrs[k] for k in ("world", "map", "weather", "style", "agent", "synth", "seed", "fps",
                                 "created_utc", "toolkit_version", "format_version")},
    }


def _codec_name(d: h5py.Dataset) -> str:
    ids = {hdf5plugin.ZSTD_ID: "zstd"}
    plist = d.id.get_create_plist()
    names = [ids.get(plist.get_filter(k)[0], str(plist.get_filter(k)[0])) for k in range(plist.get_nfilters())]
    return "+".join(names) or "none"
