"""A stand-in for the `carla` module: the real client's value types (Location, Transform, Map ...)
around a fake in-process server, so that `CarlaWorld`'s bookkeeping (synchronous mode, sensor
queues, frame matching, cleanup) is testable in milliseconds without a server.

Install with `monkeypatch.setitem(sys.modules, "carla", fake_carla.module(server))`.
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass, field

import carla as real
import numpy as np

CAMERAS = {"sensor.camera.rgb", "sensor.camera.semantic_segmentation", "sensor.camera.depth",
           "sensor.camera.instance_segmentation", "sensor.camera.optical_flow"}
BLUEPRINTS = sorted(CAMERAS | {"sensor.other.collision", "sensor.other.lane_invasion",
                                "vehicle.tesla.model3", "vehicle.audi.tt"})


@dataclass
class Settings:
    synchronous_mode: bool = False
    fixed_delta_seconds: float | None = None
    no_rendering_mode: bool = False
    substepping: bool = True
    max_substep_delta_time: float = 0.01
    max_substeps: int = 10


class Attribute:
    def __init__(self, value: str):
        self.value = value
        self.recommended_values: list[str] = []

    def as_str(self) -> str:
        return self.value


class Blueprint:
    def __init__(self, id: str):
        self.id = id
        self.attrs = {"role_name": Attribute("")}
        if id.startswith("sensor.camera"):
            self.attrs.update({k: Attribute(v) for k, v in
                               (("image_size_x", "800"), ("image_size_y", "600"), ("fov", "90"),
                                ("sensor_tick", "0"))})
        if id.startswith("vehicle."):
            self.attrs["number_of_wheels"] = Attribute("4")

    def has_attribute(self, k: str) -> bool:
        return k in self.attrs

    def get_attribute(self, k: str) -> Attribute:
        return self.attrs[k]

    def set_attribute(self, k: str, v: str) -> None:
        self.attrs[k].value = v


class Library:
    def __init__(self, ids: list[str]):
        self.bps = {i: Blueprint(i) for i in ids}

    def find(self, id: str) -> Blueprint:
        if id not in self.bps:
            raise IndexError(f"blueprint '{id}' not found")
        return self.bps[id]

    def filter(self, pattern: str) -> list[Blueprint]:
        import fnmatch

        return [b for i, b in self.bps.items() if fnmatch.fnmatch(i, pattern)]


@dataclass
class Data:
    frame: int
    transform: object
    width: int = 0
    height: int = 0
    raw_data: bytes = b""
    other_actor: object = None
    normal_impulse: object = None
    crossed_lane_markings: list = field(default_factory=list)


class Actor:
    def __init__(self, server: Server, id: int, bp: Blueprint, tf, parent: Actor | None):
        self.server, self.id, self.type_id, self.parent = server, id, bp.id, parent
        self.attributes = {k: a.value for k, a in bp.attrs.items()}
        self.tf, self.v = tf, 0.0
        self.bounding_box = real.BoundingBox(real.Location(), real.Vector3D(2.4, 1.0, 0.75))
        self.callback = None
        self.log = server.log

    def destroy(self) -> bool:
        if self.callback is not None:
            self.log.append(("destroyed while listening", self.id))
        self.server.actors.pop(self.id)
        self.log.append(("destroy", self.id))
        if self.server.on_destroy is not None:
            self.server.on_destroy(self)
        return True

    def listen(self, cb) -> None:
        self.callback = cb

    def stop(self) -> None:
        self.callback = None

    def get_transform(self):
        return self.tf

    def get_velocity(self):
        yaw = math.radians(self.tf.rotation.yaw)
        return real.Vector3D(self.v * math.cos(yaw), self.v * math.sin(yaw), 0.0)

    def apply_control(self, c) -> None:
        self.control = c


class Snapshot:
    def __init__(self, frame: int, elapsed: float, actors: list[Actor]):
        self.frame = frame
        self.timestamp = types.SimpleNamespace(elapsed_seconds=elapsed)
        self._actors = actors

    def __iter__(self):
        return iter(self._actors)

    def find(self, id: int):
        return next((a for a in self._actors if a.id == id), None)


class Server:
    """The fake simulator: one world, actors, synchronous ticking, sensor delivery."""

    def __init__(self, carla_map, *, version: str = "0.9.16", blueprints: list[str] = BLUEPRINTS):
        self.map, self.version = carla_map, version
        self.settings = Settings()
        self.library = Library(blueprints)
        self.actors: dict[int, Actor] = {}
        self.next_id, self.frame, self.elapsed = 100, 1000, 0.0
        self.log: list[tuple] = []
        self.silent: set[str] = set()  # blueprint ids whose sensors never deliver
        self.stale: set[str] = set()  # blueprint ids that first deliver the previous frame
        self.broken: set[str] = set()  # blueprint ids whose images are cut short
        self.fail_tick_at: int | None = None  # frame at which tick() raises RuntimeError
        self.on_destroy = None  # called on each destroy (e.g. to send SIGINT)

    # world API
    def spawn(self, bp, tf, parent=None) -> Actor:
        self.next_id += 1
        a = Actor(self, self.next_id, bp, tf, parent)
        self.actors[a.id] = a
        return a

    def tick(self) -> int:
        if self.fail_tick_at is not None and self.frame + 1 >= self.fail_tick_at:
            raise RuntimeError("time-out of 10000ms while waiting for the simulator")
        dt = self.settings.fixed_delta_seconds or 0.05
        self.frame += 1
        self.elapsed += dt
        for a in self.actors.values():
            self._move(a, dt)
        for a in list(self.actors.values()):
            self._deliver(a)
        return self.frame

    def _move(self, a: Actor, dt: float) -> None:
        c = getattr(a, "control", None)
        if c is None or a.parent is not None:
            return
        a.v = max(0.0, a.v + (4.0 * c.throttle - 8.0 * c.brake) * dt)
        yaw = math.radians(a.tf.rotation.yaw)
        loc = a.tf.location
        a.tf = real.Transform(real.Location(loc.x + a.v * dt * math.cos(yaw),
                                            loc.y + a.v * dt * math.sin(yaw), loc.z), a.tf.rotation)

    def _deliver(self, a: Actor) -> None:
        if a.callback is None or a.type_id not in CAMERAS or a.type_id in self.silent:
            return
        w, h = int(a.attributes["image_size_x"]), int(a.attributes["image_size_y"])
        tf = a.parent.tf  # the ego's pose stands in for the camera's
        frames = [self.frame - 1, self.frame] if a.type_id in self.stale else [self.frame]
        for f in frames:
            payload = self._payload(a.type_id, w, h, f)
            if a.type_id in self.broken:
                payload = payload[: len(payload) // 2]
            a.callback(Data(f, tf, w, h, payload))

    @staticmethod
    def _payload(type_id: str, w: int, h: int, frame: int) -> bytes:
        """Flow (0.5, 0.5) everywhere; BGRA with red 7 (tag 7, depth code 7) and green = the
        frame's low byte (so a test can tell which frame an image came from)."""
        if type_id.endswith("optical_flow"):
            return np.full((h, w, 2), 0.5, np.float32).tobytes()
        px = np.zeros((h, w, 4), np.uint8)
        px[..., 2] = 7
        px[..., 1] = frame % 256
        return px.tobytes()

    def collide(self, ego: Actor, other: Actor, impulse: float, frame: int | None = None) -> None:
        for a in self.actors.values():
            if a.type_id == "sensor.other.collision" and a.callback is not None:
                a.callback(Data(frame or self.frame, ego.tf, other_actor=other,
                                normal_impulse=real.Vector3D(impulse, 0.0, 0.0)))


def module(server: Server) -> types.ModuleType:
    """A `carla` module whose Client talks to `server`."""
    m = types.ModuleType("carla")
    for name in ("Location", "Rotation", "Transform", "Vector3D", "BoundingBox", "LaneType",
                 "VehicleControl", "WeatherParameters", "LaneMarkingType", "LaneMarkingColor"):
        setattr(m, name, getattr(real, name))

    class World:
        def get_map(self):
            return server.map

        def get_settings(self):
            return Settings(**vars(server.settings))

        def apply_settings(self, s) -> int:
            server.settings = Settings(**vars(s))
            server.log.append(("settings", s.synchronous_mode))
            return server.frame

        def set_weather(self, w) -> None:
            server.weather = w

        def get_blueprint_library(self):
            return server.library

        def spawn_actor(self, bp, tf, attach_to=None):
            return server.spawn(bp, tf, attach_to)

        def try_spawn_actor(self, bp, tf):
            return server.spawn(bp, tf)

        def tick(self, seconds: float = 10.0) -> int:
            return server.tick()

        def get_snapshot(self):
            return Snapshot(server.frame, server.elapsed, list(server.actors.values()))

        def set_pedestrians_seed(self, seed: int) -> None:
            raise RuntimeError("rpc: function 'set_pedestrians_seed' not found")

        def get_actors(self, ids=None):
            acts = [a for a in server.actors.values() if ids is None or a.id in ids]
            if ids is None:  # an ActorList: only filter() is used
                return types.SimpleNamespace(filter=lambda p: [a for a in acts if a.type_id == p])
            return acts

    class Client:
        def __init__(self, host: str, port: int, worker_threads: int = 0):
            self.world = World()

        def set_timeout(self, t: float) -> None:
            pass

        def get_server_version(self) -> str:
            return server.version

        def get_client_version(self) -> str:
            return "0.9.16"

        def get_world(self):
            return self.world

        def get_trafficmanager(self, port: int = 8000):
            raise RuntimeError("rpc: function 'is_traffic_manager_running' not found")

    m.Client = Client
    return m
