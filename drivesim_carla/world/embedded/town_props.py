"""What the procedural town puts on and around its roads: the ground raster (materials and lane
codes, painted from polygons sampled off the road network) and the static boxes (buildings,
walls, fences, hedges, trees, street lamps, traffic signs and traffic-light housings).

Everything is placed in the OpenDRIVE frame and converted with `opendrive.odr_to_carla` (boxes in
`Props.box`, ground polygons in `_Canvas`). Each static object gets its own instance id (from 1)
and a `static.*` kind; the boxes of one instance share one semantic tag.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ...labels import Tag
from .opendrive import Road, odr_to_carla
from .scene import Boxes, Ground, GroundMap, Light, Material
from .town import (
    CROSSWALK,
    DASH,
    DIRS,
    FILLET,
    JZ,
    MARGIN,
    MARK_W,
    RESOLUTION,
    STOP_W,
    Approach,
    JunctionInfo,
    Layout,
    Net,
    Street,
    block_rect,
    corridor,
    park_edges,
)

Rect = tuple[float, float, float, float]  # x0, y0, x1, y1 in the OpenDRIVE frame

MAX_STATIC_ID = 100_000  # the world numbers dynamic actors from here
LOT_MAX, LOT_MIN = 30.0, 11.0
LAMP_STEP, LAMP_HEIGHT = 25.0, 7.0
LAMP_COLOR, LAMP_RADIUS = (1.0, 0.78, 0.5), 15.0

FACADES = {
    Material.CONCRETE: ((205, 198, 186), (180, 180, 176), (222, 212, 190), (168, 160, 150),
                        (212, 200, 168), (152, 162, 172), (190, 170, 150)),
    Material.BRICK: ((150, 76, 56), (172, 98, 72), (122, 62, 46), (182, 122, 92), (140, 90, 80)),
    Material.GLASS: ((92, 122, 142), (72, 102, 122), (112, 142, 162), (62, 82, 102),
                     (98, 110, 118)),
}
FOLIAGE = ((62, 100, 40), (80, 120, 50), (50, 88, 44), (96, 128, 60), (70, 96, 36))
SIGN_FACES = ((235, 235, 235), (200, 30, 30), (30, 70, 170), (240, 200, 30))
METAL, DARK, BARK = (120, 122, 126), (38, 40, 42), (92, 70, 52)
WALLS = ((178, 170, 160), (140, 132, 124), (196, 188, 170))


class Props:
    """Collects the town's static boxes and street-lamp lights."""

    def __init__(self, layout: Layout, net: Net, rng: np.random.Generator):
        self.layout, self.net, self.rng = layout, net, rng
        self.rows: list[tuple] = []
        self.kind: dict[int, str] = {}
        self.lamps: list[tuple[float, float, float]] = []
        self.dirt_lots: list[Rect] = []

    # ----- primitives ---------------------------------------------------------------------
    def new(self, kind: str) -> int:
        """A fresh instance id for an object of `kind` ("static.building", ...)."""
        inst = len(self.kind) + 1
        if inst >= MAX_STATIC_ID:
            raise RuntimeError("too many static objects for the instance id range")
        self.kind[inst] = kind
        return inst

    def box(self, inst: int, x: float, y: float, z: float, half: tuple[float, float, float],
            yaw: float, tag: Tag, material: Material, color: tuple[int, int, int]) -> None:
        """Add one box, its centre (x, y, z) and yaw given in the OpenDRIVE frame."""
        cx, cy, cyaw = odr_to_carla(x, y, yaw)
        self.rows.append((float(cx), float(cy), z, *half, float(cyaw), int(tag), inst,
                          int(material), *color))

    def boxes(self) -> Boxes:
        a = np.array(self.rows, np.float64).reshape(-1, 13)
        u8 = np.uint8
        return Boxes(a[:, 0:3].copy(), a[:, 3:6].copy(), a[:, 6].copy(), a[:, 7].astype(u8),
                     a[:, 8].astype(np.int32), a[:, 9].astype(u8), a[:, 10:13].astype(u8))

    def pole(self, inst: int, x: float, y: float, z: float, half: tuple[float, float, float],
             yaw: float, color: tuple[int, int, int] = METAL) -> None:
        """A metal box tagged POLE (poles, arms, lamp heads)."""
        self.box(inst, x, y, z, half, yaw, Tag.POLE, Material.METAL, color)

    def lights(self) -> Light:
        pos = np.array(self.lamps, np.float64).reshape(-1, 3)
        n = len(pos)
        return Light(pos, np.tile(np.array(LAMP_COLOR, np.float32), (n, 1)),
                     np.full(n, LAMP_RADIUS, np.float32))

    def _color(self, palette: tuple, jitter: int = 12) -> tuple[int, int, int]:
        base = np.array(palette[int(self.rng.integers(len(palette)))])
        c = np.clip(base + self.rng.integers(-jitter, jitter + 1, 3), 0, 255)
        return int(c[0]), int(c[1]), int(c[2])

    # ----- traffic lights -----------------------------------------------------------------
    def traffic_lights(self, approaches: list[Approach]) -> tuple[list[int], list[np.ndarray]]:
        """Pole and arm (a `static.pole`) and housing (a `static.traffic_light`, whose instance
        the world's lamp boxes share) per approach, on the right-hand corner. Returns the
        housings' instance ids and the (3, 3) CARLA-frame red, yellow, green lamp centres."""
        instances, lamps = [], []
        for ap in approaches:
            f = np.array([math.cos(ap.heading), math.sin(ap.heading)])
            right = np.array([f[1], -f[0]])
            base = ap.point + f * 0.75
            pole = self.new("static.pole")
            p = base + right * (ap.half + 0.5)
            self.pole(pole, p[0], p[1], 3.0, (0.1, 0.1, 3.0), ap.heading)
            a = base + right * (ap.half - 0.15)
            self.pole(pole, a[0], a[1], 5.7, (0.05, 0.72, 0.05), ap.heading)
            inst = self.new("static.traffic_light")
            h = base + right * (ap.half - 0.8)
            self.box(inst, h[0], h[1], 5.0, (0.2, 0.2, 0.5), ap.heading, Tag.TRAFFIC_LIGHT,
                     Material.METAL, DARK)
            front = h - f * 0.26
            cx, cy, _ = odr_to_carla(front[0], front[1])
            lamps.append(np.array([[cx, cy, 5.0 + dz] for dz in (0.32, 0.0, -0.32)], np.float64))
            instances.append(inst)
        return instances, lamps

    # ----- everything else ----------------------------------------------------------------
    def populate(self) -> None:
        """Blocks (buildings, open lots), street furniture, plazas and the countryside."""
        bx, by = self.layout.shape
        for j in range(by):
            for i in range(bx):
                rect = block_rect(self.layout, i, j)
                for lot in split_lots(rect, self.rng):
                    self._lot(lot, _fronts(lot, rect))
        for rid, (_, st) in self.net.pieces.items():
            road = self.net.network.roads[rid]
            for side in (1, -1):
                self._street_side(road, st.kerb(side), side)
        for piece in sorted(self.layout.removed):
            self._plaza(piece)
        self._countryside()

    def _lot(self, lot: Rect, fronts: list[int]) -> None:
        r = self.rng.random()
        if fronts and r < 0.78 or not fronts and r < 0.45:
            if self._building(lot, fronts, low=not fronts):
                return
        self._open_lot(lot, fronts)

    def _building(self, lot: Rect, fronts: list[int], low: bool) -> bool:
        setback = float(self.rng.uniform(1.0, 4.0))
        pad = [setback if k in fronts else float(self.rng.uniform(0.6, 2.0)) for k in range(4)]
        x0, y0, x1, y1 = lot[0] + pad[0], lot[1] + pad[1], lot[2] - pad[2], lot[3] - pad[3]
        if x1 - x0 < 6.0 or y1 - y0 < 6.0:
            return False
        u = self.rng.random()
        height = float(self.rng.uniform(6, 12) if low or u < 0.45 else
                       self.rng.uniform(12, 24) if u < 0.85 else self.rng.uniform(24, 40))
        mats = (Material.GLASS, Material.CONCRETE, Material.BRICK)
        p = (0.55, 0.35, 0.10) if height > 24 else (0.15, 0.5, 0.35)
        mat = mats[int(self.rng.choice(3, p=p))]
        color = self._color(FACADES[mat])
        inst = self.new("static.building")
        cx, cy, hx, hy = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        base = height * float(self.rng.uniform(0.55, 0.75)) if height > 18 else height
        self.box(inst, cx, cy, base / 2, (hx, hy, base / 2), 0.0, Tag.BUILDING, mat, color)
        if base < height:  # a set-back upper tier
            k = float(self.rng.uniform(2.0, 4.0))
            sx, sy = max(hx - k, 2.0), max(hy - k, 2.0)
            self.box(inst, cx, cy, (base + height) / 2, (sx, sy, (height - base) / 2), 0.0,
                     Tag.BUILDING, mat, color)
        if self.rng.random() < 0.4:  # a rooftop plant room
            self.box(inst, cx + float(self.rng.uniform(-1, 1)), cy, height + 1.2,
                     (min(hx, 3.0) * 0.6, min(hy, 3.0) * 0.6, 1.2), 0.0, Tag.BUILDING,
                     Material.CONCRETE, self._color(FACADES[Material.CONCRETE]))
        if setback >= 2.6 and fronts and self.rng.random() < 0.35:
            self._hedge_front(lot, fronts[0], setback)
        return True

    def _hedge_front(self, lot: Rect, side: int, setback: float) -> None:
        inst = self.new("static.vegetation")
        x0, y0, x1, y1 = lot
        d = setback / 2
        if side in (0, 2):
            x = x0 + d if side == 0 else x1 - d
            self.box(inst, x, (y0 + y1) / 2, 0.6, (0.4, (y1 - y0) / 2 - 1.0, 0.6), 0.0,
                     Tag.VEGETATION, Material.HEDGE, self._color(FOLIAGE))
        else:
            y = y0 + d if side == 1 else y1 - d
            self.box(inst, (x0 + x1) / 2, y, 0.6, ((x1 - x0) / 2 - 1.0, 0.4, 0.6), 0.0,
                     Tag.VEGETATION, Material.HEDGE, self._color(FOLIAGE))

    def _open_lot(self, lot: Rect, fronts: list[int]) -> None:
        """Grass or dirt, perhaps walled, fenced or hedged, with a few trees."""
        if fronts and self.rng.random() < 0.4:
            self.dirt_lots.append(lot)
        if fronts and self.rng.random() < 0.75:
            kind = ("wall", "fence", "hedge")[int(self.rng.integers(3))]
            self._enclosure(lot, kind, gate=fronts[0])
        x0, y0, x1, y1 = lot
        for _ in range(int(self.rng.integers(0, 4))):
            if x1 - x0 > 8 and y1 - y0 > 8:
                x, y = self.rng.uniform((x0 + 4, y0 + 4), (x1 - 4, y1 - 4))
                self.tree(float(x), float(y), big=True)

    def _enclosure(self, lot: Rect, kind: str, gate: int) -> None:
        tag, mat, thick, height, name = {
            "wall": (Tag.WALL, Material.WALL, 0.15, float(self.rng.uniform(1.6, 2.4)),
                     "static.wall"),
            "fence": (Tag.FENCE, Material.FENCE, 0.03, 1.5, "static.fence"),
            "hedge": (Tag.VEGETATION, Material.HEDGE, 0.4, float(self.rng.uniform(1.0, 1.5)),
                      "static.vegetation"),
        }[kind]
        color = self._color(FOLIAGE if kind == "hedge" else WALLS)
        inst = self.new(name)
        x0, y0, x1, y1 = lot[0] + 0.4, lot[1] + 0.4, lot[2] - 0.4, lot[3] - 0.4
        sides = {0: ((x0, y0), (x0, y1)), 1: ((x0, y0), (x1, y0)), 2: ((x1, y0), (x1, y1)),
                 3: ((x0, y1), (x1, y1))}
        for k, (a, b) in sides.items():
            spans = [(a, b)]
            if k == gate:  # a 4 m opening in the middle of the street side
                m = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
                spans = [(a, _toward(m, a, 2.0)), (_toward(m, b, 2.0), b)]
            for p, q in spans:
                length = math.hypot(q[0] - p[0], q[1] - p[1])
                if length > 0.2:
                    self.box(inst, (p[0] + q[0]) / 2, (p[1] + q[1]) / 2, height / 2,
                             (length / 2, thick, height / 2), math.atan2(q[1] - p[1], q[0] - p[0]),
                             tag, mat, color)

    def tree(self, x: float, y: float, big: bool = False) -> None:
        """A trunk and one or two crowns, one instance."""
        inst = self.new("static.vegetation")
        trunk = float(self.rng.uniform(3.2, 4.2))
        self.box(inst, x, y, trunk / 2, (0.15, 0.15, trunk / 2), 0.0, Tag.VEGETATION,
                 Material.BARK, BARK)
        r = float(self.rng.uniform(1.1, 1.4) * (1.6 if big else 1.0))
        rz = float(self.rng.uniform(1.0, 1.8))
        yaw = float(self.rng.uniform(-0.3, 0.3))
        color = self._color(FOLIAGE)
        self.box(inst, x, y, trunk - 0.2 + rz, (r, r, rz), yaw, Tag.VEGETATION, Material.FOLIAGE,
                 color)
        if self.rng.random() < 0.5:
            self.box(inst, x, y, trunk - 0.2 + 2 * rz + 0.5, (r * 0.6, r * 0.6, 0.7), yaw + 0.4,
                     Tag.VEGETATION, Material.FOLIAGE, color)

    def _street_side(self, road: Road, kerb: float, side: int) -> None:
        """Lamps, trees and maybe a sign along one sidewalk of a road piece, at the kerb."""
        L = road.length
        lamps = np.arange(float(self.rng.uniform(6.0, 14.0)), L - 6.0, LAMP_STEP)
        for s in lamps:
            self._lamp(road, float(s), kerb, side)
        p_tree = float(self.rng.choice([0.0, 0.6, 0.95], p=[0.2, 0.4, 0.4]))
        step = float(self.rng.uniform(8.0, 12.0))
        for s in np.arange(8.0 + float(self.rng.uniform(0, 3)), L - 8.0, step):
            if np.min(np.abs(lamps - s), initial=99.0) > 3.0 and self.rng.random() < p_tree:
                x, y, _ = road.offset_points(np.array([s]), side * (kerb + 0.7))
                self.tree(float(x[0]), float(y[0]))
        if self.rng.random() < 0.35:
            self._sign(road, 4.0 if side < 0 else L - 4.0, kerb, side)

    def _lamp(self, road: Road, s: float, kerb: float, side: int) -> None:
        inst = self.new("static.pole")
        t = side * np.array([kerb + 0.4, kerb - 0.3, kerb - 1.0])  # pole, arm, head
        x, y, h = road.offset_points(np.full(3, s), t)
        hdg, zp = float(h[0]), LAMP_HEIGHT / 2 + 0.25
        self.pole(inst, x[0], y[0], zp, (0.1, 0.1, zp), hdg)
        self.pole(inst, x[1], y[1], LAMP_HEIGHT + 0.4, (0.05, 0.75, 0.05), hdg)
        self.pole(inst, x[2], y[2], LAMP_HEIGHT + 0.25, (0.18, 0.3, 0.08), hdg, DARK)
        cx, cy, _ = odr_to_carla(x[2], y[2])
        self.lamps.append((float(cx), float(cy), LAMP_HEIGHT))

    def _sign(self, road: Road, s: float, kerb: float, side: int) -> None:
        """A sign (a `static.sign`) on a pole (a `static.pole`) at the right of traffic entering
        the road, facing it."""
        x, y, h = road.offset_points(np.array([s]), side * (kerb + 0.4))
        travel = float(h[0]) + (math.pi if side > 0 else 0.0)
        self.pole(self.new("static.pole"), x[0], y[0], 1.35, (0.04, 0.04, 1.35), travel)
        inst = self.new("static.sign")
        fx, fy = x[0] - math.cos(travel) * 0.07, y[0] - math.sin(travel) * 0.07
        self.box(inst, fx, fy, 2.35, (0.02, 0.35, 0.35), travel + math.pi, Tag.TRAFFIC_SIGN,
                 Material.SIGN, SIGN_FACES[int(self.rng.integers(len(SIGN_FACES)))])

    def _plaza(self, piece: tuple[str, int, int]) -> None:
        """A row of trees down the lawn where a road piece was dropped."""
        a, b, c = corridor(self.layout, piece)
        for s in np.arange(a + 8.0, b - 8.0, 9.0):
            self.tree(float(s), c) if piece[0] == "h" else self.tree(c, float(s))

    def _countryside(self) -> None:
        """Scattered trees in the open land beyond the outer sidewalk."""
        lay = self.layout
        x0 = lay.xs[0] - lay.cols[0].outer(1)
        x1 = lay.xs[-1] + lay.cols[-1].outer(-1)
        y0 = lay.ys[0] - lay.rows[0].outer(-1)
        y1 = lay.ys[-1] + lay.rows[-1].outer(1)
        n = int(2 * (x1 - x0 + y1 - y0) / 14.0)
        for _ in range(n):
            side, u = int(self.rng.integers(4)), float(self.rng.random())
            d = float(self.rng.uniform(5, 30))
            if side == 0:
                x, y = x0 + u * (x1 - x0), y0 - d
            elif side == 1:
                x, y = x0 + u * (x1 - x0), y1 + d
            elif side == 2:
                x, y = x0 - d, y0 + u * (y1 - y0)
            else:
                x, y = x1 + d, y0 + u * (y1 - y0)
            self.tree(x, y, big=bool(self.rng.random() < 0.5))


def _toward(a: tuple[float, float], b: tuple[float, float], d: float) -> tuple[float, float]:
    """The point d metres from a towards b."""
    n = math.hypot(b[0] - a[0], b[1] - a[1])
    return a[0] + (b[0] - a[0]) * d / n, a[1] + (b[1] - a[1]) * d / n


def _fronts(lot: Rect, block: Rect) -> list[int]:
    """Sides of a lot on its block's edge (0 west, 1 south, 2 east, 3 north; OpenDRIVE frame)."""
    return [k for k in range(4) if abs(lot[k] - block[k]) < 1e-6]


def split_lots(rect: Rect, rng: np.random.Generator) -> list[Rect]:
    """Split a block into lots of at most LOT_MAX a side (binary space partition)."""
    x0, y0, x1, y1 = rect
    w, h = x1 - x0, y1 - y0
    if max(w, h) <= LOT_MAX or max(w, h) < 2 * LOT_MIN:
        return [rect]
    f = float(rng.uniform(0.35, 0.65))
    if w >= h:
        cut = x0 + max(LOT_MIN, min(w - LOT_MIN, w * f))
        return split_lots((x0, y0, cut, y1), rng) + split_lots((cut, y0, x1, y1), rng)
    cut = y0 + max(LOT_MIN, min(h - LOT_MIN, h * f))
    return split_lots((x0, y0, x1, cut), rng) + split_lots((x0, cut, x1, y1), rng)


# ----- ground raster --------------------------------------------------------------------------
class _Canvas:
    """The ground rasters, filled with polygons given in the OpenDRIVE frame."""

    def __init__(self, bounds: tuple[float, float, float, float]):
        xmin, ymin, xmax, ymax = bounds
        self.origin = (math.floor(xmin - MARGIN), math.floor(ymin - MARGIN))
        w = math.ceil((xmax + MARGIN - self.origin[0]) / RESOLUTION)
        h = math.ceil((ymax + MARGIN - self.origin[1]) / RESOLUTION)
        self.material = np.full((h, w), Ground.GRASS, np.uint8)
        self.lane = np.full((h, w), -1, np.int32)

    def _px(self, poly: np.ndarray) -> np.ndarray:
        x, y, _ = odr_to_carla(poly[:, 0], poly[:, 1])
        col = (x - self.origin[0]) / RESOLUTION - 0.5
        row = (y - self.origin[1]) / RESOLUTION - 0.5
        return np.round(np.stack([col, row], axis=1) * 8).astype(np.int32)

    def fill(self, img: np.ndarray, polys: list[np.ndarray], value: int,
             disjoint: bool = False) -> None:
        """Fill polygons; overlapping ones must go one call each (cv2 fills them even-odd)."""
        pts = [self._px(p) for p in polys]
        if disjoint:
            cv2.fillPoly(img, pts, int(value), cv2.LINE_8, 3)
        else:
            for p in pts:
                cv2.fillPoly(img, [p], int(value), cv2.LINE_8, 3)


def _band(road: Road, s0: float, s1: float, t0: float | np.ndarray, t1: float | np.ndarray,
          s: np.ndarray | None = None) -> np.ndarray:
    """Polygon between lateral offsets t0 and t1 for s in [s0, s1] (OpenDRIVE frame)."""
    s = np.array([s0, s1]) if s is None else s
    xa, ya, _ = road.offset_points(s, t0)
    xb, yb, _ = road.offset_points(s, t1)
    return np.concatenate([np.stack([xa, ya], 1), np.stack([xb, yb], 1)[::-1]])


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


def _arm_quad(center: tuple[float, float], core: tuple[float, float], d: int, r0: float,
              r1: float, t0: float, t1: float) -> np.ndarray:
    """Quad on junction arm d: r from the core's edge outwards, t to the left of the arm."""
    e = np.array(DIRS[d])
    n = np.array([-e[1], e[0]])
    base = np.array(center) + e * core[d % 2]
    return np.array([base + e * r + n * t for r, t in ((r0, t0), (r1, t0), (r1, t1), (r0, t1))])


def _fillet(info: JunctionInfo, d: int) -> np.ndarray:
    """Asphalt rounding the kerb between arms d and d+1."""
    e1, e2 = np.array(DIRS[d]), np.array(DIRS[(d + 1) % 4])
    corner = np.array(info.center) + e1 * info.core[d % 2] + e2 * info.core[(d + 1) % 2]
    cf = corner + (e1 + e2) * FILLET
    a0 = math.atan2(-e2[1], -e2[0])
    a = a0 - np.linspace(0.0, math.pi / 2, 10)
    arc = cf + FILLET * np.stack([np.cos(a), np.sin(a)], axis=1)
    return np.vstack([corner, arc])


def _arm_span(street: Street, d: int) -> tuple[float, float]:
    """Lateral extent (right, left of the arm's outward direction) of a street's sidewalks."""
    if d in (0, 1):
        return -street.outer(-1), street.outer(1)
    return -street.outer(1), street.outer(-1)


def _paint_sidewalk_zones(cv: _Canvas, layout: Layout, net: Net) -> None:
    for rid, (_, st) in net.pieces.items():
        road = net.network.roads[rid]
        cv.fill(cv.material, [_band(road, 0, road.length, -st.outer(-1), st.outer(1))],
                Ground.SIDEWALK)
    for info in net.junctions:
        i, j = info.ij
        X, Y = info.center
        col, row = layout.cols[i], layout.rows[j]
        polys = [_rect(X - col.outer(1), Y - row.outer(-1), X + col.outer(-1), Y + row.outer(1))]
        for d in layout.arm_pieces(i, j):
            t0, t1 = _arm_span(row if d % 2 == 0 else col, d)
            polys.append(_arm_quad(info.center, info.core, d, 0.0, JZ, t0, t1))
        cv.fill(cv.material, polys, Ground.SIDEWALK)
    for axis, i, j in sorted(layout.removed):  # plazas with a lawn where a road was dropped
        st = layout.street((axis, i, j))
        a, b, c = corridor(layout, (axis, i, j))
        if axis == "h":
            plaza = _rect(a, c - st.outer(-1), b, c + st.outer(1))
            lawn = _rect(a + JZ, c - st.half + 0.8, b - JZ, c + st.half - 0.8)
        else:
            plaza = _rect(c - st.outer(1), a, c + st.outer(-1), b)
            lawn = _rect(c - st.half + 0.8, a + JZ, c + st.half - 0.8, b - JZ)
        cv.fill(cv.material, [plaza], Ground.SIDEWALK)
        cv.fill(cv.material, [lawn], Ground.GRASS)


def _junction_asphalt(info: JunctionInfo) -> list[np.ndarray]:
    X, Y = info.center
    hx, hy = info.core
    polys = [_rect(X - hx, Y - hy, X + hx, Y + hy)]
    for d in info.arms:
        half = info.core[(d + 1) % 2]
        polys.append(_arm_quad(info.center, info.core, d, 0.0, JZ, -half, half))
    polys += [_fillet(info, d) for d in range(4) if d in info.arms and (d + 1) % 4 in info.arms]
    return polys


def _paint_roads(cv: _Canvas, net: Net, index: dict[tuple[int, int], int]) -> None:
    """Asphalt, parking lanes and the lane raster (segment ids, -3 parking, -2 junctions)."""
    for rid in net.pieces:
        road = net.network.roads[rid]
        for lane in road.lane_sections[0].left + road.lane_sections[0].right:
            if lane.type not in ("driving", "parking"):
                continue
            s = np.array([0.0, road.length])
            poly = _band(road, 0, road.length, *road.lane_boundaries(lane.id, s), s=s)
            driving = lane.type == "driving"
            cv.fill(cv.material, [poly], Ground.ASPHALT if driving else Ground.PARKING)
            cv.fill(cv.lane, [poly], index[(rid, lane.id)] if driving else -3)
    for info in net.junctions:
        polys = _junction_asphalt(info)
        cv.fill(cv.material, polys, Ground.ASPHALT)
        cv.fill(cv.lane, polys, -2)


def _paint_curbs(cv: _Canvas) -> None:
    m = cv.material
    road = ((m == Ground.ASPHALT) | (m == Ground.PARKING)).view(np.uint8)
    near = cv2.dilate(road, np.ones((5, 5), np.uint8)).view(bool)
    m[near & (m == Ground.SIDEWALK)] = Ground.CURB


def _road_markings(road: Road, st: Street) -> dict[int, list[np.ndarray]]:
    """Marking polygons of one road piece by material."""
    L, hw = road.length, MARK_W / 2
    out: dict[int, list[np.ndarray]] = {Ground.LANE_YELLOW_SOLID: [_band(road, 0, L, -hw, hw)],
                                        Ground.LANE_WHITE_SOLID: [], Ground.LANE_WHITE_BROKEN: []}
    for side in (1, -1):
        edge = side * st.half
        out[Ground.LANE_WHITE_SOLID].append(_band(road, 0, L, edge - hw, edge + hw))
        for k in range(1, st.lanes):
            t = side * k * st.width
            for s in np.arange(1.0, L - 2.0, sum(DASH)):
                dash = _band(road, s, min(s + DASH[0], L - 2.0), t - hw, t + hw)
                out[Ground.LANE_WHITE_BROKEN].append(dash)
        park = st.park[0 if side > 0 else 1]
        if park > 0:
            for s in park_edges(L):
                out[Ground.LANE_WHITE_SOLID].append(
                    _band(road, s - 0.05, s + 0.05, side * (st.half + hw), side * (st.half + park)))
    return out


def _paint_markings(cv: _Canvas, net: Net, approaches: list[Approach]) -> None:
    by_mat: dict[int, list[np.ndarray]] = {}
    for rid, (_, st) in net.pieces.items():
        for mat, polys in _road_markings(net.network.roads[rid], st).items():
            by_mat.setdefault(mat, []).extend(polys)
    for mat in (Ground.LANE_YELLOW_SOLID, Ground.LANE_WHITE_BROKEN):
        cv.fill(cv.material, by_mat[mat], mat, disjoint=True)
    cv.fill(cv.material, by_mat[Ground.LANE_WHITE_SOLID], Ground.LANE_WHITE_SOLID)
    stops = []
    for ap in approaches:
        road = net.network.roads[ap.road]
        if ap.lanes[0] > 0:  # the junction is at the road's start
            stops.append(_band(road, 0.0, STOP_W, 0.0, ap.half))
        else:
            stops.append(_band(road, road.length - STOP_W, road.length, -ap.half, 0.0))
    cv.fill(cv.material, stops, Ground.STOP_LINE, disjoint=True)
    cv.fill(cv.material, _crosswalks(net), Ground.CROSSWALK, disjoint=True)


def _crosswalks(net: Net) -> list[np.ndarray]:
    """Zebra stripes (0.5 m, along the traffic) across every junction arm."""
    out = []
    for info in net.junctions:
        for d in info.arms:
            half = info.core[(d + 1) % 2]
            for t in np.arange(-half + 0.5, half - 0.2, 1.0):
                out.append(_arm_quad(info.center, info.core, d, CROSSWALK[0], CROSSWALK[1],
                                     t - 0.25, t + 0.25))
    return out


def paint_ground(layout: Layout, net: Net, index: dict[tuple[int, int], int],
                  approaches: list[Approach], dirt: list[tuple[float, float, float, float]],
                  bounds: tuple[float, float, float, float]) -> GroundMap:
    """Ground materials and the lane raster, from polygons sampled off the network."""
    cv = _Canvas(bounds)
    cv.fill(cv.material, [_rect(*r) for r in dirt], Ground.DIRT)
    _paint_sidewalk_zones(cv, layout, net)
    _paint_roads(cv, net, index)
    _paint_curbs(cv)
    _paint_markings(cv, net, approaches)
    return GroundMap(cv.material, (float(cv.origin[0]), float(cv.origin[1])), RESOLUTION, cv.lane)
