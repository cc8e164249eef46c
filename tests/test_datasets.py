"""Datasets over sessions: label mappings, shared geometry, clips, unpaired domains, the folder index."""

import logging
import shutil

import cv2
import h5py
import numpy as np
import pytest
import recordings
import torch
from cityscapesscripts.helpers.labels import id2label
from torch.utils.data import DataLoader

from drivesim_carla import labels as L
from drivesim_carla.errors import DrivesimError
from drivesim_carla.recorders.datasets import (
    ClipDataset,
    PairedDataset,
    SessionIndex,
    UnpairedDataset,
)
from drivesim_carla.recorders.session import Session


@pytest.fixture(scope="session")
def all_streams(tmp_path_factory):
    return recordings.all_streams(tmp_path_factory)


@pytest.fixture(scope="session")
def front_only(tmp_path_factory):
    return recordings.front_only(tmp_path_factory)


@pytest.fixture
def folder(all_streams, front_only, tmp_path):
    """a.h5 (24 frames), b.h5 (10 frames) and a file that is not a session."""
    (tmp_path / "a.h5").symlink_to(all_streams)
    (tmp_path / "b.h5").symlink_to(front_only)
    (tmp_path / "c_notes.h5").write_text("not a session")
    (tmp_path / "readme.txt").write_text("ignored")
    return tmp_path


def _image(rgb):
    return torch.from_numpy(np.ascontiguousarray(rgb)).movedim(-1, -3).float() / 127.5 - 1


def test_paired_labels_are_the_lut_of_the_stored_semantic(all_streams):
    with h5py.File(all_streams, "r") as f:
        rgb, sem, inst = (f[f"cameras/rear/{k}"][5] for k in ("rgb", "semantic", "instance"))
        depth = f["cameras/rear/depth"][5].astype(np.float32)
    assert {12, 14} <= set(np.unique(sem))  # people and cars are in view
    cs_color = np.array([id2label[int(i)].color for i in L.carla_to_cityscapes_id()[sem].flat], np.uint8)
    expected = {"train_ids": L.carla_to_train_id()[sem], "cityscapes_ids": L.carla_to_cityscapes_id()[sem],
                "carla": sem, "color": cs_color.reshape(64, 128, 3), "carla_color": L.CARLA_PALETTE[sem]}
    for mode, want in expected.items():
        x = PairedDataset(all_streams, camera="rear", labels=mode, instance=True, depth=True)[5]
        assert torch.allclose(x["image"], _image(rgb)) and x["index"] == 5 and x["path"] == str(all_streams)
        if want.ndim == 3:
            assert torch.allclose(x["label"], _image(want)), mode
        else:
            assert x["label"].dtype == torch.int64 and np.array_equal(x["label"].numpy(), want), mode
        assert np.array_equal(x["instance"].numpy(), inst) and np.array_equal(x["depth"][0].numpy(), depth)
    assert set(expected["train_ids"][sem == 12]) == {11} and set(expected["train_ids"][sem == 14]) == {13}
    with pytest.raises(DrivesimError, match="unknown label mode 'rgb'; valid: train_ids, cityscapes_ids, carla"):
        PairedDataset(all_streams, labels="rgb")


def _windows(full, h, w):
    for top in range(full.shape[0] - h + 1):
        for left in range(full.shape[1] - w + 1):
            for flip in (False, True):
                x = full[top:top + h, left:left + w]
                yield (top, left, flip), (x[:, ::-1] if flip else x)


def test_resize_crop_and_flip_move_image_and_labels_together(all_streams):
    ds = PairedDataset(all_streams, labels="carla", instance=True, size=(32, 64), crop=(24, 40), flip=True, seed=7)
    s = Session(all_streams)
    flips = set()
    for i in (0, 9, 17, 23):
        x, raw = ds[i], s.read(i)
        image = cv2.resize(raw.rgb, (64, 32), interpolation=cv2.INTER_AREA)
        tags = cv2.resize(raw.semantic, (64, 32), interpolation=cv2.INTER_NEAREST_EXACT)
        both = np.concatenate([image, tags[..., None], raw.instance[1::2, 1::2, None]], -1).astype(np.int64)
        got = np.concatenate([((x["image"].permute(1, 2, 0) + 1) * 127.5).round().long().numpy(),
                              x["label"].numpy()[..., None], x["instance"].numpy()[..., None]], -1)
        hits = [where for where, window in _windows(both, 24, 40) if np.array_equal(window, got)]
        assert hits, f"sample {i} is no crop/flip of the resized frame"
        flips |= {where[2] for where in hits}
        assert all(torch.equal(a, b) for a, b in zip(ds[i].values(), x.values()) if torch.is_tensor(a))
    assert flips == {False, True}
    again = PairedDataset(all_streams, size=(32, 64), crop=(24, 40), flip=True, seed=7)
    other = PairedDataset(all_streams, size=(32, 64), crop=(24, 40), flip=True, seed=8)
    assert torch.equal(again[9]["image"], ds[9]["image"])
    assert any(not torch.equal(other[i]["image"], ds[i]["image"]) for i in range(6))
    again.set_epoch(1)
    assert any(not torch.equal(again[i]["image"], ds[i]["image"]) for i in range(6))
    with pytest.raises(DrivesimError, match="crop 80x40 .* is larger than the 64x128 image"):
        PairedDataset(all_streams, crop=(80, 40))[0]


def test_clips_carry_their_frames_and_actions_within_one_session(all_streams, front_only):
    ds = ClipDataset([all_streams, front_only], 4, stride=2, hop=3, semantic=True, depth=True)
    assert len(ds) == 6 + 2  # starts 0, 3, .., 15 in a (24 frames); 0, 3 in b (10 frames); a clip spans 7
    for n in range(len(ds)):
        x = ds[n]
        assert x["start"] + 7 <= len(Session(x["path"]))
    x = ds[7]
    assert x["path"] == str(front_only) and x["start"] == 3
    b = Session(front_only)
    raw = b.read_range(3, 10, step=2)
    assert x["frames"].shape == (4, 3, 64, 128) and torch.allclose(x["frames"], _image(raw.rgb))
    assert np.array_equal(x["actions"].numpy(), b.ego.control[3:10:2]) and x["actions"].shape == (4, 5)
    assert np.array_equal(x["speed"].numpy(), b.ego.speed[3:10:2])
    assert np.array_equal(x["semantic"].numpy(), L.carla_to_train_id()[raw.semantic])
    assert x["depth"].shape == (4, 1, 64, 128) and np.array_equal(x["depth"][:, 0].numpy(), raw.depth)
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch["frames"].shape == (3, 4, 3, 64, 128) and batch["actions"].shape == (3, 4, 5)


def test_a_flipped_clip_steers_the_other_way(front_only, tmp_path):
    path = tmp_path / "steer.h5"
    shutil.copy(front_only, path)
    with h5py.File(path, "r+") as f:
        f["ego/control"][:, 1] = np.linspace(-0.5, 0.5, 10)
    ds = ClipDataset(path, 3, flip=True, seed=0)
    s = Session(path)
    seen = set()
    for n in range(len(ds)):
        x, rgb = ds[n], _image(s.read_range(n, n + 3).rgb)
        flipped = torch.equal(x["frames"], rgb.flip(-1))
        assert flipped or torch.equal(x["frames"], rgb)
        steer = s.ego.control[n:n + 3, 1]
        assert np.allclose(x["actions"][:, 1].numpy(), -steer if flipped else steer)
        seen.add(flipped)
    assert seen == {False, True}


def test_a_session_shorter_than_a_clip_is_a_clear_error(front_only):
    with pytest.raises(DrivesimError, match="no session is long enough for clips of 6 frames with stride 2 "
                                            r"\(11 frames; the longest has 10\)"):
        ClipDataset(front_only, 6, stride=2)


def test_folder_index_skips_what_is_not_a_session(folder, all_streams, front_only, caplog, tmp_path_factory):
    with caplog.at_level(logging.WARNING):
        index = SessionIndex(folder)
    assert [s.path.name for s in index.sessions] == ["a.h5", "b.h5"] and len(index) == 34
    assert "c_notes.h5 is not an HDF5 file" in caplog.text
    session, i = index.locate(24)
    assert session.path.name == "b.h5" and i == 0
    assert np.array_equal(index[30].rgb, Session(front_only).read(6).rgb)
    assert np.array_equal(index[23].rgb, Session(all_streams).read(23).rgb)
    with pytest.raises(IndexError):
        index.locate(34)
    with pytest.raises(DrivesimError, match="camera 'front' has no instance stream"):
        PairedDataset(index, instance=True)
    empty = tmp_path_factory.mktemp("empty")
    (empty / "x.h5").write_text("nope")
    with pytest.raises(DrivesimError, match=r"no readable drivesim sessions \(\*\.h5\) in it \(1 .h5 files skipped\)"):
        SessionIndex(empty)


def test_unpaired_draws_b_per_index_deterministically(all_streams, front_only, tmp_path):
    b = Session(front_only)
    for i in range(len(b)):  # domain B as a folder of images
        cv2.imwrite(str(tmp_path / f"b{i:02d}.png"), cv2.cvtColor(b.read(i).rgb, cv2.COLOR_RGB2BGR))
    ds = UnpairedDataset(all_streams, tmp_path, camera_a="rear", size=(32, 64), seed=3)
    a = Session(all_streams)
    assert len(ds) == 24
    picks = [ds[i]["B_index"] for i in range(24)]
    assert picks == [UnpairedDataset(all_streams, tmp_path, camera_a="rear", size=(32, 64), seed=3)[i]["B_index"]
                     for i in range(24)]
    assert picks != [UnpairedDataset(all_streams, tmp_path, size=(32, 64), seed=4)[i]["B_index"] for i in range(24)]
    assert len(set(picks)) > 3
    x = ds[11]
    assert torch.allclose(x["A"], _image(cv2.resize(a.read(11, camera="rear").rgb, (64, 32),
                                                    interpolation=cv2.INTER_AREA)))
    assert torch.allclose(x["B"], _image(cv2.resize(b.read(x["B_index"]).rgb, (64, 32),
                                                    interpolation=cv2.INTER_AREA)))
    from_session = UnpairedDataset(all_streams, front_only, camera_a="rear", size=(32, 64), seed=3)[11]
    assert from_session["B_index"] == x["B_index"] and torch.equal(from_session["B"], x["B"])


def test_dataloader_workers_read_what_the_main_process_reads(folder):
    ds = PairedDataset(folder, labels="train_ids", size=(32, 64), crop=(32, 48), flip=True, seed=1)
    direct = [ds[i] for i in range(len(ds))]  # handles are open in the parent when the workers fork
    loaded = list(DataLoader(ds, batch_size=8, num_workers=2))
    for key in ("image", "label"):
        assert torch.equal(torch.cat([b[key] for b in loaded]), torch.stack([x[key] for x in direct]))
    assert [p for b in loaded for p in b["path"]] == [x["path"] for x in direct]
