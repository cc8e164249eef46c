"""Other road users of the embedded world: actuated traffic lights, lane-following vehicles that
keep their distance (IDM), and pedestrians on the sidewalks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...labels import Tag
from ...vehicle import IDM_DECEL, idm
from .scene import Boxes, Ground, LaneSegment, Material, SignalSpec, Town

FIRST_ACTOR_ID = 100_000

# name, tag, half extents (x, y, z), probability
VEHICLE_TYPES = (
    ("vehicle.car", Tag.CAR, (2.3, 0.95, 0.75), 0.8),
    ("vehicle.van", Tag.TRUCK, (2.9, 1.05, 1.2), 0.15),
    ("vehicle.bus", Tag.BUS, (5.5, 1.25, 1.6), 0.05),
)
PAINT = np.array([(200, 30, 30), (30, 60, 160), (220, 220, 220), (20, 20, 22), (120, 120, 125),
                  (190, 170, 120), (40, 110, 60), (230, 140, 20), (90, 20, 40), (160, 180, 200)],
                 np.uint8)
CLOTH = np.array([(40, 40, 60), (150, 30, 30), (30, 90, 150), (200, 200, 190), (60, 80, 40),
                  (120, 80, 50), (25, 25, 25), (180, 120, 160)], np.uint8)

LOOKAHEAD = 45.0  # m of path checked for leaders

# Actuated signal timing (seconds)
MIN_GREEN, MAX_GREEN, YELLOW, ALL_RED, MAX_ALL_RED = 3.0, 9.0, 1.5, 1.0, 8.0
DEMAND_RANGE = 40.0  # m before a stop line where a vehicle calls its green


class LaneGraph:
    """Lane segments with arc-length tables, for moving along them quickly."""

    def __init__(self, lanes: dict[int, LaneSegment]):
        self.lanes = lanes
        self.s = {}
        for k, seg in lanes.items():
            d = np.linalg.norm(np.diff(seg.points, axis=0), axis=1)
            self.s[k] = np.concatenate([[0.0], np.cumsum(d)])

    def length(self, seg: int) -> float:
        return float(self.s[seg][-1])

    def pose(self, seg: int, s: float) -> tuple[float, float, float]:
        """World x, y and heading (rad) at distance s along a segment."""
        ss, pts = self.s[seg], self.lanes[seg].points
        s = min(max(s, 0.0), ss[-1])
        k = min(int(np.searchsorted(ss, s, side="right")) - 1, len(ss) - 2)
        k = max(k, 0)
        t = (s - ss[k]) / max(ss[k + 1] - ss[k], 1e-9)
        p = pts[k] + t * (pts[k + 1] - pts[k])
        d = pts[k + 1] - pts[k]
        return float(p[0]), float(p[1]), math.atan2(d[1], d[0])

    def points_ahead(self, path: list[int], s: float, dist: float) -> tuple[np.ndarray, np.ndarray]:
        """Centreline points from `s` on path[0] onward for `dist` metres, with their distances."""
        pts, acc, offset = [], [], -s
        for seg in path:
            ss = self.s[seg]
            keep = (ss + offset >= 0) & (ss + offset <= dist)
            pts.append(self.lanes[seg].points[keep])
            acc.append(ss[keep] + offset)
            offset += ss[-1]
            if offset > dist:
                break
        return np.concatenate(pts), np.concatenate(acc)


class SignalController:
    """Actuated traffic lights: each approach of a junction gets green in turn, skipping approaches
    nobody waits at; the next green waits until the junction has cleared."""

    def __init__(self, town: Town, rng: np.random.Generator):
        self.signals = town.signals
        self.by_junction: dict[int, list[SignalSpec]] = {}
        for sig in sorted(town.signals.values(), key=lambda g: (g.junction_id, g.phase)):
            self.by_junction.setdefault(sig.junction_id, []).append(sig)
        self.phase = {j: int(rng.integers(len(v))) for j, v in self.by_junction.items()}
        self.mode = {j: "green" for j in self.by_junction}
        self.timer = {j: float(rng.uniform(0.0, MIN_GREEN)) for j in self.by_junction}

    def states(self) -> dict[int, str]:
        out = {}
        for j, sigs in self.by_junction.items():
            for i, sig in enumerate(sigs):
                lit = i == self.phase[j] and self.mode[j] in ("green", "yellow")
                out[sig.id] = self.mode[j] if lit else "red"
        return out

    def step(self, dt: float, demand: set[int], occupied: set[int]) -> None:
        """`demand`: signal ids with a vehicle waiting; `occupied`: junctions with a vehicle in."""
        for j, sigs in self.by_junction.items():
            self.timer[j] += dt
            t, mode, cur = self.timer[j], self.mode[j], self.phase[j]
            waiting = [i for i, s in enumerate(sigs) if s.id in demand and i != cur]
            if mode == "green":
                own = sigs[cur].id in demand
                if waiting and t >= MIN_GREEN and (not own or t >= MAX_GREEN):
                    self.mode[j], self.timer[j] = "yellow", 0.0
            elif mode == "yellow" and t >= YELLOW:
                self.mode[j], self.timer[j] = "all_red", 0.0
            elif mode == "all_red" and t >= ALL_RED and (j not in occupied or t >= MAX_ALL_RED):
                n = len(sigs)
                nxt = next((k % n for k in range(cur + 1, cur + n + 1) if k % n in waiting),
                           (cur + 1) % n)
                self.phase[j], self.mode[j], self.timer[j] = nxt, "green", 0.0


@dataclass
class Vehicle:
    id: int
    kind: str
    tag: int
    half: tuple[float, float, float]
    color: np.ndarray
    path: list[int]  # lane segments; path[0] holds the vehicle
    s: float
    v: float
    v0: float  # desired speed, m/s
    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0
    rng: np.random.Generator = field(default=None, repr=False)  # type: ignore[assignment]


@dataclass
class Pedestrian:
    id: int
    color: np.ndarray
    walk: int  # sidewalk polyline index
    a: float  # arc length along it
    direction: float  # +1 / -1
    speed: float
    offset: float  # lateral offset from the sidewalk centre
    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0
    crossing: tuple[float, float, float, float] | None = None  # from x, y, to x, y
    cross_t: float = 0.0


class Traffic:
    """NPC vehicles, parked vehicles, pedestrians and traffic lights of one episode."""

    def __init__(self, town: Town, graph: LaneGraph, rng: np.random.Generator, *,
                 vehicles: int, parked: int, pedestrians: int, jaywalkers: float,
                 avoid: tuple[float, float], speed_limit: float):
        self.town, self.graph, self.rng = town, graph, rng
        self.signals = SignalController(town, rng)
        self.light_state = self.signals.states()
        self.jaywalkers = jaywalkers
        self.next_id = FIRST_ACTOR_ID
        self.vehicles = self._spawn_vehicles(vehicles, avoid, speed_limit)
        self.parked = self._park(parked)
        self.walks = [self._walk_table(p) for p in town.sidewalks]
        self.pedestrians = self._spawn_pedestrians(pedestrians)

    # ----- spawning -------------------------------------------------------------------------
    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def _vehicle_type(self) -> tuple[str, int, tuple[float, float, float]]:
        p = np.array([t[3] for t in VEHICLE_TYPES])
        name, tag, half, _ = VEHICLE_TYPES[int(self.rng.choice(len(p), p=p / p.sum()))]
        return name, int(tag), half

    def _spawn_vehicles(self, n: int, avoid: tuple[float, float], limit: float) -> list[Vehicle]:
        spots = list(self.town.spawn_points)
        order = self.rng.permutation(len(spots))
        out: list[Vehicle] = []
        for k in order:
            if len(out) >= n:
                break
            seg, s = spots[k]
            x, y, yaw = self.graph.pose(seg, s)
            if math.hypot(x - avoid[0], y - avoid[1]) < 20.0:
                continue
            if any(math.hypot(x - o.x, y - o.y) < 12.0 for o in out):
                continue
            kind, tag, half = self._vehicle_type()
            vrng = np.random.default_rng(self.rng.integers(2**63))
            v0 = min(limit, self.town.lanes[seg].speed_limit) * float(vrng.uniform(0.75, 1.0))
            veh = Vehicle(self._new_id(), kind, tag, half, PAINT[int(vrng.integers(len(PAINT)))],
                          [seg], s, 0.0, v0, x, y, yaw, vrng)
            self._extend_path(veh)
            out.append(veh)
        return out

    def _park(self, n: int) -> Boxes:
        spots = self.town.parking
        if n == 0 or len(spots) == 0:
            return Boxes.empty()
        pick = np.sort(self.rng.choice(len(spots), size=min(n, len(spots)), replace=False))
        parts = []
        for k in pick:
            x, y, yaw = spots[k]
            color = PAINT[int(self.rng.integers(len(PAINT)))]
            parts.append(vehicle_boxes(self._new_id(), int(Tag.CAR), VEHICLE_TYPES[0][2],
                                       color, x, y, yaw))
        return Boxes.concat(parts)

    @staticmethod
    def _walk_table(poly: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        closed = np.vstack([poly, poly[:1]])
        d = np.linalg.norm(np.diff(closed, axis=0), axis=1)
        return closed, np.concatenate([[0.0], np.cumsum(d)])

    def _spawn_pedestrians(self, n: int) -> list[Pedestrian]:
        out = []
        if not self.walks:
            return out
        lengths = np.array([w[1][-1] for w in self.walks])
        for _ in range(n):
            w = int(self.rng.choice(len(lengths), p=lengths / lengths.sum()))
            ped = Pedestrian(
                self._new_id(), CLOTH[int(self.rng.integers(len(CLOTH)))], w,
                float(self.rng.uniform(0, lengths[w])), float(self.rng.choice([-1.0, 1.0])),
                float(self.rng.uniform(1.0, 1.6)), float(self.rng.uniform(-0.7, 0.7)),
            )
            self._place_pedestrian(ped)
            out.append(ped)
        return out

    # ----- vehicles -------------------------------------------------------------------------
    def _extend_path(self, veh: Vehicle, ahead: float = LOOKAHEAD + 60.0) -> None:
        total = self.graph.length(veh.path[0]) - veh.s
        for seg in veh.path[1:]:
            total += self.graph.length(seg)
        while total < ahead:
            succ = self.town.lanes[veh.path[-1]].successors
            if not succ:
                break
            nxt = succ[int(veh.rng.integers(len(succ)))]
            veh.path.append(nxt)
            total += self.graph.length(nxt)

    def occupied_junctions(self) -> set[int]:
        return {self.town.lanes[v.path[0]].junction_id for v in self.vehicles} - {-1}

    def demand(self) -> set[int]:
        out = set()
        for v in self.vehicles:
            seg = self.town.lanes[v.path[0]]
            if seg.signal_id is not None and self.graph.length(v.path[0]) - v.s < DEMAND_RANGE:
                out.add(seg.signal_id)
        return out

    def step_vehicles(self, dt: float, ego: tuple[float, float, float, float],
                      ego_half: tuple[float, float, float]) -> None:
        """Advance every NPC by IDM along its path; `ego` = x, y, yaw, speed."""
        obstacles = self._obstacles(ego, ego_half)
        for i, veh in enumerate(self.vehicles):
            gap, lead_v = self._leader(veh, obstacles, skip=i)
            acc = idm(veh.v, veh.v0, gap, lead_v)
            veh.v = max(0.0, veh.v + acc * dt)
            veh.s += veh.v * dt
            while veh.s > self.graph.length(veh.path[0]) and len(veh.path) > 1:
                veh.s -= self.graph.length(veh.path.pop(0))
            self._extend_path(veh)
            veh.x, veh.y, veh.yaw = self.graph.pose(veh.path[0], veh.s)

    def _obstacles(self, ego, ego_half) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Corner points (M, 5, 2), speeds (M,) and owner index (vehicle i, or -1 for others)."""
        pts, speed, owner = [], [], []
        for i, v in enumerate(self.vehicles):
            pts.append(box_points(v.x, v.y, v.yaw, v.half))
            speed.append(v.v)
            owner.append(i)
        pts.append(box_points(ego[0], ego[1], ego[2], ego_half))
        speed.append(ego[3])
        owner.append(-1)
        for p in self.pedestrians:
            if p.crossing is not None:  # only pedestrians off the sidewalk can block a lane
                pts.append(box_points(p.x, p.y, p.yaw, (0.3, 0.3, 0.9)))
                speed.append(0.0)
                owner.append(-2)
        return np.array(pts), np.array(speed), np.array(owner)

    def _leader(self, veh: Vehicle, obstacles, skip: int) -> tuple[float, float]:
        """Free gap (m) to the nearest thing on the vehicle's path ahead, and its speed."""
        gap, lead_v = math.inf, 0.0
        corners, speeds, owner = obstacles
        reach = (LOOKAHEAD + 8.0) ** 2
        cand = (owner != skip) & (
            np.sum((corners[:, 0, :] - (veh.x, veh.y)) ** 2, axis=-1) < reach)
        if cand.any():
            pts, acc = self.graph.points_ahead(veh.path, veh.s, LOOKAHEAD)
            c = corners[cand]  # (M, 5, 2)
            d2 = np.sum((c[:, :, None, :] - pts[None, None, :, :]) ** 2, axis=-1)  # M 5 P
            near = (d2 < (veh.half[1] + 0.6) ** 2).any(axis=1)  # M P
            # the first path point each obstacle blocks, ahead of our centre
            first = np.where(near & (acc > 0.0), acc[None, :], np.inf).min(axis=1)
            m = int(np.argmin(first))
            if np.isfinite(first[m]):
                gap, lead_v = float(first[m]) - veh.half[0], float(speeds[cand][m])
        stop = self._stop_distance(veh)
        if stop < gap:
            gap, lead_v = stop, 0.0
        return gap, lead_v

    def _stop_distance(self, veh: Vehicle) -> float:
        """Distance from the front bumper to the next stop line that is red (or yellow and
        comfortably stoppable), along the path."""
        dist = -veh.s
        for seg_id in veh.path:
            seg = self.town.lanes[seg_id]
            dist += self.graph.length(seg_id)
            if dist > LOOKAHEAD:
                break
            if seg.signal_id is None:
                continue
            state = self.light_state.get(seg.signal_id, "green")
            d = dist - veh.half[0] - 0.5
            if state == "red" and d > -1.0:
                return max(d, 0.0)
            if state == "yellow" and d > veh.v * veh.v / (2 * IDM_DECEL):
                return d
        return math.inf

    # ----- pedestrians ----------------------------------------------------------------------
    def _place_pedestrian(self, p: Pedestrian) -> None:
        closed, acc = self.walks[p.walk]
        a = p.a % acc[-1]
        k = min(int(np.searchsorted(acc, a, side="right")) - 1, len(acc) - 2)
        t = (a - acc[k]) / max(acc[k + 1] - acc[k], 1e-9)
        d = closed[k + 1] - closed[k]
        n = np.array([-d[1], d[0]]) / max(np.linalg.norm(d), 1e-9)
        pos = closed[k] + t * d + p.offset * n
        p.x, p.y = float(pos[0]), float(pos[1])
        p.yaw = math.atan2(d[1], d[0]) if p.direction > 0 else math.atan2(-d[1], -d[0])

    def step_pedestrians(self, dt: float) -> None:
        for p in self.pedestrians:
            if p.crossing is not None:
                x0, y0, x1, y1 = p.crossing
                length = math.hypot(x1 - x0, y1 - y0)
                p.cross_t = min(1.0, p.cross_t + p.speed * dt / max(length, 1e-6))
                p.x, p.y = x0 + p.cross_t * (x1 - x0), y0 + p.cross_t * (y1 - y0)
                if p.cross_t >= 1.0:
                    self._land(p)
                continue
            p.a += p.direction * p.speed * dt
            self._place_pedestrian(p)
            if self.jaywalkers > 0 and self.rng.random() < self.jaywalkers * dt / 10.0:
                self._start_crossing(p)

    def _start_crossing(self, p: Pedestrian) -> None:
        """Walk straight across the road beside the sidewalk, to the sidewalk opposite."""
        closed, acc = self.walks[p.walk]
        k = min(int(np.searchsorted(acc, p.a % acc[-1], side="right")) - 1, len(acc) - 2)
        d = closed[k + 1] - closed[k]
        n = np.array([-d[1], d[0]]) / max(np.linalg.norm(d), 1e-9)
        centre = closed[:-1].mean(axis=0)
        if np.dot(np.array([p.x, p.y]) - centre, n) < 0:
            n = -n  # face away from the block, towards the road
        ground = self.town.ground
        steps = np.arange(1.0, 40.0, 0.25)
        xs, ys = p.x + steps * n[0], p.y + steps * n[1]
        mats = ground.material_at(xs, ys)
        on_road = (mats != Ground.SIDEWALK) & (mats != Ground.CURB)
        if not on_road[:20].any():
            return
        first_road = int(np.argmax(on_road))
        back = np.where(~on_road[first_road:])[0]
        if len(back) == 0:
            return
        end = first_road + int(back[0]) + 2
        if end >= len(steps):
            return
        p.crossing = (p.x, p.y, float(xs[end]), float(ys[end]))
        p.cross_t = 0.0
        p.yaw = math.atan2(n[1], n[0])

    def _land(self, p: Pedestrian) -> None:
        """Join the nearest sidewalk after a crossing."""
        best = (math.inf, 0, 0.0)
        for w, (closed, acc) in enumerate(self.walks):
            a, b = closed[:-1], closed[1:]
            ab = b - a
            t = np.clip(np.einsum("ij,ij->i", (p.x, p.y) - a, ab)
                        / np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-9), 0, 1)
            dist = np.linalg.norm(a + t[:, None] * ab - (p.x, p.y), axis=1)
            k = int(np.argmin(dist))
            if dist[k] < best[0]:
                best = (float(dist[k]), w, float(acc[k] + t[k] * np.linalg.norm(ab[k])))
        p.crossing, p.walk, p.a = None, best[1], best[2]
        self._place_pedestrian(p)

    # ----- output ---------------------------------------------------------------------------
    def boxes(self) -> Boxes:
        """Boxes of moving vehicles, pedestrians and the lit traffic-light lamps."""
        parts = [vehicle_boxes(v.id, v.tag, v.half, v.color, v.x, v.y, v.yaw)
                 for v in self.vehicles]
        parts += [pedestrian_boxes(p.id, p.color, p.x, p.y, p.yaw) for p in self.pedestrians]
        parts.append(self.lamp_boxes())
        return Boxes.concat(parts)

    def lamp_boxes(self) -> Boxes:
        centers, yaws, mats, inst = [], [], [], []
        for sig in self.town.signals.values():
            state = self.light_state.get(sig.id, "red")
            on = {"red": 0, "yellow": 1, "green": 2}.get(state, -1)
            for k, c in enumerate(sig.lamp_centers):
                centers.append(c)
                yaws.append(sig.heading + math.pi)
                lit = (Material.LAMP_RED_ON, Material.LAMP_YELLOW_ON, Material.LAMP_GREEN_ON)[k]
                mats.append(lit if k == on else Material.LAMP_OFF)
                inst.append(sig.box_instance)
        n = len(centers)
        if n == 0:
            return Boxes.empty()
        return Boxes(np.array(centers, np.float64), np.tile([0.06, 0.13, 0.13], (n, 1)),
                     np.array(yaws), np.full(n, Tag.TRAFFIC_LIGHT, np.uint8),
                     np.array(inst, np.int32), np.array(mats, np.uint8),
                     np.zeros((n, 3), np.uint8))

    def poses(self) -> dict[int, tuple[float, float, float]]:
        """Instance id -> (x, y, yaw) of everything that moves."""
        out = {v.id: (v.x, v.y, v.yaw) for v in self.vehicles}
        out.update({p.id: (p.x, p.y, p.yaw) for p in self.pedestrians})
        return out


def box_points(x: float, y: float, yaw: float, half) -> np.ndarray:
    """(5, 2): the centre and the four footprint corners of a box."""
    c, s = math.cos(yaw), math.sin(yaw)
    hx, hy = half[0], half[1]
    local = ((0, 0), (hx, hy), (hx, -hy), (-hx, hy), (-hx, -hy))
    return np.array([(x + c * a - s * b, y + s * a + c * b) for a, b in local])


def vehicle_boxes(inst: int, tag: int, half, color, x: float, y: float, yaw: float) -> Boxes:
    """A vehicle as three boxes: chassis, painted body, and the glass cabin."""
    hx, hy, hz = half
    h = 2 * hz
    c, s = math.cos(yaw), math.sin(yaw)
    cabin_shift = -0.15 * hx if tag == Tag.CAR else 0.2 * hx
    rows = (  # local x offset, half x, half y, z bottom, z top, material
        (0.0, 0.85 * hx, 0.85 * hy, 0.05, 0.3, Material.METAL),
        (0.0, hx, hy, 0.3, 0.3 + 0.5 * (h - 0.3), Material.CAR_PAINT),
        (cabin_shift, 0.55 * hx if tag == Tag.CAR else 0.75 * hx, 0.9 * hy,
         0.3 + 0.5 * (h - 0.3), h, Material.CAR_WINDOW),
    )
    centers = np.array([(x + c * dx, y + s * dx, (z0 + z1) / 2) for dx, _, _, z0, z1, _ in rows])
    halves = np.array([(a, b, (z1 - z0) / 2) for _, a, b, z0, z1, _ in rows])
    return Boxes(centers, halves, np.full(3, yaw), np.full(3, tag, np.uint8),
                 np.full(3, inst, np.int32), np.array([r[5] for r in rows], np.uint8),
                 np.tile(np.asarray(color, np.uint8), (3, 1)))


def pedestrian_boxes(inst: int, color, x: float, y: float, yaw: float) -> Boxes:
    """A pedestrian as legs + torso + head."""
    centers = np.array([(x, y, 0.45), (x, y, 1.2), (x, y, 1.68)])
    halves = np.array([(0.14, 0.2, 0.45), (0.16, 0.25, 0.3), (0.11, 0.1, 0.12)])
    colors = np.array([(40, 40, 50), color, (200, 160, 130)], np.uint8)
    mats = np.array([Material.CLOTH, Material.CLOTH, Material.SKIN], np.uint8)
    return Boxes(centers, halves, np.full(3, yaw), np.full(3, Tag.PEDESTRIAN, np.uint8),
                 np.full(3, inst, np.int32), mats, colors)
