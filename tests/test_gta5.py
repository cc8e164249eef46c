"""GTA5-layout folders (images/ + labels/ of Cityscapes label ids) as a labelled dataset."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from drivesim_carla.errors import DrivesimError
from drivesim_carla.recorders.gta5 import GTA5Dataset, is_gta5_root

# Cityscapes label id -> train id, as the reference's GTA5DataSet maps them (others -> 255)
IDS = np.array([[7, 8, 11, 26], [33, 0, 34, 23]], np.uint8)
TRAIN = np.array([[0, 1, 2, 13], [18, 255, 255, 10]])


def _palette_png(path: Path, ids: np.ndarray) -> None:
    im = Image.fromarray(ids, mode="P")
    im.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])  # colours unlike the ids
    im.save(path)


def make_gta5(root: Path) -> Path:
    """Three pairs: a palette label, a greyscale label, and a label at half its image's size."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    big = IDS.repeat(4, 0).repeat(4, 1)  # 8 x 16
    for name, ids, mode in (("00001", big, "P"), ("00002", big[::-1].copy(), "L"), ("00003", IDS, "P")):
        image = np.full((8, 16, 3), int(name[-1]) * 40, np.uint8)
        image[:, :8, 0] = 250  # left half reddish: shows a flip
        cv2.imwrite(str(root / "images" / f"{name}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if mode == "P":
            _palette_png(root / "labels" / f"{name}.png", ids)
        else:
            Image.fromarray(ids, mode="L").save(root / "labels" / f"{name}.png")
    return root


def test_reads_labels_as_train_ids(tmp_path):
    root = make_gta5(tmp_path / "gta5")
    assert is_gta5_root(root) and not is_gta5_root(tmp_path)
    ds = GTA5Dataset(root)
    assert len(ds) == 3
    expected = torch.from_numpy(TRAIN.repeat(4, 0).repeat(4, 1))
    s = ds[0]
    assert s["image"].shape == (3, 8, 16) and s["label"].dtype == torch.int64
    assert torch.equal(s["label"], expected)  # palette indices are the ids, not the palette's colours
    assert torch.equal(ds[1]["label"], expected.flip(0))  # greyscale labels
    assert torch.equal(ds[2]["label"], expected)  # 2x4 label resized (nearest) to its 8x16 image
    assert s["image"][0, 0, 0] == pytest.approx(250 / 127.5 - 1)
    assert s["image"][1, 0, 0] == pytest.approx(40 / 127.5 - 1)
    assert ds.rgb(2).shape == (8, 16, 3) and ds.rgb(2)[0, -1, 1] == 120  # also an ImageSource
    assert torch.equal(GTA5Dataset(root, labels="cityscapes_ids")[0]["label"],
                       torch.from_numpy(IDS.repeat(4, 0).repeat(4, 1).astype(np.int64)))


def test_resize_crop_flip(tmp_path):
    root = make_gta5(tmp_path / "gta5")
    ds = GTA5Dataset(root, size=(4, 8), crop=(4, 4), flip=True, seed=3)
    samples = [ds[i] for i in range(3)]
    assert all(s["image"].shape == (3, 4, 4) and s["label"].shape == (4, 4) for s in samples)
    again = GTA5Dataset(root, size=(4, 8), crop=(4, 4), flip=True, seed=3)
    assert all(torch.equal(a["label"], again[i]["label"]) for i, a in enumerate(samples))
    flips = [GTA5Dataset(root, size=(4, 8), flip=True, seed=s)[0] for s in range(8)]
    red_left = {bool(f["image"][0, 0, 0] > 0.9) for f in flips}
    assert red_left == {True, False}  # flipped and unflipped draws
    for f in flips:  # the label flips with its image
        want = torch.from_numpy(TRAIN.repeat(2, 0).repeat(2, 1))
        assert torch.equal(f["label"], want if f["image"][0, 0, 0] > 0.9 else want.flip(1))


def test_bad_folders(tmp_path):
    with pytest.raises(DrivesimError, match="not a GTA5-layout folder; it needs images/ and labels/"):
        GTA5Dataset(tmp_path)
    root = make_gta5(tmp_path / "gta5")
    (root / "labels" / "00002.png").unlink()
    with pytest.raises(DrivesimError, match=r"00002.png: missing label .*1 of 3 images"):
        GTA5Dataset(root)
    Image.fromarray(np.zeros((8, 16, 3), np.uint8)).save(root / "labels" / "00002.png")
    with pytest.raises(DrivesimError, match="a RGB image; labels must be single-channel id maps"):
        GTA5Dataset(root)[1]
