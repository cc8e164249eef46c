import numpy as np
from cityscapesscripts.helpers.labels import id2label, labels, name2label

from drivesim_carla import labels as L


def test_tags_1_to_19_are_cityscapes_train_ids_in_order():
    lut = L.carla_to_train_id()
    assert list(lut[1:20]) == list(range(19))
    for tag in range(1, 20):  # same colours as Cityscapes for the shared classes
        train = int(lut[tag])
        cs = next(label for label in labels if label.trainId == train)
        assert tuple(L.CARLA_PALETTE[tag]) == cs.color, (tag, cs.name)


def test_cityscapes_ids_match_cityscapesscripts_names():
    lut = L.carla_to_cityscapes_id(road_line_as_road=False)
    assert id2label[int(lut[L.Tag.PEDESTRIAN])].name == "person"
    assert id2label[int(lut[L.Tag.GUARD_RAIL])].name == "guard rail"
    assert lut[L.Tag.ROAD_LINE] == 0 and lut[L.Tag.WATER] == 0 and lut[L.Tag.OTHER] == 0
    assert L.carla_to_cityscapes_id(True)[L.Tag.ROAD_LINE] == name2label["road"].id


def test_ignore_classes_map_to_255():
    lut = L.carla_to_train_id(road_line_as_road=False)
    for tag in (0, 20, 21, 22, 23, 24, 25, 26, 27, 28):
        assert lut[tag] == 255
    assert L.carla_to_train_id(True)[L.Tag.ROAD_LINE] == 0


def test_vectorised_lookup_and_colorize():
    tags = np.array([[1, 24], [11, 14]], np.uint8)
    assert L.to_train_ids(tags).tolist() == [[0, 0], [10, 13]]
    assert L.to_cityscapes_ids(tags).tolist() == [[7, 7], [23, 26]]
    rgb = L.colorize(tags)
    assert rgb.shape == (2, 2, 3) and tuple(rgb[1, 1]) == (0, 0, 142)
    assert tuple(rgb[0, 1]) == (157, 234, 50)


def test_palette_covers_every_tag_once():
    assert L.CARLA_PALETTE.shape == (len(L.Tag), 3)
    assert len({tuple(c) for c in L.CARLA_PALETTE}) == len(L.Tag)
