"""Cityscapes export and the Cityscapes datasets: names, stored values, no overwrite, round trip."""

import cv2
import numpy as np
import pytest
import recordings
import torch
from cityscapesscripts.helpers.csHelpers import getCsFileInfo
from cityscapesscripts.helpers.labels import id2label

from drivesim_carla import labels as L
from drivesim_carla.errors import DrivesimError
from drivesim_carla.recorders.cityscapes import CityscapesDataset, CityscapesSequence
from drivesim_carla.recorders.datasets import PairedDataset
from drivesim_carla.recorders.export import export_cityscapes
from drivesim_carla.recorders.session import Session


@pytest.fixture(scope="session")
def all_streams(tmp_path_factory):
    return recordings.all_streams(tmp_path_factory)


@pytest.fixture(scope="session")
def exported(all_streams, tmp_path_factory):
    """Every frame of the front camera, as city 'drivesim', sequence 0, split 'train'."""
    out = tmp_path_factory.mktemp("cityscapes")
    assert export_cityscapes(all_streams, out) == 24
    return out


def _read(path, flags=cv2.IMREAD_UNCHANGED):
    x = cv2.imread(str(path), flags)
    assert x is not None, path
    return x


def test_export_writes_cityscapes_names_and_the_stored_values(all_streams, tmp_path):
    assert export_cityscapes(all_streams, tmp_path, camera="rear", split="val", city="carla-town", every=5) == 5
    s = Session(all_streams)
    images = sorted((tmp_path / "leftImg8bit/val/carla-town").iterdir())
    assert [p.name for p in images] == [f"carla-town_000000_{i:06d}_leftImg8bit.png" for i in (0, 5, 10, 15, 20)]
    assert len(list((tmp_path / "gtFine/val/carla-town").iterdir())) == 5 * 4
    assert not list(tmp_path.glob(".*"))  # no temporary folder left behind
    for i in (0, 15):
        x = s.read(i, camera="rear")
        gt = tmp_path / "gtFine/val/carla-town" / f"carla-town_000000_{i:06d}_gtFine"
        info = getCsFileInfo(f"{gt}_labelIds.png")
        assert (info.city, info.sequenceNb, info.frameNb, info.type, info.type2, info.ext) == \
            ("carla-town", "000000", f"{i:06d}", "gtFine", "labelIds", "png")
        left = _read(tmp_path / f"leftImg8bit/val/carla-town/carla-town_000000_{i:06d}_leftImg8bit.png")
        assert np.array_equal(cv2.cvtColor(left, cv2.COLOR_BGR2RGB), x.rgb)
        ids = _read(f"{gt}_labelIds.png")
        assert ids.dtype == np.uint8 and np.array_equal(ids, L.carla_to_cityscapes_id()[x.semantic])
        assert np.array_equal(_read(f"{gt}_trainIds.png"), L.carla_to_train_id()[x.semantic])
        color = cv2.cvtColor(_read(f"{gt}_color.png"), cv2.COLOR_BGR2RGB)
        palette = np.zeros((256, 3), np.uint8)
        for label_id, label in id2label.items():
            palette[label_id % 256] = label.color if label_id >= 0 else 0
        assert np.array_equal(color, palette[ids])
        _check_instances(_read(f"{gt}_instanceIds.png"), ids, x.instance)


def _check_instances(encoded, ids, instance):
    """Cityscapes' encoding: id*1000+k on objects of classes with instances, the label id elsewhere,
    and one value per object of the recording."""
    assert encoded.dtype == np.uint16
    objects = np.vectorize(lambda i: id2label[int(i)].hasInstances)(ids) & (instance > 0)
    assert objects.any()
    assert np.array_equal(encoded[~objects], ids[~objects])
    assert np.array_equal(encoded[objects] // 1000, ids[objects]) and (encoded[objects] % 1000).max() < 1000
    for label_id in np.unique(ids[objects]):  # k numbers the objects of a class 0, 1, ... in instance-id order
        mine = objects & (ids == label_id)
        order = {int(o): k for k, o in enumerate(np.unique(instance[mine]))}
        assert np.array_equal(encoded[mine], int(label_id) * 1000 + np.vectorize(order.get)(instance[mine]))


def test_export_numbers_the_next_sequence_and_never_overwrites(all_streams, tmp_path):
    assert export_cityscapes(all_streams, tmp_path, every=12) == 2
    assert export_cityscapes(all_streams, tmp_path, camera="rear", every=12) == 2
    names = sorted(p.name for p in (tmp_path / "leftImg8bit/train/drivesim").iterdir())
    assert names == ["drivesim_000000_000000_leftImg8bit.png", "drivesim_000000_000012_leftImg8bit.png",
                     "drivesim_000001_000000_leftImg8bit.png", "drivesim_000001_000012_leftImg8bit.png"]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*.png")}
    with pytest.raises(DrivesimError, match=r"drivesim_000000_000000_leftImg8bit.png exists; export to another"):
        export_cityscapes(all_streams, tmp_path, camera="rear", every=12, seq=0)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.png")} == before
    assert not list(tmp_path.glob(".*"))


def test_export_bad_input_is_one_line(all_streams, tmp_path):
    (tmp_path / "notes.h5").write_text("not a session")
    (tmp_path / "file").write_text("")
    cases = [((all_streams, tmp_path / "a"), {"camera": "side"}, "no camera 'side'; it has: front, rear"),
             ((tmp_path / "notes.h5", tmp_path / "b"), {}, "is not an HDF5 file"),
             ((all_streams, tmp_path / "c"), {"city": "my_city"}, "city 'my_city' is not usable in Cityscapes"),
             ((all_streams, tmp_path / "d"), {"every": 0}, "--every must be at least 1"),
             ((all_streams, tmp_path / "file"), {}, "is a file; give a folder")]
    for args, kwargs, message in cases:
        with pytest.raises(DrivesimError) as e:
            export_cityscapes(*args, **kwargs)
        assert message in str(e.value) and "\n" not in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "notes.h5"]


@pytest.mark.parametrize("labels", ["train_ids", "cityscapes_ids", "color"])
def test_cityscapes_dataset_reads_the_export_like_the_session(all_streams, exported, labels):
    kw = dict(labels=labels, size=(32, 64), crop=(24, 48), flip=True, seed=5)
    real, ours = CityscapesDataset(exported, **kw), PairedDataset(all_streams, **kw)
    assert len(real) == len(ours) == 24
    for i in (0, 7, 23):
        a, b = real[i], ours[i]
        assert a["label"].dtype == b["label"].dtype and torch.equal(a["label"], b["label"])
        assert torch.equal(a["image"], b["image"])
    instance = CityscapesDataset(exported, instance=True)[3]["instance"].numpy()
    png = _read(exported / "gtFine/train/drivesim/drivesim_000000_000003_gtFine_instanceIds.png")
    assert np.array_equal(instance, png) and instance.max() >= 24000


def test_cityscapes_layout_errors_name_the_fix(exported, tmp_path):
    with pytest.raises(DrivesimError, match=r"no split 'val'; it has: train$"):
        CityscapesDataset(exported, "val")
    with pytest.raises(DrivesimError, match="unknown label mode 'carla'; valid: train_ids, cityscapes_ids, color"):
        CityscapesDataset(exported, labels="carla")
    (tmp_path / "leftImg8bit/train/x").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "leftImg8bit/train/x/x_000000_000000_leftImg8bit.png"), np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(DrivesimError, match="missing annotation for x_000000_000000_leftImg8bit.png"):
        CityscapesDataset(tmp_path)
    with pytest.raises(DrivesimError, match="no leftImg8bit_sequence/ folder"):
        CityscapesSequence(tmp_path)


def test_sequence_clips_are_consecutive_frames(all_streams, exported, tmp_path):
    ds = CityscapesSequence(exported, length=3, stride=2, folder="leftImg8bit")
    assert len(ds) == 24 - 4
    x, rgb = ds[9], Session(all_streams).read_range(9, 14, step=2).rgb
    assert x["start"] == 9 and torch.equal(x["frames"], torch.from_numpy(rgb).movedim(-1, -3).float() / 127.5 - 1)
    city = tmp_path / "leftImg8bit_sequence/train/aachen"
    city.mkdir(parents=True)
    for seq, frames in ((1, [*range(5), 10, 11, 12]), (2, [0, 1])):  # gaps and a short snippet
        for f in frames:
            pixel = np.full((8, 8, 3), seq * 100 + f, np.uint8)
            cv2.imwrite(str(city / f"aachen_{seq:06d}_{f:06d}_leftImg8bit.png"), pixel)
    seq = CityscapesSequence(tmp_path, length=3)
    assert [int(seq[n]["frames"][0, 0, 0, 0] * 127.5 + 127.5 + 0.5) for n in range(len(seq))] == [100, 101, 102, 110]
    assert seq[3]["frames"].shape == (3, 3, 8, 8) and seq[3]["start"] == 10
