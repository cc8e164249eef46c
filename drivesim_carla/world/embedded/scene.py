"""The embedded world's scene: what the town builder produces and the renderer draws.

Everything is in CARLA world coordinates (metres; x, y on the ground, z up; yaw in radians here,
measured from +x towards +y). The world is flat: the ground is the plane z = 0.

- `GroundMap`: a top-down raster of ground materials (road, lane markings, sidewalk, grass...).
- `Boxes`: every solid thing as a yaw-oriented box (buildings, walls, tree trunks and crowns,
  poles, signs, vehicles, pedestrians). An object made of several boxes shares one instance id.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from ...labels import Tag


class Ground(IntEnum):
    """Ground materials. `GROUND_TAG[m]` is the CARLA tag of material m."""

    GRASS = 0
    ASPHALT = 1
    LANE_WHITE_BROKEN = 2
    LANE_WHITE_SOLID = 3
    LANE_YELLOW_SOLID = 4
    STOP_LINE = 5
    CROSSWALK = 6
    SIDEWALK = 7
    CURB = 8
    DIRT = 9
    PARKING = 10  # parking lane asphalt


GROUND_TAG = np.array(
    [Tag.TERRAIN, Tag.ROAD, Tag.ROAD_LINE, Tag.ROAD_LINE, Tag.ROAD_LINE, Tag.ROAD_LINE,
     Tag.ROAD_LINE, Tag.SIDEWALK, Tag.SIDEWALK, Tag.TERRAIN, Tag.ROAD],
    dtype=np.uint8,
)
DRIVABLE = np.array([m in (1, 2, 3, 4, 5, 6, 10) for m in range(len(Ground))])


class Material(IntEnum):
    """Surface materials of boxes; the render styles give each its look."""

    CONCRETE = 0  # building facade (plaster / concrete)
    BRICK = 1  # building facade (brick)
    GLASS = 2  # building facade (glass office)
    WALL = 3
    FENCE = 4
    BARK = 5
    FOLIAGE = 6
    METAL = 7  # poles, sign backs, traffic-light housings
    SIGN = 8  # sign face
    CAR_PAINT = 9  # vehicle body (colour from Boxes.color)
    CAR_WINDOW = 10
    CLOTH = 11  # pedestrians (colour from Boxes.color)
    SKIN = 12
    LAMP_RED_ON = 13
    LAMP_YELLOW_ON = 14
    LAMP_GREEN_ON = 15
    LAMP_OFF = 16
    HEDGE = 17


@dataclass
class GroundMap:
    """Top-down raster of the ground. Cell (i, j) covers
    x in [origin_x + j*res, origin_x + (j+1)*res), y in [origin_y + i*res, origin_y + (i+1)*res).
    Outside the raster the ground is GRASS."""

    material: np.ndarray  # (H, W) uint8, values of `Ground`
    origin: tuple[float, float]
    resolution: float  # metres per cell
    lane: np.ndarray | None = None  # (H, W) int32: LaneSegment id; -2 junction, -3 parking, -1 off-lane

    def cell(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row, column and an in-bounds mask for world points."""
        j = np.floor((np.asarray(x) - self.origin[0]) / self.resolution).astype(np.int64)
        i = np.floor((np.asarray(y) - self.origin[1]) / self.resolution).astype(np.int64)
        h, w = self.material.shape
        inside = (i >= 0) & (i < h) & (j >= 0) & (j < w)
        return np.clip(i, 0, h - 1), np.clip(j, 0, w - 1), inside

    def material_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        i, j, inside = self.cell(x, y)
        return np.where(inside, self.material[i, j], Ground.GRASS).astype(np.uint8)

    def tag_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return GROUND_TAG[self.material_at(x, y)]


@dataclass
class Boxes:
    """N yaw-oriented boxes standing in the world (struct of arrays)."""

    center: np.ndarray  # (N, 3) float64 world x, y, z of the box centre
    half: np.ndarray  # (N, 3) float64 half extents along the box's local x, y, z
    yaw: np.ndarray  # (N,) float64 radians
    tag: np.ndarray  # (N,) uint8 CARLA tag
    instance: np.ndarray  # (N,) int32 object id (> 0), shared by the boxes of one object
    material: np.ndarray  # (N,) uint8 `Material`
    color: np.ndarray  # (N, 3) uint8 base colour (paint, cloth, facade tint)

    def __len__(self) -> int:
        return len(self.yaw)

    @staticmethod
    def empty() -> Boxes:
        return Boxes(
            np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), np.zeros(0, np.uint8),
            np.zeros(0, np.int32), np.zeros(0, np.uint8), np.zeros((0, 3), np.uint8),
        )

    @staticmethod
    def concat(parts: list[Boxes]) -> Boxes:
        parts = [p for p in parts if len(p)]
        if not parts:
            return Boxes.empty()
        return Boxes(*(np.concatenate([getattr(p, f) for p in parts]) for f in Boxes._fields()))

    @staticmethod
    def _fields() -> tuple[str, ...]:
        return ("center", "half", "yaw", "tag", "instance", "material", "color")

    def corners_2d(self) -> np.ndarray:
        """(N, 4, 2) footprint corners in world x, y (counter-clockwise in the x-right, y-down view)."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        local = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], np.float64)
        lx = local[None, :, 0] * self.half[:, None, 0]
        ly = local[None, :, 1] * self.half[:, None, 1]
        x = self.center[:, None, 0] + c[:, None] * lx - s[:, None] * ly
        y = self.center[:, None, 1] + s[:, None] * lx + c[:, None] * ly
        return np.stack([x, y], axis=-1)


@dataclass
class Light:
    """Point lights for night scenes (street lamps, headlights are added by the renderer)."""

    position: np.ndarray  # (L, 3) world
    color: np.ndarray  # (L, 3) float32, linear RGB 0..1
    radius: np.ndarray  # (L,) metres of useful reach


@dataclass
class LaneSegment:
    """A drivable lane piece (one lane of one road, or one junction connector), as a centreline
    in the driving direction. Traffic follows chains of segments through `successors`."""

    id: int
    road_id: int  # OpenDRIVE road id (connecting roads inside junctions included)
    lane_id: int  # OpenDRIVE lane id (negative: right of the reference line)
    junction_id: int  # -1 outside junctions
    points: np.ndarray  # (P, 2) float64 world x, y centreline, in driving direction
    width: float
    successors: list[int]
    predecessors: list[int]
    left: int | None = None  # same-direction neighbour lane to the left (lane changes)
    right: int | None = None
    turn: str = "follow"  # "follow" outside junctions; "straight" | "left" | "right" in them
    signal_id: int | None = None  # traffic light with its stop line at this segment's end
    speed_limit: float = 30.0 / 3.6  # m/s

    @property
    def length(self) -> float:
        return float(np.sum(np.linalg.norm(np.diff(self.points, axis=0), axis=1)))


@dataclass
class SignalSpec:
    """A traffic light controlling one approach of a junction."""

    id: int
    junction_id: int
    phase: int  # index of the junction phase in which this light is green
    stop_line: tuple[float, float]  # world x, y at the stop line's centre
    heading: float  # radians, driving direction of the controlled approach
    segments: list[int]  # lane segments whose end is this stop line
    box_instance: int  # instance id of the light's boxes (housing + lamps)
    lamp_centers: np.ndarray  # (K, 3) world positions of the lamp boxes facing this approach


@dataclass
class Town:
    """A procedural town: road network (OpenDRIVE), ground raster, static boxes, traffic layout."""

    seed: int
    name: str
    network: object  # opendrive.RoadNetwork (kept untyped to keep this module light)
    ground: GroundMap
    static: Boxes  # buildings, walls, fences, trees, poles, signs, traffic-light housings
    lights: Light  # street lamps (night)
    lanes: dict[int, LaneSegment]
    signals: dict[int, SignalSpec]
    junction_phases: dict[int, int]  # junction id -> number of phases
    sidewalks: list[np.ndarray]  # closed (P, 2) polylines pedestrians walk along
    parking: np.ndarray  # (K, 3) x, y, yaw(rad) of parking spots beside the road
    spawn_points: list[tuple[int, float]]  # (lane segment id, distance along it)
    bounds: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax of the town
    static_kind: dict[int, str]  # instance id -> "static.building" | "static.pole" | ...
