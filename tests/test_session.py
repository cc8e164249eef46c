"""Session: random access equal to the file, ranges, metadata, bad input, fork-safe handles."""

import logging
import os
import pickle
import shutil
from dataclasses import fields

import h5py
import hdf5plugin  # noqa: F401 - registers the Zstd filter for direct h5py reads
import numpy as np
import pytest
import recordings
import torch
from torch.utils.data import DataLoader, Dataset

from drivesim_carla.errors import DrivesimError
from drivesim_carla.recorders.session import EgoTable, Session


@pytest.fixture(scope="session")
def all_streams(tmp_path_factory):
    return recordings.all_streams(tmp_path_factory)


@pytest.fixture(scope="session")
def front_only(tmp_path_factory):
    return recordings.front_only(tmp_path_factory)


def test_read_returns_the_stored_frame_and_metadata(all_streams):
    with Session(all_streams) as s, h5py.File(all_streams, "r") as f:
        assert len(s) == 24 and s.complete and s.fps == 20.0 and s.attrs["seed"] == 0
        assert list(s.cameras) == ["front", "rear"] and s.primary_camera == "front"
        rear, g = s.camera("rear"), f["cameras/rear"]
        assert rear.streams == ("rgb", "semantic", "depth", "instance", "flow")
        assert (rear.width, rear.height) == (128, 64) and rear.fov == 110.0
        assert np.array_equal(rear.intrinsics, g.attrs["intrinsics"])
        assert np.array_equal(rear.extrinsics, g.attrs["extrinsics"])
        x = s.read(7, camera="rear")
        for stream in ("rgb", "semantic", "instance"):
            assert np.array_equal(getattr(x, stream), g[stream][7])
        assert x.depth.dtype == np.float32 and np.array_equal(x.depth, g["depth"][7].astype(np.float32))
        assert x.flow.dtype == np.float32 and np.array_equal(x.flow, g["flow"][7].astype(np.float32))
        assert np.array_equal(x.pose, g["pose"][7])
        assert (x.index, x.frame, x.time) == (7, f["ego/frame"][7], f["ego/time"][7])
        assert np.array_equal(x.control, f["ego/control"][7]) and x.speed == f["ego/speed"][7]
        last = s.read(-1, streams=["semantic"])
        assert last.index == 23 and last.camera == "front" and last.rgb is None
        assert np.array_equal(last.semantic, f["cameras/front/semantic"][23])
        for field in fields(EgoTable):
            assert np.array_equal(getattr(s.ego, field.name), f["ego"][field.name][:])
        assert set(s.events) == {"collisions", "lane_invasions", "off_road"}
        assert np.array_equal(s.route, f["route/waypoints"][:])


def test_a_range_is_one_read_of_the_same_frames(all_streams):
    with Session(all_streams) as s:
        clip = s.read_range(2, 20, step=3, camera="rear", streams=("rgb", "depth", "instance"))
        assert list(clip.index) == [2, 5, 8, 11, 14, 17] and clip.rgb.shape == (6, 64, 128, 3)
        assert clip.flow is None and clip.control.shape == (6, 5)
        for k, i in enumerate(clip.index):
            one = s.read(int(i), camera="rear")
            assert np.array_equal(clip.rgb[k], one.rgb) and np.array_equal(clip.depth[k], one.depth)
            assert np.array_equal(clip.instance[k], one.instance) and clip.frame[k] == one.frame
            assert np.array_equal(clip.control[k], one.control)
        assert np.array_equal(s[2:20:3].semantic, s.read_range(2, 20, step=3).semantic)
        with pytest.raises(IndexError):
            s.read(24)
        with pytest.raises(IndexError):
            s.read_range(10, 25)


def test_unknown_camera_or_stream_lists_the_valid_ones(front_only):
    with Session(front_only) as s:
        with pytest.raises(DrivesimError, match=r"no camera 'side'; it has: front$"):
            s.read(0, camera="side")
        with pytest.raises(DrivesimError, match=r"camera 'front' has no flow stream; it has: rgb, semantic, depth$"):
            s.read(0, streams=["rgb", "flow"])


def test_bad_files_are_one_line_errors(front_only, tmp_path):
    (tmp_path / "text.h5").write_text("not hdf5 at all")
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(front_only.read_bytes()[: front_only.stat().st_size // 3])
    future = tmp_path / "future.h5"
    shutil.copy(front_only, future)
    with h5py.File(future, "r+") as f:
        f.attrs["format_version"] = 2
    cases = [(tmp_path / "missing.h5", "no such session file"), (tmp_path / "text.h5", "is not an HDF5 file"),
             (truncated, "is truncated or damaged"),
             (future, "session format version 2; this drivesim reads version 1")]
    for path, message in cases:
        with pytest.raises(DrivesimError) as e:
            Session(path)
        assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_an_interrupted_file_reads_its_consistent_frames(front_only, tmp_path, caplog):
    path = tmp_path / "cut.h5"
    shutil.copy(front_only, path)
    with h5py.File(path, "r+") as f:  # what a writer killed between two flushes leaves behind
        f.attrs.update(complete=False, n_frames=0)
        f["cameras/front/rgb"].resize(7, axis=0)
    with caplog.at_level(logging.WARNING), Session(path) as s:
        assert len(s) == 7 and not s.complete and len(s.ego.frame) == 7
        assert np.array_equal(s.read(6).semantic, Session(front_only).read(6).semantic)
        with pytest.raises(IndexError):
            s.read(7)
    assert "interrupted recording" in caplog.text and "7 consistent frames" in caplog.text


class _Frames(Dataset):
    """A session's frames with the id of the process that read them."""

    def __init__(self, session):
        self.session = session

    def __len__(self):
        return len(self.session)

    def __getitem__(self, i):
        x = self.session.read(i, camera="rear", streams=("rgb", "depth"))
        return {"rgb": torch.from_numpy(x.rgb), "depth": torch.from_numpy(x.depth), "pid": os.getpid()}


def test_pickled_and_forked_sessions_open_their_own_handles(all_streams):
    s = Session(all_streams)
    direct = [s.read(i, camera="rear") for i in range(len(s))]  # the parent's handle is open when workers fork
    copy = pickle.loads(pickle.dumps(s))
    assert copy._h5 is None and np.array_equal(copy.read(5, camera="rear").rgb, direct[5].rgb)
    loader = DataLoader(_Frames(s), batch_size=4, num_workers=2)
    batches = list(loader)
    rgb = torch.cat([b["rgb"] for b in batches]).numpy()
    depth = torch.cat([b["depth"] for b in batches]).numpy()
    assert np.array_equal(rgb, np.stack([x.rgb for x in direct]))
    assert np.array_equal(depth, np.stack([x.depth for x in direct]))
    pids = {int(p) for b in batches for p in b["pid"]}
    assert len(pids) == 2 and os.getpid() not in pids
    assert np.array_equal(s.read(23, camera="rear").rgb, direct[23].rgb)  # the parent's handle still works
    s.close()
