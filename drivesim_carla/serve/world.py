"""`ServedWorld`: the embedded world with vehicles that clients spawn and drive.

The first client vehicle (the hero) is the embedded ego: it has the ego's collisions, NPC traffic
keeps its distance from it, and spawning it restarts the episode around it exactly as
`EmbeddedWorld.reset(seed, start=pose)` does, so the same seed and the same start give the same
frames through either backend. Further client vehicles are kinematic bicycles that the cameras
see (no collisions, NPCs do not yield to them). While no client vehicle exists the ego waits far
outside the town.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from ..types import CameraData, CameraSpec, Control, Frame, Transform
from ..vehicle import BicycleState, step_bicycle
from ..world.embedded.backend import EGO_HALF, EmbeddedWorld, Scene, _matrix
from ..world.embedded.collision import obb_overlap
from ..world.embedded.scene import Boxes
from ..world.embedded.traffic import vehicle_boxes

PARKED = 1.0e6  # metres along x and y: where the ego waits while no client drives it
CLIENT_INSTANCE = 50_000_000  # render instance id of a client vehicle: this + its actor id


@dataclass
class ClientVehicle:
    id: int
    tag: int
    color: np.ndarray
    state: BicycleState
    control: Control = field(default_factory=Control)
    prev: tuple[float, float, float] | None = None  # x, y, yaw one tick ago

    @property
    def instance(self) -> int:
        return CLIENT_INSTANCE + self.id


class ServedWorld(EmbeddedWorld):
    """The embedded world driven through `spawn`, `control`, `step` and `destroy`."""

    def __init__(self, scenario, seed: int = 0, *, style: str | None = None,
                 weather: str | None = None):
        super().__init__(scenario, seed, cameras=[], style=style, weather=weather)
        self.vehicles: dict[int, ClientVehicle] = {}  # in spawn order
        self.hero: int | None = None

    # ----- episode --------------------------------------------------------------------------
    def restart(self, start: Transform | None = None) -> None:
        """A new episode: with the ego at `start`, or without a hero (the ego parked away)."""
        self.reset(start=start)
        self.vehicles, self.hero = {}, None
        if start is None:
            self._park()
        self._make_renderer()

    def _park(self) -> None:
        self.ego = BicycleState(PARKED, PARKED, 0.0, 0.0)
        self.contacts = set()
        self.wheel_lanes = self._wheel_lanes()

    def spawn(self, vid: int, tag: int, color: np.ndarray, pose: Transform) -> bool:
        """Place a client vehicle; False (and nothing placed) where it would overlap something.
        The first vehicle restarts the episode around it."""
        if not self.vehicles:
            self.restart(pose)
            if self._blocked(self.ego, None):
                self.restart()
                return False
            self.hero = vid
            state = self.ego
        else:
            state = BicycleState(pose.x, pose.y, math.radians(pose.yaw), 0.0)
            if self._blocked(state, None):
                return False
        self.vehicles[vid] = ClientVehicle(vid, tag, color, state)
        return True

    def destroy(self, vid: int) -> None:
        """Remove a client vehicle; the next one becomes the hero when the hero goes."""
        self.vehicles.pop(vid, None)
        if vid != self.hero:
            return
        self.hero = next(iter(self.vehicles), None)
        if self.hero is None:
            self._park()
        else:
            self.teleport(self.hero, self.vehicles[self.hero].state)

    def teleport(self, vid: int, state: BicycleState) -> None:
        self.vehicles[vid].state = state
        if vid == self.hero:
            self.ego = state
            self.contacts = set()
            self.wheel_lanes = self._wheel_lanes()

    def _blocked(self, s: BicycleState, skip: int | None) -> bool:
        center, half = np.array([s.x, s.y]), np.array(EGO_HALF[:2])
        if self._overlapping(center, half, s.yaw):
            return True
        others = [v.state for k, v in self.vehicles.items() if k != skip]
        if not others:
            return False
        xy = np.array([(o.x, o.y) for o in others])
        return bool(obb_overlap(center, half, s.yaw, xy, np.tile(half, (len(others), 1)),
                                np.array([o.yaw for o in others])).any())

    # ----- ticks ----------------------------------------------------------------------------
    def step(self) -> Frame:
        """One tick of `dt`: the hero through the embedded world, the others as bicycles."""
        for v in self.vehicles.values():
            v.prev = (v.state.x, v.state.y, v.state.yaw)
            if v.id != self.hero:
                v.state = step_bicycle(v.state, v.control, self.dt)
        hero = self.vehicles.get(self.hero) if self.hero is not None else None
        frame = self.tick(hero.control if hero is not None else Control())
        if hero is not None:
            hero.state = self.ego
        return frame

    # ----- rendering ------------------------------------------------------------------------
    def _scene(self, motion: bool = True) -> Scene:
        """The embedded scene plus every client vehicle (cameras leave out their own)."""
        scene = super()._scene(motion)
        if not self.vehicles:
            return scene
        vs = list(self.vehicles.values())
        boxes = [vehicle_boxes(v.instance, v.tag, EGO_HALF, v.color, v.state.x, v.state.y,
                               v.state.yaw) for v in vs]
        motion = scene.motion
        if motion is not None:
            motion = dict(motion)
            for v in vs:
                if v.prev is not None:
                    motion[v.instance] = _matrix(*v.prev) @ np.linalg.inv(
                        _matrix(v.state.x, v.state.y, v.state.yaw))
        headlights = scene.headlights
        if headlights is not None:
            rows = [(v.state.x, v.state.y, 0.7, v.state.yaw) for v in vs if v.id != self.hero]
            headlights = np.vstack([headlights, np.array(rows, np.float64).reshape(-1, 4)])
        return Scene(Boxes.concat([scene.dynamic, *boxes]), motion, headlights)

    def scene(self, motion: bool) -> Scene:
        """This tick's moving things for `render` (with their motion for optical flow)."""
        return self._scene(motion)

    def set_weather(self, name: str) -> None:
        """Switch to another embedded weather (rebuilds the renderer's baked light)."""
        self.weather = name
        self._make_renderer()

    def render(self, spec: CameraSpec, pose: Transform, prev_pose: Transform | None,
               scene: Scene, carrier: int | None) -> CameraData:
        """One camera at `pose`; `carrier`: the client vehicle it rides on (not drawn)."""
        if carrier in self.vehicles:
            keep = scene.dynamic.instance != self.vehicles[carrier].instance
            dynamic = Boxes(*(getattr(scene.dynamic, f)[keep] for f in Boxes._fields()))
            scene = replace(scene, dynamic=dynamic)
        return self._render_camera(spec, pose, prev_pose, scene)

    def vehicle_pose(self, vid: int) -> Transform:
        s = self.vehicles[vid].state
        return Transform(s.x, s.y, 0.0, 0.0, math.degrees(s.yaw), 0.0)
