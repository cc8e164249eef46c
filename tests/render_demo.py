"""A small self-contained demo town for the renderer's tests, benchmark and previews.

A grid of four-lane roads (lane markings, crosswalks, stop lines, curbs, sidewalks) around
grass blocks with buildings, trees, street lamps, traffic lights and signs; cars and pedestrians
that move along the roads. It is not the embedded world's town (see `world.embedded.town`), only enough
scene to exercise every path of the renderer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from drivesim_carla.labels import Tag
from drivesim_carla.world.embedded.scene import Boxes, Ground, GroundMap, Light, Material

ROAD_HALF = 7.0  # two 3.5 m lanes each way
CURB = 0.3
SIDEWALK = 3.0
LANE = 3.5


class _BoxList:
    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def add(self, x, y, z, hx, hy, hz, yaw, tag, inst, mat, color) -> None:
        self.rows.append((x, y, z, hx, hy, hz, yaw, int(tag), int(inst), int(mat), tuple(color)))

    def boxes(self) -> Boxes:
        if not self.rows:
            return Boxes.empty()
        r = self.rows
        return Boxes(
            np.array([(a[0], a[1], a[2]) for a in r], np.float64),
            np.array([(a[3], a[4], a[5]) for a in r], np.float64),
            np.array([a[6] for a in r], np.float64),
            np.array([a[7] for a in r], np.uint8),
            np.array([a[8] for a in r], np.int32),
            np.array([a[9] for a in r], np.uint8),
            np.array([a[10] for a in r], np.uint8).reshape(-1, 3),
        )


@dataclass
class Car:
    instance: int
    x: float
    y: float
    yaw: float  # radians
    speed: float  # m/s along yaw
    color: tuple[int, int, int]


@dataclass
class DemoScene:
    ground: GroundMap
    static: Boxes
    lights: Light
    cars: list[Car]
    pedestrians: list[Car]
    signals: np.ndarray  # (K, 4) x, y, z, yaw of traffic-light heads (lamp positions)
    spacing: float  # road grid spacing

    def dynamic(self, frame: int, dt: float = 0.05) -> tuple[Boxes, np.ndarray]:
        """Dynamic boxes at `frame` (cars, pedestrians, lit traffic-light lamps) and headlights."""
        bl = _BoxList()
        heads = []
        for car, pose in zip(self.cars, self.car_poses(frame, dt)):
            x, y, yaw = pose
            c, s = math.cos(yaw), math.sin(yaw)
            bl.add(x, y, 0.55, 2.2, 0.95, 0.4, yaw, Tag.CAR, car.instance, Material.CAR_PAINT,
                   car.color)
            bl.add(x - 0.3 * c, y - 0.3 * s, 1.27, 1.25, 0.85, 0.32, yaw, Tag.CAR, car.instance,
                   Material.CAR_PAINT, car.color)
            heads.append((x, y, 0.7, yaw))  # as the world passes them: vehicle centres
        for p, pose in zip(self.pedestrians, self.car_poses(frame, dt, self.pedestrians)):
            x, y, yaw = pose
            bl.add(x, y, 0.75, 0.2, 0.28, 0.75, yaw, Tag.PEDESTRIAN, p.instance, Material.CLOTH,
                   p.color)
            bl.add(x, y, 1.63, 0.11, 0.1, 0.13, yaw, Tag.PEDESTRIAN, p.instance, Material.SKIN,
                   (0, 0, 0))
        phase = (frame // 200) % 2
        for k, (x, y, z, yaw) in enumerate(self.signals):
            green = (k % 2) == phase
            mat = Material.LAMP_GREEN_ON if green else Material.LAMP_RED_ON
            dz = -0.3 if green else 0.3
            c, s = math.cos(yaw), math.sin(yaw)
            bl.add(x + 0.16 * c, y + 0.16 * s, z + dz, 0.03, 0.11, 0.11, yaw, Tag.TRAFFIC_LIGHT,
                   100000 + k, mat, (0, 0, 0))
        return bl.boxes(), np.array(heads, np.float64).reshape(-1, 4)

    def car_poses(self, frame: int, dt: float, actors: list[Car] | None = None):
        actors = self.cars if actors is None else actors
        t = frame * dt
        return [(a.x + math.cos(a.yaw) * a.speed * t, a.y + math.sin(a.yaw) * a.speed * t, a.yaw)
                for a in actors]


def _ground(size: float, spacing: float, res: float) -> GroundMap:
    n = int(round(size / res))
    origin = (-size / 2, -size / 2)
    c = origin[0] + (np.arange(n) + 0.5) * res  # cell centres, same along x and y
    # signed offsets from the nearest road centreline (roads at multiples of `spacing`)
    off = c - np.round(c / spacing) * spacing
    along = c  # position along a road
    mat = np.full((n, n), Ground.GRASS, np.uint8)
    oy = off[:, None]  # rows are y
    ox = off[None, :]  # columns are x
    ay = np.abs(oy)
    ax = np.abs(ox)
    edge = ROAD_HALF + CURB + SIDEWALK
    on_h = ay < ROAD_HALF  # road along x
    on_v = ax < ROAD_HALF  # road along y
    mat[np.broadcast_to(ay < edge, mat.shape) | np.broadcast_to(ax < edge, mat.shape)] = Ground.SIDEWALK
    curb = ((ay >= ROAD_HALF) & (ay < ROAD_HALF + CURB)) | ((ax >= ROAD_HALF) & (ax < ROAD_HALF + CURB))
    mat[curb] = Ground.CURB
    road = on_h | on_v
    mat[road] = Ground.ASPHALT
    junction = on_h & on_v
    near_j_h = on_h & (ax < ROAD_HALF + 12.5) & ~on_v  # road along x, near a junction
    near_j_v = on_v & (ay < ROAD_HALF + 12.5) & ~on_h
    # markings on roads along x (rows near the centreline), outside junction areas
    ax_full = np.broadcast_to(ax, mat.shape)
    ay_full = np.broadcast_to(ay, mat.shape)
    free_h = on_h & ~near_j_h & ~junction
    free_v = on_v & ~near_j_v & ~junction
    dash_x = np.broadcast_to((np.mod(along, 9.0) < 3.0)[None, :], mat.shape)
    dash_y = np.broadcast_to((np.mod(along, 9.0) < 3.0)[:, None], mat.shape)
    mat[free_h & (ay_full < 0.22) & (ay_full > 0.08)] = Ground.LANE_YELLOW_SOLID
    mat[free_v & (ax_full < 0.22) & (ax_full > 0.08)] = Ground.LANE_YELLOW_SOLID
    lane_h = free_h & (np.abs(ay_full - LANE) < 0.075)
    lane_v = free_v & (np.abs(ax_full - LANE) < 0.075)
    mat[lane_h & dash_x] = Ground.LANE_WHITE_BROKEN
    mat[lane_v & dash_y] = Ground.LANE_WHITE_BROKEN
    mat[(on_h & near_j_h) & (np.abs(ay_full - LANE) < 0.075)] = Ground.LANE_WHITE_SOLID
    mat[(on_v & near_j_v) & (np.abs(ax_full - LANE) < 0.075)] = Ground.LANE_WHITE_SOLID
    mat[(on_h & near_j_h) & (ay_full < 0.22) & (ay_full > 0.08)] = Ground.LANE_YELLOW_SOLID
    mat[(on_v & near_j_v) & (ax_full < 0.22) & (ax_full > 0.08)] = Ground.LANE_YELLOW_SOLID
    # crosswalks just outside the junction, stop lines behind them
    cw_h = on_h & (ax_full > ROAD_HALF + 1.0) & (ax_full < ROAD_HALF + 5.0)
    cw_v = on_v & (ay_full > ROAD_HALF + 1.0) & (ay_full < ROAD_HALF + 5.0)
    stripes_h = np.broadcast_to((np.mod(c, 1.2) < 0.6)[:, None], mat.shape)
    stripes_v = np.broadcast_to((np.mod(c, 1.2) < 0.6)[None, :], mat.shape)
    mat[cw_h & stripes_h] = Ground.CROSSWALK
    mat[cw_v & stripes_v] = Ground.CROSSWALK
    mat[on_h & (np.abs(ax_full - (ROAD_HALF + 5.8)) < 0.2)] = Ground.STOP_LINE
    mat[on_v & (np.abs(ay_full - (ROAD_HALF + 5.8)) < 0.2)] = Ground.STOP_LINE
    # a dirt patch or two inside blocks
    dirt = (np.abs(np.broadcast_to(oy, mat.shape) - 20) < 5) & (np.abs(np.broadcast_to(ox, mat.shape) + 18) < 8)
    mat[dirt & (mat == Ground.GRASS)] = Ground.DIRT
    return GroundMap(mat, origin, res)


FACADES = [(200, 196, 186), (176, 160, 140), (150, 150, 155), (214, 204, 170), (168, 120, 96),
           (120, 110, 100), (190, 180, 160), (160, 170, 180)]
BRICKS = [(150, 80, 60), (170, 96, 70), (130, 70, 55), (160, 110, 90)]
GLASSES = [(90, 120, 140), (70, 90, 100), (110, 130, 120)]
CAR_COLORS = [(180, 20, 20), (20, 40, 120), (220, 220, 220), (30, 30, 30), (140, 140, 150),
              (200, 160, 40), (30, 90, 50), (90, 20, 30)]
CLOTHES = [(40, 40, 60), (120, 30, 30), (60, 80, 40), (150, 150, 140), (30, 60, 120)]


def demo_scene(seed: int = 0, size: float = 400.0, spacing: float = 80.0, res: float = 0.1,
               n_cars: int = 24, n_pedestrians: int = 10) -> DemoScene:
    """Build the demo town (deterministic in `seed`). About 2400 static boxes at size 400."""
    rng = np.random.default_rng(seed)
    ground = _ground(size, spacing, res)
    bl = _BoxList()
    inst = 1
    lamp_pos, lamp_col, lamp_rad = [], [], []
    half = size / 2
    roads = np.arange(-half + spacing / 2, half, spacing)
    roads = np.round(roads / spacing) * spacing
    roads = np.unique(roads[(roads > -half) & (roads < half)])
    edge = ROAD_HALF + CURB + SIDEWALK
    # buildings along the inner edges of every block
    for bx0, bx1 in zip(roads[:-1], roads[1:]):
        for by0, by1 in zip(roads[:-1], roads[1:]):
            x0, x1, y0, y1 = bx0 + edge + 1.5, bx1 - edge - 1.5, by0 + edge + 1.5, by1 - edge - 1.5
            for side in range(4):
                lo, hi = (x0, x1) if side < 2 else (y0, y1)
                pos = lo + rng.uniform(0, 3)
                while pos < hi - 8:
                    width = min(rng.uniform(9, 22), hi - pos)
                    depth = rng.uniform(10, 17)
                    height = float(rng.choice([6.5, 9.5, 12.5, 15.5, 21.5, 30.5]) + rng.uniform(0, 1))
                    kind = rng.integers(0, 3)
                    mat, colors = [(Material.CONCRETE, FACADES), (Material.BRICK, BRICKS),
                                   (Material.GLASS, GLASSES)][kind]
                    color = colors[rng.integers(len(colors))]
                    cen = pos + width / 2
                    if side == 0:
                        x, y, hx, hy = cen, y0 + depth / 2, width / 2, depth / 2
                    elif side == 1:
                        x, y, hx, hy = cen, y1 - depth / 2, width / 2, depth / 2
                    elif side == 2:
                        x, y, hx, hy = x0 + depth / 2, cen, depth / 2, width / 2
                    else:
                        x, y, hx, hy = x1 - depth / 2, cen, depth / 2, width / 2
                    # keep the block corners free of overlaps
                    if side >= 2 and (cen - width / 2 < y0 + 17 or cen + width / 2 > y1 - 17):
                        pos += width + rng.uniform(1, 5)
                        continue
                    bl.add(x, y, height / 2, hx, hy, height / 2, 0.0, Tag.BUILDING, inst, mat, color)
                    inst += 1
                    pos += width + rng.uniform(0.5, 6)
            # a hedge and a wall around the courtyard
            cxm, cym = (x0 + x1) / 2, (y0 + y1) / 2
            bl.add(cxm, cym - 9, 0.6, 9.0, 0.4, 0.6, 0.0, Tag.VEGETATION, inst, Material.HEDGE,
                   (40, 90, 30))
            inst += 1
            bl.add(cxm + 9, cym + 4, 1.0, 0.2, 6.0, 1.0, 0.0, Tag.WALL, inst, Material.WALL,
                   (150, 145, 135))
            inst += 1
            bl.add(cxm - 9, cym + 4, 0.9, 0.05, 6.0, 0.9, 0.0, Tag.FENCE, inst, Material.FENCE,
                   (120, 95, 70))
            inst += 1
    # trees, lamps and signs along every road side
    for r in roads:
        for along in np.arange(-half + 4, half - 4, 9.0):
            if np.min(np.abs(along - roads)) < edge + 3:
                continue
            for side in (-1, 1):
                off = side * (ROAD_HALF + CURB + 2.0)
                for horizontal in (True, False):
                    x, y = (along, r + off) if horizontal else (r + off, along)
                    jitter = rng.uniform(-1.5, 1.5)
                    if horizontal:
                        x += jitter
                    else:
                        y += jitter
                    th = rng.uniform(2.2, 3.2)
                    bl.add(x, y, th / 2, 0.16, 0.16, th / 2, rng.uniform(0, 1.5), Tag.VEGETATION,
                           inst, Material.BARK, (90, 60, 40))
                    cr = rng.uniform(1.4, 2.3)
                    green = (int(rng.integers(40, 70)), int(rng.integers(80, 120)), int(rng.integers(20, 45)))
                    bl.add(x, y, th + cr * 0.9, cr, cr, cr * 0.95, rng.uniform(0, 1.5),
                           Tag.VEGETATION, inst, Material.FOLIAGE, green)
                    inst += 1
        for along in np.arange(-half + 10, half - 10, 30.0):
            if np.min(np.abs(along - roads)) < edge + 2:
                continue
            for side in (-1, 1):
                off = side * (ROAD_HALF + CURB + 0.5)
                for horizontal in (True, False):
                    x, y = (along + 6, r + off) if horizontal else (r + off, along + 6)
                    bl.add(x, y, 3.75, 0.08, 0.08, 3.75, 0.0, Tag.POLE, inst, Material.METAL,
                           (110, 110, 115))
                    ax, ay = (0.0, -side * 0.9) if horizontal else (-side * 0.9, 0.0)
                    bl.add(x + ax, y + ay, 7.45, 0.35 if not horizontal else 0.18,
                           0.35 if horizontal else 0.18, 0.07, 0.0, Tag.POLE, inst, Material.METAL,
                           (90, 90, 95))
                    lamp_pos.append((x + ax, y + ay, 7.3))
                    lamp_col.append((1.0, 0.78, 0.5))
                    lamp_rad.append(15.0)
                    inst += 1
                    # a parking sign half-way to the next lamp
                    sx, sy = (x + 15.0, y) if horizontal else (x, y + 15.0)
                    bl.add(sx, sy, 1.3, 0.04, 0.04, 1.3, 0.0, Tag.POLE, inst, Material.METAL,
                           (130, 130, 135))
                    yaw = (0.0 if side > 0 else math.pi) if horizontal else (math.pi / 2 if side > 0 else -math.pi / 2)
                    bl.add(sx, sy, 2.35, 0.02, 0.25, 0.3, yaw + math.pi / 2, Tag.TRAFFIC_SIGN,
                           inst + 1, Material.SIGN, (30, 70, 160))
                    inst += 2
    # traffic lights and stop signs at every junction corner
    signals = []
    for rx in roads:
        for ry in roads:
            for k, (sx, sy) in enumerate(((1, 1), (-1, 1), (-1, -1), (1, -1))):
                x = rx + sx * (ROAD_HALF + CURB + 0.6)
                y = ry + sy * (ROAD_HALF + CURB + 0.6)
                yaw = [math.pi, -math.pi / 2, 0.0, math.pi / 2][k]  # facing traffic
                bl.add(x, y, 2.5, 0.09, 0.09, 2.5, 0.0, Tag.TRAFFIC_LIGHT, inst, Material.METAL,
                       (70, 70, 70))
                c, s = math.cos(yaw), math.sin(yaw)
                bl.add(x, y, 4.4, 0.15, 0.2, 0.55, yaw, Tag.TRAFFIC_LIGHT, inst, Material.METAL,
                       (40, 40, 40))
                signals.append((x, y, 4.4, yaw))
                inst += 1
                if k == 0:
                    sx2 = x + 3.0 * (-s)
                    sy2 = y + 3.0 * c
                    bl.add(sx2, sy2, 1.2, 0.05, 0.05, 1.2, 0.0, Tag.POLE, inst, Material.METAL,
                           (120, 120, 120))
                    bl.add(sx2 + 0.05 * c, sy2 + 0.05 * s, 2.6, 0.02, 0.35, 0.35, yaw,
                           Tag.TRAFFIC_SIGN, inst + 1, Material.SIGN, (200, 20, 20))
                    inst += 2
    static = bl.boxes()
    lights = Light(np.array(lamp_pos, np.float64).reshape(-1, 3),
                   np.array(lamp_col, np.float32).reshape(-1, 3), np.array(lamp_rad, np.float64))
    cars = []
    taken: list[tuple[float, float]] = []
    for k in range(n_cars):
        r = roads[k % len(roads)] if k % 3 else 0.0
        lane = rng.choice([-1, 1])
        along = rng.uniform(-60, 120)
        while any(abs(along - a) < 9.0 and abs(r + lane * 3 - b) < 1 for a, b in taken):
            along += 9.0
        taken.append((along, r + lane * 3))
        horizontal = k % 4 != 3
        lat = lane * LANE * (0.5 if rng.uniform() < 0.5 else 1.5)
        yaw = 0.0 if lane > 0 else math.pi
        if horizontal:
            x, y = along, r + lat
        else:
            x, y = r - lat, along
            yaw += math.pi / 2
        cars.append(Car(200000 + k, x, y, yaw, float(rng.uniform(4, 11)),
                        CAR_COLORS[int(rng.integers(len(CAR_COLORS)))]))
    peds = []
    for k in range(n_pedestrians):
        side = rng.choice([-1, 1])
        y = side * (ROAD_HALF + CURB + 1.0 + rng.uniform(0, 1.5))
        x = rng.uniform(-10, 90)
        yaw = 0.0 if rng.uniform() < 0.5 else math.pi
        peds.append(Car(300000 + k, x, y, yaw, float(rng.uniform(0.8, 1.6)),
                        CLOTHES[int(rng.integers(len(CLOTHES)))]))
    return DemoScene(ground, static, lights, cars, peds, np.array(signals, np.float64), spacing)
