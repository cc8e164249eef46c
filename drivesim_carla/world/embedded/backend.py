"""The embedded world: a procedural town, its traffic and cameras, needing nothing but this package."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from ...errors import DrivesimError
from ...route import RoadOption, Route, Waypoint
from ...scenarios import Scenario
from ...types import (
    ActorState,
    CameraData,
    CameraSpec,
    Control,
    EgoState,
    Event,
    Frame,
    TrafficLightState,
    Transform,
)
from ...vehicle import MASS, BicycleState, step_bicycle
from ..base import World
from .collision import obb_overlap
from .scene import DRIVABLE, Boxes, Ground, Town
from .traffic import FIRST_ACTOR_ID, LaneGraph, Traffic

log = logging.getLogger(__name__)

EGO_HALF = (2.35, 1.0, 0.75)
EGO_ID = FIRST_ACTOR_ID - 1
CONTACT_MARGIN = 0.3  # m
PEDESTRIAN_HALF = (0.3, 0.3, 0.9)
ARRIVAL = 1.0  # m: within this of the route's end counts as arrived
ACTOR_RADIUS = 80.0  # m: actors reported in the frame
DEMAND_AHEAD = 40.0  # m: the ego calls its green this far before a stop line
MARKINGS = {
    Ground.LANE_WHITE_BROKEN: "broken_white", Ground.LANE_WHITE_SOLID: "solid_white",
    Ground.LANE_YELLOW_SOLID: "solid_yellow", Ground.STOP_LINE: "stop_line",
    Ground.CROSSWALK: "crosswalk",
}


@dataclass
class Scene:
    """The moving part of one frame, as the renderer takes it."""

    dynamic: Boxes  # vehicles, pedestrians, lit lamps
    motion: dict[int, np.ndarray] | None  # instance -> 4x4 now -> one frame ago (None: no past)
    headlights: np.ndarray | None  # (n 4) x, y, z, yaw of each vehicle with lights on


def _matrix(x: float, y: float, yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    m = np.eye(4)
    m[:2, :2] = ((c, -s), (s, c))
    m[:2, 3] = (x, y)
    return m


class EmbeddedWorld(World):
    """`World` backend of the built-in town. Deterministic: the same seed and the same controls
    give bit-identical frames."""

    name = "embedded"

    def __init__(self, scenario: Scenario, seed: int = 0, *, cameras: list[CameraSpec] | None = None,
                 style: str | None = None, weather: str | None = None):
        from .render import STYLES, WEATHERS

        self.scenario = scenario
        self.seed = seed
        self.style = style or scenario.style
        self.weather = weather or scenario.weather
        for kind, value, valid in (("style", self.style, STYLES), ("weather", self.weather, WEATHERS)):
            if value not in valid:
                raise DrivesimError(f"unknown {kind} '{value}'; valid: {', '.join(sorted(valid))}")
        self.cameras = scenario.camera_specs() if cameras is None else list(cameras)
        self.fps = scenario.fps
        self.dt = 1.0 / scenario.fps
        self.town: Town | None = None
        self.renderer = None
        self._renderer_key = None

    # ----- episode --------------------------------------------------------------------------
    def reset(self, seed: int | None = None, *, start: Transform | None = None) -> Frame:
        """Start an episode with the ego at a seeded spawn point, or at `start` (x, y and yaw
        count; a pose within 1 cm and 0.1 degrees of a spawn point is that spawn point, so the
        seeded spawn point given as `start` gives the same episode as no `start`)."""
        from .town import build_town

        if seed is not None:
            self.seed = seed
        town_seed = self.scenario.town.seed if self.scenario.town.seed is not None else self.seed
        self.town = build_town(town_seed, tuple(self.scenario.town.blocks))
        self.map_name = self.town.name
        self.graph = LaneGraph(self.town.lanes)
        rng = np.random.default_rng([self.seed, 7919])
        seg, s = self.town.spawn_points[int(rng.integers(len(self.town.spawn_points)))]
        x, y, yaw = self.graph.pose(seg, s)
        if start is not None:
            seg, s, (x, y, yaw) = self._place(start)
        self.route = plan_route(self.town, self.graph, seg, s, self.scenario.ego.route_length, rng)
        self.ego = BicycleState(x, y, yaw, 0.0)
        t = self.scenario.traffic
        self.traffic = Traffic(self.town, self.graph, rng, vehicles=t.vehicles, parked=t.parked,
                               pedestrians=t.pedestrians, jaywalkers=t.jaywalkers, avoid=(x, y),
                               speed_limit=self.scenario.ego.target_speed / 3.6)
        self._static_obstacles = self._collect_static()
        if self.cameras:
            self._make_renderer()
        self.frame_id = 0
        self.time = 0.0
        self.progress = 0.0
        self.control = Control()
        self.contacts: set[int] = set()
        self.wheel_lanes = self._wheel_lanes()
        self.off_road = False
        self.prev_poses: dict[int, tuple[float, float, float]] | None = None
        self.prev_cams: dict[str, Transform] = {}
        return self._frame([])

    def _place(self, start: Transform) -> tuple[int, float, tuple[float, float, float]]:
        """Lane segment, distance along it and exact pose (x, y, yaw rad) for a start pose: a
        spawn point it matches, else the nearest lane point heading within 90 degrees of it."""
        yaw = math.radians(start.yaw)
        for seg, s in self.town.spawn_points:
            x, y, h = self.graph.pose(seg, s)
            turn = abs(math.remainder(h - yaw, 2 * math.pi))
            if math.hypot(x - start.x, y - start.y) < 0.01 and turn < math.radians(0.1):
                return seg, s, (x, y, h)
        best = (math.inf, 0, 0.0)
        for seg, lane in self.town.lanes.items():
            d = np.hypot(lane.points[:, 0] - start.x, lane.points[:, 1] - start.y)
            k = int(np.argmin(d))
            h = self.graph.pose(seg, float(self.graph.s[seg][k]))[2]
            if d[k] < best[0] and abs(math.remainder(h - yaw, 2 * math.pi)) < math.pi / 2:
                best = (float(d[k]), seg, float(self.graph.s[seg][k]))
        return best[1], best[2], (start.x, start.y, math.atan2(math.sin(yaw), math.cos(yaw)))

    def tick(self, control: Control) -> Frame:
        if self.town is None:
            raise DrivesimError("call reset() before tick()")
        self.control = control.clipped()
        self.prev_poses = self.traffic.poses()
        self.prev_cams = {c.name: self._camera_pose(c) for c in self.cameras}
        before = self.ego
        self.ego = step_bicycle(self.ego, self.control, self.dt)
        self.frame_id += 1
        self.time = self.frame_id * self.dt
        events = self._collisions(before)
        self._step_traffic()
        events += self._lane_events()
        self.progress = self.route.project(self.ego.x, self.ego.y, hint=self.progress)
        return self._frame(events)

    # ----- traffic --------------------------------------------------------------------------
    def _step_traffic(self) -> None:
        tr = self.traffic
        demand = tr.demand()
        occupied = tr.occupied_junctions()
        wp = self.route.waypoints[self.route.index_at(self.progress)]
        if wp.junction_id >= 0:
            occupied.add(wp.junction_id)
        nxt = self._next_signal(DEMAND_AHEAD)
        if nxt is not None:
            demand.add(nxt[0])
        tr.signals.step(self.dt, demand, occupied)
        tr.light_state = tr.signals.states()
        ego = (self.ego.x, self.ego.y, self.ego.yaw, abs(self.ego.v))
        tr.step_vehicles(self.dt, ego, EGO_HALF)
        tr.step_pedestrians(self.dt)

    def _next_signal(self, within: float) -> tuple[int, float] | None:
        """The next traffic light on the route within `within` metres: (id, distance)."""
        i = self.route.index_at(self.progress)
        for w in self.route.waypoints[i:]:
            if w.s - self.progress > within:
                return None
            if w.signal_id is not None:
                return w.signal_id, w.s - self.progress
        return None

    # ----- collisions and lane events -------------------------------------------------------
    def _collect_static(self) -> Boxes:
        """Static things the ego can hit: everything on the ground below car height."""
        b = Boxes.concat([self.town.static, self.traffic.parked])
        low = (b.center[:, 2] - b.half[:, 2]) < 1.5
        idx = np.where(low)[0]
        return Boxes(*(getattr(b, f)[idx] for f in Boxes._fields()))

    def _collisions(self, before: BicycleState) -> list[Event]:
        """Collision events at the onset of each contact. Contact persists while the object stays
        within CONTACT_MARGIN of the ego, so a car pushing against a wall reports it once."""
        e = self.ego
        center, half = np.array([e.x, e.y]), np.array(EGO_HALF[:2])
        touching = self._overlapping(center, half + CONTACT_MARGIN, e.yaw)
        hits = {k: v for k, v in touching.items() if self._touches(k, center, half, e.yaw)}
        events = [Event("collision", self.frame_id, inst, kind, MASS * abs(before.v), (e.x, e.y))
                  for inst, kind in sorted(hits.items()) if inst not in self.contacts]
        self.contacts = {k for k in touching if k in hits or k in self.contacts}
        if hits:  # a hard contact stops the ego where it was
            self.ego = BicycleState(before.x, before.y, before.yaw, 0.0)
        return events

    def _touches(self, inst: int, center: np.ndarray, half: np.ndarray, yaw: float) -> bool:
        """Whether the ego box overlaps any box of object `inst` (one of the few already near)."""
        st = self._static_obstacles
        rows = np.where(st.instance == inst)[0]
        if len(rows):
            return bool(obb_overlap(center, half, yaw, st.center[rows, :2], st.half[rows, :2],
                                    st.yaw[rows]).any())
        mover = next(m for m in self._movers() if m[0] == inst)
        return bool(obb_overlap(center, half, yaw, np.array([mover[1:3]]),
                                np.array([mover[4][:2]]), np.array([mover[3]]))[0])

    def _movers(self) -> list[tuple]:
        """(id, x, y, yaw, half, kind) of every vehicle and pedestrian."""
        out = [(v.id, v.x, v.y, v.yaw, v.half, v.kind) for v in self.traffic.vehicles]
        out += [(p.id, p.x, p.y, p.yaw, PEDESTRIAN_HALF, "walker.pedestrian")
                for p in self.traffic.pedestrians]
        return out

    def _overlapping(self, center: np.ndarray, half: np.ndarray, yaw: float) -> dict[int, str]:
        """Instance id -> kind of everything the box (center, half, yaw) overlaps."""
        hits: dict[int, str] = {}
        st = self._static_obstacles
        reach = np.hypot(*st.half[:, :2].T) + np.hypot(*half) + 1.0
        near = np.where(np.hypot(*(st.center[:, :2] - center).T) < reach)[0]
        if len(near):
            mask = obb_overlap(center, half, yaw, st.center[near, :2], st.half[near, :2],
                               st.yaw[near])
            for k in near[mask]:
                inst = int(st.instance[k])
                hits[inst] = self.town.static_kind.get(inst, "vehicle.parked")
        movers = self._movers()
        if movers:
            arr = np.array([m[1:4] for m in movers])
            halves = np.array([m[4][:2] for m in movers])
            idx = np.where(np.hypot(arr[:, 0] - center[0], arr[:, 1] - center[1]) < 12.0)[0]
            if len(idx):
                mask = obb_overlap(center, half, yaw, arr[idx, :2], halves[idx], arr[idx, 2])
                for k in idx[mask]:
                    hits[movers[k][0]] = movers[k][5]
        return hits

    def _wheel_points(self) -> np.ndarray:
        e = self.ego
        c, s = math.cos(e.yaw), math.sin(e.yaw)
        local = ((1.45, -0.85), (1.45, 0.85), (-1.45, -0.85), (-1.45, 0.85))
        return np.array([(e.x + c * a - s * b, e.y + s * a + c * b) for a, b in local])

    def _wheel_lanes(self) -> np.ndarray:
        g = self.town.ground
        w = self._wheel_points()
        i, j, inside = g.cell(w[:, 0], w[:, 1])
        return np.where(inside, g.lane[i, j], -1)

    def _lane_events(self) -> list[Event]:
        events = []
        lanes = self._wheel_lanes()
        crossed = (self.wheel_lanes >= 0) & (lanes >= 0) & (lanes != self.wheel_lanes)
        if crossed[:2].any():  # front wheels, as CARLA's lane-invasion sensor
            k = int(np.argmax(crossed[:2]))
            a, b = int(self.wheel_lanes[k]), int(lanes[k])
            seg_a = self.town.lanes.get(a)
            if seg_a is None or b not in seg_a.successors:
                events.append(Event("lane_invasion", self.frame_id, b, self._marking_between(k),
                                    location=(self.ego.x, self.ego.y)))
        self.wheel_lanes = lanes
        w = self._wheel_points()
        mats = self.town.ground.material_at(w[:, 0], w[:, 1])
        off = not DRIVABLE[mats].all()
        if off and not self.off_road:
            events.append(Event("off_road", self.frame_id, 0, "off_road",
                                location=(self.ego.x, self.ego.y)))
        self.off_road = off
        return events

    def _marking_between(self, wheel: int) -> str:
        """The lane marking under the path of a front wheel during the last tick."""
        w = self._wheel_points()[wheel]
        back = np.array([math.cos(self.ego.yaw), math.sin(self.ego.yaw)]) * abs(self.ego.v) * self.dt
        ts = np.linspace(0.0, 1.0, 12)[:, None]
        pts = w - ts * back
        mats = self.town.ground.material_at(pts[:, 0], pts[:, 1])
        for m in mats:
            if int(m) in MARKINGS:
                return MARKINGS[Ground(int(m))]
        return "none"

    # ----- rendering ------------------------------------------------------------------------
    def _make_renderer(self) -> None:
        """(Re)build the renderer when the static scene or its look changed; the static scene is
        baked once per town, seed, parked cars, style and weather."""
        from .render import Renderer

        key = (self.town.seed, self.seed, self.style, self.weather,
               self.traffic.parked.center.tobytes())
        if self._renderer_key != key:
            static = Boxes.concat([self.town.static, self.traffic.parked])
            self.renderer = Renderer(self.town.ground, static, self.town.lights, style=self.style,
                                     weather=self.weather, seed=self.seed)
            self._renderer_key = key

    def _camera_pose(self, spec: CameraSpec) -> Transform:
        ego = Transform(self.ego.x, self.ego.y, 0.0, 0.0, math.degrees(self.ego.yaw), 0.0)
        return ego.compose(spec.mount)

    def _render(self) -> dict[str, CameraData]:
        if not self.cameras:
            return {}
        scene = self._scene(motion=any("flow" in spec.streams for spec in self.cameras))
        return {spec.name: self._render_camera(spec, self._camera_pose(spec),
                                               self.prev_cams.get(spec.name), scene)
                for spec in self.cameras}

    def _scene(self, motion: bool = True) -> Scene:
        """What moves in this frame: the traffic's boxes, their motion since the last frame (for
        optical flow; skipped without `motion`) and the headlights (ego first)."""
        motion_objects = None
        if motion and self.prev_poses is not None:
            now = self.traffic.poses()
            motion_objects = {k: _matrix(*self.prev_poses[k]) @ np.linalg.inv(_matrix(*p))
                              for k, p in now.items() if k in self.prev_poses}
        headlights = None
        if self.weather in ("night", "dusk", "rain", "fog"):
            rows = [(self.ego.x, self.ego.y, 0.7, self.ego.yaw)]
            rows += [(v.x, v.y, 0.7, v.yaw) for v in self.traffic.vehicles]
            headlights = np.array(rows, np.float64)
        return Scene(self.traffic.boxes(), motion_objects, headlights)

    def _render_camera(self, spec: CameraSpec, pose: Transform, prev_pose: Transform | None,
                       scene: Scene) -> CameraData:
        """One camera at world pose `pose` (`prev_pose`: where it was one frame ago, for flow)."""
        from .render import Motion

        if self.renderer is None:
            self._make_renderer()
        motion = None
        if scene.motion is not None and prev_pose is not None:
            motion = Motion(prev_pose, scene.motion)
        images = self.renderer.render(spec, pose, scene.dynamic, frame=self.frame_id,
                                      streams=spec.streams, motion=motion,
                                      headlights=scene.headlights)
        return CameraData(spec, pose, **images)

    # ----- frame ----------------------------------------------------------------------------
    def _frame(self, events: list[Event]) -> Frame:
        e = self.ego
        vel = (e.v * math.cos(e.yaw), e.v * math.sin(e.yaw), 0.0)
        length = max(self.route.length, 1e-9)
        ego = EgoState(
            transform=Transform(e.x, e.y, 0.0, 0.0, math.degrees(e.yaw), 0.0),
            velocity=vel, speed=abs(e.v), control=self.control, route_progress=self.progress,
            route_completion=1.0 if length - self.progress < ARRIVAL else self.progress / length,
            extent=EGO_HALF,
        )
        return Frame(self.frame_id, self.time, ego, self._render(), events, self._actors(),
                     self._lights())

    def _actors(self) -> list[ActorState]:
        out = []
        ex, ey = self.ego.x, self.ego.y
        for v in self.traffic.vehicles:
            if math.hypot(v.x - ex, v.y - ey) < ACTOR_RADIUS:
                out.append(ActorState(v.id, "vehicle",
                                      Transform(v.x, v.y, 0.0, 0.0, math.degrees(v.yaw), 0.0),
                                      (v.v * math.cos(v.yaw), v.v * math.sin(v.yaw), 0.0), v.half))
        for p in self.traffic.pedestrians:
            if math.hypot(p.x - ex, p.y - ey) < ACTOR_RADIUS:
                speed = p.speed
                out.append(ActorState(p.id, "pedestrian",
                                      Transform(p.x, p.y, 0.0, 0.0, math.degrees(p.yaw), 0.0),
                                      (speed * math.cos(p.yaw), speed * math.sin(p.yaw), 0.0),
                                      PEDESTRIAN_HALF))
        return out

    def _lights(self) -> dict[int, TrafficLightState]:
        return {k: TrafficLightState(k, st, self.town.signals[k].stop_line)  # type: ignore[arg-type]
                for k, st in self.traffic.light_state.items()}



def plan_route(town: Town, graph: LaneGraph, seg: int, s: float, length: float,
               rng: np.random.Generator) -> Route:
    """A seeded random drive along the lane graph from (seg, s) for at least `length` metres,
    avoiding immediate U-turn loops; waypoints every metre."""
    chain = [seg]
    total = graph.length(seg) - s
    while total < length:
        succ = town.lanes[chain[-1]].successors
        if not succ:
            break
        nxt = succ[int(rng.integers(len(succ)))]
        chain.append(nxt)
        total += graph.length(nxt)
    waypoints: list[Waypoint] = []
    acc = 0.0
    for k, seg_id in enumerate(chain):
        lane = town.lanes[seg_id]
        ss = graph.s[seg_id]
        start = s if k == 0 else 0.0
        for d in np.arange(start, ss[-1], 1.0):
            x, y, yaw = graph.pose(seg_id, float(d))
            option = RoadOption.LANEFOLLOW
            if lane.junction_id >= 0:
                option = {"left": RoadOption.LEFT, "right": RoadOption.RIGHT}.get(
                    lane.turn, RoadOption.STRAIGHT)
            waypoints.append(Waypoint(x, y, math.degrees(yaw), acc + d - start, lane.road_id,
                                      lane.lane_id, seg_id, lane.junction_id, option, None,
                                      lane.speed_limit))
        acc += ss[-1] - start
        if lane.signal_id is not None:  # the stop line sits at the end of this segment
            x, y, yaw = graph.pose(seg_id, float(ss[-1]))
            waypoints.append(Waypoint(x, y, math.degrees(yaw), acc, lane.road_id, lane.lane_id,
                                      seg_id, -1, RoadOption.LANEFOLLOW, lane.signal_id,
                                      lane.speed_limit))
    if len(waypoints) < 2:
        raise DrivesimError("could not plan a route in this town; try another --seed")
    # keep s strictly increasing (a stop-line waypoint can coincide with the next start)
    ws, last = [], -1.0
    for w in waypoints:
        if w.s > last + 1e-6:
            ws.append(w)
            last = w.s
    return Route(ws)
