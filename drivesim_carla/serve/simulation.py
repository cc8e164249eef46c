"""The served simulation: actors, settings, weather and ticks of a `ServedWorld`, and the stream
messages each tick produces. It knows nothing about sockets: the network layer calls its
methods with checked arguments and hands each stream message to `emit` (by default collected in
`outbox`; the server sends them as they come)."""

from __future__ import annotations

import logging
import math
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import astuple, dataclass, replace

import msgpack
import numpy as np

from ..errors import DrivesimError
from ..scenarios import Scenario
from ..types import STREAMS, CameraSpec, Control, Frame, Transform
from ..vehicle import BicycleState
from ..world.embedded.backend import EGO_HALF
from . import payloads
from .blueprints import LIBRARY, PACKED, Blueprint, resolve
from .protocol import BadArgument, Description, EpisodeSettings, pack_token, pack_transform, token
from .state import Kinematics, actor_rows, bbox, light_rows, npc_actor_id, npc_actors
from .weather import carla_weather, embedded_weather
from .world import ServedWorld

log = logging.getLogger(__name__)

VERSION = "0.9.16"
SPECTATOR = 1  # actor id of the spectator
FIRST_CLIENT_ID = 2  # client-spawned actors count up from here
EPISODE_STREAM = 1  # stream id of the episode state; a sensor's stream id is its actor id
MAX_ACTORS = 10_000  # client-spawned actors alive at once
MAP_NAME = re.compile(r"(?:.*/)?Embedded(\d{1,9})$")
Message = tuple[int, list]  # stream id, buffers that make up the payload


@dataclass
class Actor:
    """A client-spawned actor."""

    id: int
    blueprint: Blueprint
    attributes: dict[str, str]
    parent: int = 0
    mount: Transform = Transform()  # relative to the parent; the world pose without one
    camera: CameraSpec | None = None  # cameras: the spec of their one stream
    sensor_tick: float = 0.0
    due: float = 0.0  # sim time of the next capture (sensor_tick > 0)

    @property
    def stream(self) -> str:
        return self.blueprint.kind

    def pack(self, stream_port: int) -> list:
        desc = [LIBRARY.index(self.blueprint), self.blueprint.id,
                [[a.id, int(a.type), self.attributes[a.id]] for a in self.blueprint.attributes]]
        is_vehicle = self.blueprint.id.startswith("vehicle.")
        half = EGO_HALF if is_vehicle else (0.0, 0.0, 0.0)
        sensor = self.blueprint.id.startswith("sensor.")
        return [self.id, self.parent, desc, bbox(self.id, half, half[2]),
                bytes([self.blueprint.tag]) if self.blueprint.tag else b"",
                token(self.id, stream_port) if sensor else b""]


class Simulation:
    """The server's state and its RPC operations (arguments already checked for shape)."""

    def __init__(self, scenario: Scenario, seed: int, *, style: str | None,
                 weather: str | None, stream_port: int):
        self.scenario, self.seed, self.style = scenario, seed, style
        self.stream_port = stream_port
        self.settings = EpisodeSettings()
        self.episode = 0
        self.frame, self.elapsed = 0, 0.0
        self.watched: Counter[int] = Counter()  # stream id -> subscribers (kept by the network)
        self.awaited: dict[int, float] = {}  # stream id -> when a client asked for its token
        self.outbox: list[Message] = []
        self.emit: Callable[[int, list], None] = lambda stream, buffers: self.outbox.append(
            (stream, buffers))
        self.actors: dict[int, Actor] = {}
        self.next_id = FIRST_CLIENT_ID
        self.spectator = Transform(0.0, 0.0, 80.0, -90.0, 0.0, 0.0)
        self.next_tick = time.monotonic()
        self._xodr: str | None = None
        self._load(scenario, weather)

    # ----- episodes -------------------------------------------------------------------------
    def _load(self, scenario: Scenario, weather: str | None) -> None:
        self.world = ServedWorld(scenario, self.seed, style=self.style, weather=weather)
        self.world.restart()
        self.scenario, self._xodr = scenario, None
        self.weather_params = carla_weather(self.world.weather)
        self.lights = light_rows(self.world)
        self._new_episode()
        self._warm_up()

    def _new_episode(self) -> None:
        self.episode += 1
        self.generation = 0
        self.kinematics, self.npc_kinematics = Kinematics(), Kinematics()
        self._map_changed = True

    def _warm_up(self) -> None:
        """Render one tiny frame so that the renderer's kernels are loaded before a client asks."""
        spec = CameraSpec("warm-up", 16, 16, streams=STREAMS)
        self.world.render(spec, Transform(z=50.0, pitch=-90.0), None, self.world.scene(True), None)

    @property
    def map_name(self) -> str:
        return self.world.map_name

    def map_info(self) -> list:
        g = self.world.graph
        points = []
        for seg, s in self.world.town.spawn_points:
            x, y, yaw = g.pose(seg, s)
            points.append(pack_transform(Transform(x, y, 0.0, 0.0, math.degrees(yaw), 0.0)))
        return [self.map_name, points]

    def map_data(self) -> str:
        if self._xodr is None:
            self._xodr = self.world.town.network.to_xodr()
        return self._xodr

    def available_maps(self) -> list[str]:
        seeds = sorted({*range(10), self.world.town.seed})
        return [f"/Game/Carla/Maps/Embedded{s:04d}" for s in seeds]

    def load_episode(self, name: str, reset_settings: bool) -> None:
        """`load_world` / `reload_world`: a fresh episode on an embedded town (by name)."""
        match = MAP_NAME.match(name)
        if name and match is None:
            raise BadArgument(f"map '{name}' not found; drivesim serve has the embedded towns "
                              "Embedded0000, Embedded0001, ... (any seed)")
        scenario = self.scenario
        if match is not None:
            town = scenario.town.model_copy(update={"seed": int(match.group(1))})
            scenario = scenario.model_copy(update={"town": town})
        self.actors.clear()
        if reset_settings:
            self.settings = EpisodeSettings()
        self._load(scenario, self.world.weather)

    # ----- settings and weather -------------------------------------------------------------
    @property
    def delta(self) -> float:
        return self.settings.fixed_delta_seconds or 1.0 / self.scenario.fps

    def set_settings(self, settings: EpisodeSettings) -> int:
        if settings.synchronous_mode != self.settings.synchronous_mode:
            log.info("synchronous mode %s", "on" if settings.synchronous_mode else "off")
        self.settings = settings
        self.next_tick = time.monotonic() + self.delta
        return self.frame

    def set_weather(self, params: dict[str, float]) -> None:
        self.weather_params = params
        name = embedded_weather(params, self.world.scenario.weather)
        if name != self.world.weather:
            log.info("weather %s", name)
            self.world.set_weather(name)

    # ----- actors ---------------------------------------------------------------------------
    def spawn(self, d: Description, pose: Transform, parent: int = 0) -> list:
        bp, attrs = resolve(d)
        if len(self.actors) >= MAX_ACTORS:
            raise BadArgument(f"too many actors (at most {MAX_ACTORS})")
        if parent and not bp.id.startswith("sensor."):
            raise BadArgument(f"only sensors can be attached to another actor, not '{bp.id}'")
        if parent and parent != SPECTATOR and not self._is_vehicle(parent):
            raise BadArgument(f"parent actor {parent} not found or not a vehicle")
        actor = Actor(self.next_id, bp, attrs, parent, pose)
        if bp.kind in STREAMS:
            actor.camera = _camera_spec(attrs, pose, bp.kind)
            actor.sensor_tick = _float(attrs, "sensor_tick", 0.0, 1e6)
        if bp.id.startswith("vehicle.") and not self._place_vehicle(actor, pose):
            raise BadArgument("Spawn failed because of collision at spawn position")
        self.next_id += 1
        self.actors[actor.id] = actor
        log.debug("spawned %s as actor %d", bp.id, actor.id)
        return actor.pack(self.stream_port)

    def _place_vehicle(self, actor: Actor, pose: Transform) -> bool:
        had_hero = self.world.hero is not None
        color = np.array([int(c) for c in actor.attributes["color"].split(",")], np.uint8)
        if not self.world.spawn(actor.id, actor.blueprint.tag, color, pose):
            return False
        if not had_hero and self.world.hero == actor.id:
            self.generation += 1  # the episode restarted around the hero: new NPCs
            self.npc_kinematics = Kinematics()
        return True

    def _is_vehicle(self, actor_id: int) -> bool:
        return actor_id in self.world.vehicles

    def destroy(self, actor_id: int) -> bool:
        actor = self.actors.pop(actor_id, None)
        if actor is None:
            raise BadArgument(f"actor {actor_id} not found")
        if actor_id in self.world.vehicles:
            self.world.destroy(actor_id)
        return True

    def actors_by_id(self, ids: list[int]) -> list:
        out = []
        npcs = npc_actors(self) if any(i not in self.actors for i in ids) else {}
        for i in ids:
            if i in self.actors:
                out.append(self.actors[i].pack(self.stream_port))
            elif i == SPECTATOR:
                out.append(self.spectator_actor())
            elif i in npcs:
                out.append(npcs[i])
        return out

    def bounding_box(self, actor_id: int) -> list:
        found = self.actors_by_id([actor_id])
        if not found:
            raise BadArgument(f"actor {actor_id} not found")
        return found[0][3]

    def spectator_actor(self) -> list:
        return [SPECTATOR, 0, [0, "spectator", []], bbox(SPECTATOR, (0.0, 0.0, 0.0), 0.0), b"",
                b""]

    def apply_control(self, actor_id: int, control: Control) -> None:
        if actor_id not in self.world.vehicles:
            raise BadArgument(f"actor {actor_id} is not a vehicle")
        self.world.vehicles[actor_id].control = control

    def set_transform(self, actor_id: int, pose: Transform) -> None:
        if actor_id == SPECTATOR:
            self.spectator = pose
        elif actor_id in self.world.vehicles:
            v = self.world.vehicles[actor_id].state.v
            self.world.teleport(actor_id, BicycleState(pose.x, pose.y, math.radians(pose.yaw), v))
        elif actor_id in self.actors:
            self.actors[actor_id].mount = pose
        else:
            raise BadArgument(f"actor {actor_id} not found")

    def set_location(self, actor_id: int, loc: tuple[float, float, float]) -> None:
        if actor_id == SPECTATOR:
            current = self.spectator
        elif actor_id in self.world.vehicles:
            current = self.world.vehicle_pose(actor_id)
        elif actor_id in self.actors:
            current = self.actors[actor_id].mount
        else:
            raise BadArgument(f"actor {actor_id} not found")
        self.set_transform(actor_id, replace(current, x=loc[0], y=loc[1], z=loc[2]))

    def set_velocity(self, actor_id: int, vector: tuple[float, float, float]) -> None:
        if actor_id not in self.world.vehicles:
            raise BadArgument(f"actor {actor_id} is not a vehicle")
        s = self.world.vehicles[actor_id].state
        speed = vector[0] * math.cos(s.yaw) + vector[1] * math.sin(s.yaw)
        self.world.teleport(actor_id, replace(s, v=speed))

    def sensor_token(self, stream_id: int) -> list:
        a = self.actors.get(stream_id)
        if stream_id != EPISODE_STREAM and (a is None or not a.blueprint.id.startswith("sensor.")):
            raise BadArgument(f"no sensor stream {stream_id}")
        if not self.watched[stream_id]:
            self.awaited[stream_id] = time.monotonic()
        return pack_token(stream_id, self.stream_port)

    def expecting(self, within: float) -> bool:
        """Whether a client asked for a stream token in the last `within` seconds and has not
        subscribed yet."""
        now = time.monotonic()
        self.awaited = {k: t for k, t in self.awaited.items()
                        if now - t < within and self.stream_exists(k)}
        return bool(self.awaited)

    def stream_exists(self, stream_id: int) -> bool:
        a = self.actors.get(stream_id)
        return stream_id == EPISODE_STREAM or (a is not None and a.camera is not None) or (
            a is not None and a.stream == "collision")

    def definitions(self) -> list:
        return PACKED

    # ----- ticks ----------------------------------------------------------------------------
    def due_in(self) -> float | None:
        """Seconds until the next tick of its own (asynchronous mode), None in synchronous mode."""
        if self.settings.synchronous_mode:
            return None
        return max(0.0, self.next_tick - time.monotonic())

    def tick_if_due(self) -> None:
        if not self.settings.synchronous_mode and time.monotonic() >= self.next_tick:
            self.next_tick = max(self.next_tick + self.delta, time.monotonic())
            self.tick()

    def tick(self) -> int:
        """Advance one fixed step; emit the episode state, collisions and camera images."""
        groups = self._camera_groups()
        before = {key: self.sensor_pose(sensors[0]) for key, sensors in groups.items()}
        self.world.dt = self.delta
        frame = self.world.step()
        self.frame += 1
        self.elapsed += self.delta
        self._publish_episode()
        self._publish_collisions(frame)
        if groups and not self.settings.no_rendering_mode:
            self._publish_cameras(groups, before)
        return self.frame

    def _camera_groups(self) -> dict[tuple, list[Actor]]:
        """Cameras that see the same (carrier, mount, size, fov, name) render once."""
        groups: dict[tuple, list[Actor]] = {}
        for a in self.actors.values():
            if a.camera is not None and self._attached(a):
                c = a.camera
                key = (a.parent, astuple(a.mount), c.width, c.height, c.fov, c.name)
                groups.setdefault(key, []).append(a)
        return groups

    def _attached(self, a: Actor) -> bool:
        return a.parent in (0, SPECTATOR) or a.parent in self.world.vehicles

    def sensor_pose(self, a: Actor) -> Transform:
        if a.parent == SPECTATOR:
            return self.spectator.compose(a.mount)
        if a.parent:
            return self.world.vehicle_pose(a.parent).compose(a.mount)
        return a.mount

    def _capturing(self, a: Actor) -> bool:
        """Whether the sensor has a listener and its sensor_tick is due."""
        if not self.watched[a.id]:
            return False
        if a.sensor_tick > 0.0:
            if self.elapsed + 1e-9 < a.due:
                return False
            a.due = self.elapsed + a.sensor_tick
        return True

    def _publish_cameras(self, groups: dict[tuple, list[Actor]], before: dict) -> None:
        """Render each group that has a capturing camera once, with the union of its streams."""
        live = {key: [a for a in sensors if self._capturing(a)] for key, sensors in groups.items()}
        live = {key: sensors for key, sensors in live.items() if sensors}
        if not live:
            return
        specs = {key: self._group_spec(sensors) for key, sensors in live.items()}
        scene = self.world.scene(motion=any("flow" in s.streams for s in specs.values()))
        for key, sensors in live.items():
            first = sensors[0]
            pose = self.sensor_pose(first)
            carrier = first.parent if first.parent in self.world.vehicles else None
            data = self.world.render(specs[key], pose, before.get(key), scene, carrier)
            for a in sensors:
                image_head, pixels = payloads.camera(a.stream, data)
                head = payloads.header(a.stream, self.frame, self.elapsed, pose)
                self.emit(a.id, [head, image_head, pixels])

    @staticmethod
    def _group_spec(sensors: list[Actor]) -> CameraSpec:
        wanted = {a.stream for a in sensors}
        if "instance" in wanted:
            wanted.add("semantic")  # the instance camera's red channel is the tag
        return replace(sensors[0].camera, streams=tuple(s for s in STREAMS if s in wanted))

    def _publish_collisions(self, frame: Frame) -> None:
        hits = [e for e in frame.events if e.kind == "collision"]
        hero = self.world.hero
        if not hits or hero is None:
            return
        npcs = npc_actors(self)
        for a in self.actors.values():
            if a.stream != "collision" or a.parent != hero or not self.watched[a.id]:
                continue
            pose = self.sensor_pose(a)
            yaw = math.radians(self.world.vehicle_pose(hero).yaw)
            for e in hits:
                other = (npcs.get(npc_actor_id(self.generation, e.other_id))
                         or _static_actor(e.other_type))
                impulse = [-e.impulse * math.cos(yaw), -e.impulse * math.sin(yaw), 0.0]
                body = msgpack.packb([self.actors[hero].pack(self.stream_port), other, impulse])
                self.emit(a.id, [payloads.header("collision", self.frame, self.elapsed, pose),
                                 body])

    def _publish_episode(self) -> None:
        if not self.watched[EPISODE_STREAM]:
            return
        state = actor_rows(self)
        head = payloads.header("episode", self.frame, self.elapsed, Transform())
        episode = payloads.episode_header(self.episode, time.time(), self.delta, self._map_changed)
        self._map_changed = False
        self.emit(EPISODE_STREAM, [head, episode, state.tobytes()])


def _camera_spec(attrs: dict[str, str], mount: Transform, stream: str) -> CameraSpec:
    try:
        return CameraSpec(attrs["role_name"] or "front", int(attrs["image_size_x"]),
                          int(attrs["image_size_y"]), float(attrs["fov"]), mount, (stream,))
    except DrivesimError as e:
        raise BadArgument(str(e)) from None


def _float(attrs: dict[str, str], name: str, lo: float, hi: float) -> float:
    value = float(attrs[name])
    if not lo <= value <= hi:
        raise BadArgument(f"attribute '{name}' must be between {lo:g} and {hi:g}")
    return value


def _static_actor(kind: str) -> list:
    """A collision with something that is not an actor (a wall, a pole, a parked car)."""
    type_id = kind if kind.startswith("static.") else f"static.{kind.replace('.', '_')}"
    return [0, 0, [0, type_id, []], bbox(0, (0.0, 0.0, 0.0), 0.0), b"", b""]
