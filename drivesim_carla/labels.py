"""CARLA semantic tags (0.9.14 and later), CARLA's palette, and lookup tables to Cityscapes.

The Cityscapes side comes from `cityscapesscripts` (the dataset's own label table), matched by
class name, so our tables cannot drift from the definitions that published models use.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from functools import cache

import numpy as np

from .errors import DrivesimError


class Tag(IntEnum):
    UNLABELED = 0
    ROAD = 1
    SIDEWALK = 2
    BUILDING = 3
    WALL = 4
    FENCE = 5
    POLE = 6
    TRAFFIC_LIGHT = 7
    TRAFFIC_SIGN = 8
    VEGETATION = 9
    TERRAIN = 10
    SKY = 11
    PEDESTRIAN = 12
    RIDER = 13
    CAR = 14
    TRUCK = 15
    BUS = 16
    TRAIN = 17
    MOTORCYCLE = 18
    BICYCLE = 19
    STATIC = 20
    DYNAMIC = 21
    OTHER = 22
    WATER = 23
    ROAD_LINE = 24
    GROUND = 25
    BRIDGE = 26
    RAIL_TRACK = 27
    GUARD_RAIL = 28


NUM_TAGS = len(Tag)

# CARLA's CityScapesPalette for the 0.9.14+ tags, indexed by tag.
CARLA_PALETTE = np.array(
    [
        (0, 0, 0), (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156),
        (190, 153, 153), (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35),
        (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142),
        (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
        (110, 190, 160), (170, 120, 50), (55, 90, 80), (45, 60, 150), (157, 234, 50),
        (81, 0, 81), (150, 100, 100), (230, 150, 140), (180, 165, 180),
    ],
    dtype=np.uint8,
)

# CARLA tag -> Cityscapes class name (cityscapesscripts' spelling); None = unlabeled.
_CITYSCAPES_NAME = {
    Tag.UNLABELED: None, Tag.ROAD: "road", Tag.SIDEWALK: "sidewalk", Tag.BUILDING: "building",
    Tag.WALL: "wall", Tag.FENCE: "fence", Tag.POLE: "pole", Tag.TRAFFIC_LIGHT: "traffic light",
    Tag.TRAFFIC_SIGN: "traffic sign", Tag.VEGETATION: "vegetation", Tag.TERRAIN: "terrain",
    Tag.SKY: "sky", Tag.PEDESTRIAN: "person", Tag.RIDER: "rider", Tag.CAR: "car",
    Tag.TRUCK: "truck", Tag.BUS: "bus", Tag.TRAIN: "train", Tag.MOTORCYCLE: "motorcycle",
    Tag.BICYCLE: "bicycle", Tag.STATIC: "static", Tag.DYNAMIC: "dynamic", Tag.OTHER: None,
    Tag.WATER: None, Tag.ROAD_LINE: None, Tag.GROUND: "ground", Tag.BRIDGE: "bridge",
    Tag.RAIL_TRACK: "rail track", Tag.GUARD_RAIL: "guard rail",
}

IGNORE = 255


@cache
def carla_to_cityscapes_id(road_line_as_road: bool = True) -> np.ndarray:
    """(256,) uint8 LUT: CARLA tag -> Cityscapes label id (0 = unlabeled).

    Cityscapes annotates lane markings as road; `road_line_as_road=False` maps them to unlabeled.
    """
    from cityscapesscripts.helpers.labels import name2label

    lut = np.zeros(256, np.uint8)
    for tag, name in _CITYSCAPES_NAME.items():
        if tag == Tag.ROAD_LINE and road_line_as_road:
            name = "road"
        if name is not None:
            lut[tag] = name2label[name].id
    lut.flags.writeable = False
    return lut


@cache
def carla_to_train_id(road_line_as_road: bool = True) -> np.ndarray:
    """(256,) uint8 LUT: CARLA tag -> Cityscapes train id (0..18, 255 = ignore)."""
    lut = cityscapes_id_to_train_id()[carla_to_cityscapes_id(road_line_as_road)]
    lut.flags.writeable = False
    return lut


@cache
def cityscapes_id_to_train_id() -> np.ndarray:
    """(256,) uint8 LUT: Cityscapes label id -> train id, from cityscapesscripts."""
    from cityscapesscripts.helpers.labels import labels

    lut = np.full(256, IGNORE, np.uint8)
    for label in labels:
        if 0 <= label.id < 256 and 0 <= label.trainId < 255:
            lut[label.id] = label.trainId
    lut.flags.writeable = False
    return lut


def to_cityscapes_ids(tags: np.ndarray, road_line_as_road: bool = True) -> np.ndarray:
    """CARLA tags (any shape, uint8) -> Cityscapes label ids."""
    return carla_to_cityscapes_id(road_line_as_road)[tags]


def to_train_ids(tags: np.ndarray, road_line_as_road: bool = True) -> np.ndarray:
    """CARLA tags (any shape, uint8) -> Cityscapes train ids (255 = ignore)."""
    return carla_to_train_id(road_line_as_road)[tags]


def colorize(tags: np.ndarray) -> np.ndarray:
    """(h w) CARLA tags -> (h w 3) uint8 RGB in CARLA's palette; unknown tags are black."""
    lut = np.zeros((256, 3), np.uint8)
    lut[:NUM_TAGS] = CARLA_PALETTE
    return lut[tags]


@cache
def cityscapes_palette() -> np.ndarray:
    """(256 3) uint8 LUT: Cityscapes label id -> its colour in `_gtFine_color.png` (from
    cityscapesscripts); ids without a label are black."""
    from cityscapesscripts.helpers.labels import labels

    lut = np.zeros((256, 3), np.uint8)
    for label in labels:
        if 0 <= label.id < 256:
            lut[label.id] = label.color
    lut.flags.writeable = False
    return lut


# ----- label spaces a model may take ----------------------------------------------------------
LABEL_MODES = ("train_ids", "cityscapes_ids", "carla", "color", "carla_color")


def check_label_mode(mode: str, valid: Sequence[str] = LABEL_MODES) -> str:
    if mode not in valid:
        raise DrivesimError(f"unknown label mode '{mode}'; valid: {', '.join(valid)}")
    return mode


def map_labels(tags: np.ndarray, mode: str, road_line_as_road: bool = True) -> np.ndarray:
    """CARLA tags (`... h w` uint8) -> the label space a model needs.

    `train_ids`: Cityscapes train ids (0..18, 255 ignore); `cityscapes_ids`: label ids (0..33);
    `carla`: the tags unchanged; `color`: `... h w 3` Cityscapes colours of the label ids (what
    `_gtFine_color.png` holds); `carla_color`: `... h w 3` CARLA's palette of the raw tags.
    """
    check_label_mode(mode)
    if mode == "train_ids":
        return to_train_ids(tags, road_line_as_road)
    if mode == "cityscapes_ids":
        return to_cityscapes_ids(tags, road_line_as_road)
    if mode == "color":
        return cityscapes_palette()[to_cityscapes_ids(tags, road_line_as_road)]
    if mode == "carla_color":
        return colorize(tags)
    return np.asarray(tags)
