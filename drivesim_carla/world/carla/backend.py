"""`CarlaWorld`: the `carla` backend of `World`, a CARLA 0.9.14-0.9.16 server (or `drivesim
serve`) stepped in synchronous mode at a fixed delta.

In the pattern of CARLA's `synchronous_mode.py`: every sensor gets a queue; each tick drains the
queues until every camera has delivered the world's frame; `close` restores the server's original
settings and destroys every actor this world spawned, also after an exception or Ctrl-C.
`carla` is imported here only, and lazily, so the rest of the package runs without it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ...errors import DrivesimError
from ...route import Route
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
from ..base import World
from .decode import DECODERS
from .route import attach_signals, plan_route

log = logging.getLogger(__name__)

STREAM_BLUEPRINTS = {
    "rgb": "sensor.camera.rgb",
    "semantic": "sensor.camera.semantic_segmentation",
    "depth": "sensor.camera.depth",
    "instance": "sensor.camera.instance_segmentation",
    "flow": "sensor.camera.optical_flow",
}
EVENT_BLUEPRINTS = {"collision": "sensor.other.collision", "lane_invasion": "sensor.other.lane_invasion"}
WEATHER_PRESETS = {"clear": "ClearNoon", "dusk": "ClearSunset", "night": "ClearNight",
                   "rain": "MidRainyNoon", "fog": None}
FOG = {"cloudiness": 70.0, "fog_density": 60.0, "fog_distance": 8.0, "fog_falloff": 1.0,
       "sun_altitude_angle": 35.0, "wetness": 20.0}
NIGHT = {"cloudiness": 10.0, "sun_altitude_angle": -90.0}  # servers without the ClearNight preset
EGO_BLUEPRINTS = ("vehicle.lincoln.mkz_2020", "vehicle.tesla.model3", "vehicle.audi.a2")
TESTED_VERSIONS = ("0.9.14", "0.9.15", "0.9.16")
SPAWN_CANDIDATES = 24  # spawn points tried for a route of the scenario's length
ACTOR_RADIUS = 80.0  # m: actors reported in the frame (as the embedded world)
ARRIVAL = 1.0  # m: within this of the route's end counts as arrived
NPC_CLEARANCE = 10.0  # m: no NPC vehicle spawns this near the ego
DRIVABLE_LANES = ("Driving", "Parking", "Bidirectional")
JUNCTION_SLACK = 1.0  # m beside a junction's lanes that still count as road
EDGE_SLACK = 0.3  # m beside other lanes (a tyre's width)
LIGHT_STATES = {"Red": "red", "Yellow": "yellow", "Green": "green"}


def _carla():
    """The `carla` client module, imported on first use."""
    try:
        import carla
    except ImportError:
        raise DrivesimError("the carla backend needs CARLA's Python client: pip install "
                            "carla==0.9.16 (the version of your server)") from None
    return carla


def to_transform(t) -> Transform:
    """`carla.Transform` -> `Transform` (both CARLA conventions)."""
    loc, rot = t.location, t.rotation
    return Transform(loc.x, loc.y, loc.z, rot.pitch, rot.yaw, rot.roll)


def to_carla_transform(t: Transform):
    carla = _carla()
    return carla.Transform(carla.Location(t.x, t.y, t.z), carla.Rotation(t.pitch, t.yaw, t.roll))


def reachable(host: str, port: int, timeout: float) -> bool:
    """Whether anything accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def traffic_manager_port(port: int) -> int:
    """The Traffic Manager's port for a server on `port`: 8000 next to 2000, as CARLA's defaults
    (6000 below where 6000 above is no port)."""
    return port + 6000 if port + 6000 <= 65535 else port - 6000


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C until the block is done (cleanup must not stop half way), then raise it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    hit: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda *_: hit.append(1))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if hit:
            raise KeyboardInterrupt


def marking_name(marking) -> str:
    """A `carla.LaneMarking` as the embedded world names markings, e.g. 'broken_white'."""
    kind = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", str(marking.type.name)).lower()
    if kind in ("none", "other"):
        return "none"
    color = str(marking.color.name).lower()
    return f"{kind}_{'white' if color == 'standard' else color}"


@dataclass
class _Sensor:
    """A spawned sensor and the queue its callback fills."""

    actor: object
    label: str  # names it in messages, e.g. "camera 'front' depth (sensor.camera.depth)"
    stream: str  # rgb ... flow, collision, lane_invasion
    camera: str = ""
    queue: queue.Queue = field(default_factory=queue.Queue)


@dataclass(frozen=True)
class _Image:
    """A camera image as decoded on the client's sensor thread."""

    frame: int
    array: np.ndarray | None
    pose: Transform | None
    error: str = ""


def _decoder(sensor: _Sensor) -> Callable[[object], None]:
    """A camera's callback: decode on the client's sensor thread, so that decoding overlaps the
    main thread's wait for the rest of the tick, and queue the arrays."""
    decode = DECODERS[sensor.stream]

    def receive(data) -> None:
        try:
            image = _Image(data.frame, decode(data.raw_data, data.width, data.height),
                           to_transform(data.transform))
        except Exception as e:  # noqa: BLE001 - reported by the main thread, naming the sensor
            image = _Image(data.frame, None, None, f"{type(e).__name__}: {e}")
        sensor.queue.put(image)

    return receive


class CarlaWorld(World):
    """`World` on a CARLA server. Connects on construction (a server that does not answer is a
    `DrivesimError`); `reset` takes the server into synchronous mode and spawns the ego, its
    sensors and the scenario's traffic; `close` undoes all of it."""

    name = "carla"

    def __init__(self, scenario: Scenario, seed: int = 0, *, cameras: list[CameraSpec] | None = None,
                 style: str | None = None, weather: str | None = None, host: str = "127.0.0.1",
                 port: int = 2000, timeout: float = 10.0, carla_map: str | None = None,
                 tm_port: int | None = None):
        self.scenario, self.seed = scenario, seed
        self.cameras = scenario.camera_specs() if cameras is None else list(cameras)
        self.fps, self.dt = scenario.fps, 1.0 / scenario.fps
        self.weather = weather or scenario.weather
        self.style = ""  # the server renders its own look
        if style:
            log.warning("--style %s only applies to the embedded world; ignored on CARLA", style)
        if not 1 <= port <= 65535:
            raise DrivesimError(f"--port {port} is invalid; CARLA's RPC port is 1..65535 (2000 by "
                                "default)")
        self.host, self.port, self.timeout = host, port, float(timeout)
        self.tm_port = tm_port if tm_port is not None else traffic_manager_port(port)
        self.where = f"{host}:{port}"
        self._weather = self._weather_params(self.weather)
        self.ego = None
        self._sensors: list[_Sensor] = []
        self._actors: list = []  # everything spawned, in spawn order
        self._controllers: list = []
        self._settings = None  # the server's settings before we changed them
        self._tm = None
        self._lights: dict[int, tuple[object, tuple[float, float]]] = {}
        self._kinds: dict[int, tuple[str, tuple[float, float, float]] | None] = {}
        self._connect(carla_map)

    # ----- connection -----------------------------------------------------------------------
    def _fix(self) -> str:
        return (f"start one with `drivesim serve --port {self.port}` or "
                f"`CarlaUE4.sh -carla-rpc-port={self.port}`, or pass --host/--port")

    def _connect(self, carla_map: str | None) -> None:
        carla = _carla()
        if not reachable(self.host, self.port, min(self.timeout, 5.0)):
            raise DrivesimError(f"no CARLA server answers at {self.where}; {self._fix()}")
        self.client = carla.Client(self.host, self.port)
        self.client.set_timeout(self.timeout)
        try:
            server = self.client.get_server_version()
            self._check_version(self.client.get_client_version(), server)
            self.world = self.client.get_world()
            if carla_map:
                self._load_map(carla_map)
            self.map = self.world.get_map()
        except RuntimeError as e:
            raise DrivesimError(f"the CARLA server at {self.where} did not answer within "
                                f"{self.timeout:g} s ({e}); {self._fix()}") from None
        self.map_name = str(self.map.name).rsplit("/", 1)[-1]
        log.info("connected to CARLA %s at %s, map %s", server, self.where, self.map_name)

    def _check_version(self, client: str, server: str) -> None:
        if client.split("-")[0] != server.split("-")[0]:
            log.warning("CARLA client %s and server %s differ; install carla==%s to match the "
                        "server", client, server, server.split("-")[0])
        if not server.startswith(TESTED_VERSIONS):
            log.warning("CARLA server %s at %s: this toolkit is made for %s", server, self.where,
                        ", ".join(TESTED_VERSIONS))

    def _load_map(self, name: str) -> None:
        available = {m.rsplit("/", 1)[-1]: m for m in self.client.get_available_maps()}
        want = name.rsplit("/", 1)[-1]
        if want not in available:
            raise DrivesimError(f"map '{name}' is not on the CARLA server at {self.where}; "
                                f"available: {', '.join(sorted(available)) or 'none'}")
        if str(self.world.get_map().name).rsplit("/", 1)[-1] != want:
            log.info("loading map %s", want)
            self.world = self.client.load_world(available[want])

    def _weather_params(self, name: str):
        """Our weather names, or any `carla.WeatherParameters` preset by name."""
        wp = _carla().WeatherParameters
        if name in WEATHER_PRESETS:
            preset = WEATHER_PRESETS[name]
            if preset is None:
                return wp(**FOG)
            return getattr(wp, preset, None) or wp(**NIGHT)
        if name[:1].isupper() and isinstance(getattr(wp, name, None), wp):
            return getattr(wp, name)
        raise DrivesimError(f"unknown weather '{name}'; valid: {', '.join(WEATHER_PRESETS)}, or a "
                            "carla.WeatherParameters preset such as HardRainSunset")

    # ----- episode --------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> Frame:
        if seed is not None:
            self.seed = seed
        try:
            self._destroy_actors()
            self._enter_sync()
            self._set_weather()
            rng = np.random.default_rng([self.seed, 7919])
            self._spawn_ego(rng)
            self._spawn_traffic(rng)
            self._spawn_sensors()
            self._find_lights()
            return self._first_frame()
        except RuntimeError as e:
            self.close()
            raise DrivesimError(f"the CARLA server at {self.where} failed while setting up the "
                                f"episode: {e}") from None
        except BaseException:
            self.close()
            raise

    def tick(self, control: Control) -> Frame:
        if self.ego is None:
            raise DrivesimError("call reset() before tick()")
        carla = _carla()
        self.control = control.clipped()
        c = self.control
        try:
            self.ego.apply_control(carla.VehicleControl(throttle=c.throttle, steer=c.steer,
                                                        brake=c.brake, hand_brake=c.hand_brake,
                                                        reverse=c.reverse))
        except RuntimeError as e:
            raise DrivesimError(f"the CARLA server at {self.where} refused the ego's control "
                                f"({e})") from None
        return self._collect(self._tick_server())

    def close(self) -> None:
        """Stop the sensors, destroy every actor spawned here, restore the original settings."""
        with sigint_deferred():
            if (self._actors or self._settings is not None) and not reachable(
                    self.host, self.port, min(self.timeout, 2.0)):
                log.warning("the CARLA server at %s is gone; nothing left to clean up", self.where)
                self._forget()
                self._tm, self._settings = None, None
                return
            self.client.set_timeout(min(self.timeout, 5.0))  # a stalled server: give up soon
            try:
                self._destroy_actors()
                self._restore_settings()
            finally:
                self.client.set_timeout(self.timeout)

    # ----- settings -------------------------------------------------------------------------
    def _enter_sync(self) -> None:
        """Synchronous mode with a fixed delta of 1/fps (keeping the original to restore)."""
        current = self.world.get_settings()
        if self._settings is None:
            self._settings = self.world.get_settings()
        current.synchronous_mode = True
        current.fixed_delta_seconds = self.dt
        if current.substepping and self.dt > current.max_substep_delta_time * current.max_substeps:
            current.max_substeps = 16  # CARLA needs delta <= max_substep_delta_time * max_substeps
            current.max_substep_delta_time = max(current.max_substep_delta_time, self.dt / 16)
        self.world.apply_settings(current)

    def _restore_settings(self) -> None:
        if self._tm is not None:
            _quietly(lambda: self._tm.set_synchronous_mode(False), "release the Traffic Manager")
            self._tm = None
        if self._settings is not None:
            settings, self._settings = self._settings, None
            _quietly(lambda: self.world.apply_settings(settings), "restore the server's settings")

    def _set_weather(self) -> None:
        try:
            self.world.set_weather(self._weather)
        except RuntimeError as e:
            log.warning("the CARLA server at %s did not take the weather '%s' (%s); keeping its "
                        "own", self.where, self.weather, e)

    def _tick_server(self) -> int:
        try:
            return int(self.world.tick(self.timeout))
        except RuntimeError as e:
            raise DrivesimError(f"the CARLA server at {self.where} did not finish a tick within "
                                f"{self.timeout:g} s ({e}); raise --timeout, or check that no "
                                "other client drives it") from None

    # ----- actors ---------------------------------------------------------------------------
    def _spawn(self, bp, tf, parent=None, *, required: bool = True):
        """Spawn an actor and remember it for cleanup; None where it did not fit (unless
        `required`)."""
        if required:
            actor = self.world.spawn_actor(bp, tf, attach_to=parent) if parent is not None \
                else self.world.spawn_actor(bp, tf)
        else:
            actor = self.world.try_spawn_actor(bp, tf)
        if actor is not None:
            self._actors.append(actor)
        return actor

    def _destroy_actors(self) -> None:
        for s in self._sensors:
            _quietly(s.actor.stop, f"stop {s.label}")
        for c in self._controllers:
            _quietly(c.stop, f"stop walker controller {c.id}")
        left = list(reversed(self._actors))  # sensors and controllers before their parents
        while left:
            actor = left.pop(0)
            if _quietly(actor.destroy, f"destroy actor {actor.id}") is None:  # server stalled
                log.warning("stopped cleaning up: %d more actors may be left on %s", len(left),
                            self.where)
                break
        self._forget()

    def _forget(self) -> None:
        self._sensors, self._controllers, self._actors = [], [], []
        self._lights, self._kinds = {}, {}
        self.ego = None

    def _blueprint(self, name: str, needed_for: str):
        try:
            return self.world.get_blueprint_library().find(name)
        except (IndexError, RuntimeError):
            raise DrivesimError(f"the CARLA server at {self.where} has no '{name}' blueprint "
                                f"(needed for {needed_for}); remove it from the scenario") from None

    def _ego_blueprint(self):
        lib = self.world.get_blueprint_library()
        found = [bp for name in EGO_BLUEPRINTS for bp in lib.filter(name)]
        if not found:
            found = sorted((bp for bp in lib.filter("vehicle.*")
                            if _attr(bp, "number_of_wheels", "4") == "4"), key=lambda b: b.id)
        if not found:
            raise DrivesimError(f"the CARLA server at {self.where} offers no 4-wheeled vehicle "
                                "blueprint for the ego")
        bp = found[0]
        if bp.has_attribute("role_name"):
            bp.set_attribute("role_name", "hero")
        return bp

    def _spawn_points(self) -> list:
        points = list(self.map.get_spawn_points())
        if points:
            return points
        carla = _carla()  # no spawn points on the map: lane centres away from junctions
        wps = [w for w in self.map.generate_waypoints(20.0) if not w.is_junction]
        return [carla.Transform(w.transform.location + carla.Location(z=0.5), w.transform.rotation)
                for w in wps]

    def _candidates(self, rng: np.random.Generator) -> Iterator[tuple[object, Route]]:
        """(spawn point, route) pairs, full-length routes first, in seeded order."""
        points = self._spawn_points()
        want = self.scenario.ego.route_length
        limit = self.scenario.ego.target_speed / 3.6
        short = []
        for k in rng.permutation(len(points))[:SPAWN_CANDIDATES]:
            start = self.map.get_waypoint(points[k].location)
            if start is None:
                continue
            route = plan_route(start, want, rng, limit)
            if len(route.waypoints) < 2:
                continue
            if route.length >= 0.9 * want:
                yield points[k], route
            else:
                short.append((points[k], route))
        yield from sorted(short, key=lambda p: -p[1].length)

    def _spawn_ego(self, rng: np.random.Generator) -> None:
        bp = self._ego_blueprint()
        for tf, route in self._candidates(rng):
            actor = self._spawn(bp, tf, required=False)
            if actor is not None:
                self.ego, self.route, self._ego_spawn = actor, route, tf
                ext = actor.bounding_box.extent
                self._ego_extent = (float(ext.x), float(ext.y), float(ext.z))
                if route.length < 0.9 * self.scenario.ego.route_length:
                    log.warning("the longest route found on %s is %.0f m (asked for %.0f m)",
                                self.map_name, route.length, self.scenario.ego.route_length)
                return
        raise DrivesimError(f"could not spawn the ego on {self.map_name} at {self.where}: no free "
                            "spawn point with a drivable route; try another --seed or --map")

    def _spawn_sensors(self) -> None:
        carla = _carla()
        for spec in self.cameras:
            mount = to_carla_transform(spec.mount)
            for stream in spec.streams:
                bp = self._blueprint(STREAM_BLUEPRINTS[stream], f"camera '{spec.name}' {stream}")
                for key, value in (("image_size_x", spec.width), ("image_size_y", spec.height),
                                   ("fov", spec.fov), ("sensor_tick", 0.0)):
                    if bp.has_attribute(key):
                        bp.set_attribute(key, str(value))
                label = f"camera '{spec.name}' {stream} ({STREAM_BLUEPRINTS[stream]})"
                self._listen(self._spawn(bp, mount, self.ego), label, stream, spec.name)
        for kind, name in EVENT_BLUEPRINTS.items():
            try:
                bp = self.world.get_blueprint_library().find(name)
            except (IndexError, RuntimeError):
                log.warning("the CARLA server at %s has no '%s'; no %s events", self.where, name,
                            kind.replace("_", " "))
                continue
            self._listen(self._spawn(bp, carla.Transform(), self.ego), f"{kind} sensor ({name})",
                         kind)

    def _listen(self, actor, label: str, stream: str, camera: str = "") -> None:
        sensor = _Sensor(actor, label, stream, camera)
        self._sensors.append(sensor)
        actor.listen(_decoder(sensor) if camera else sensor.queue.put)

    # ----- traffic --------------------------------------------------------------------------
    def _spawn_traffic(self, rng: np.random.Generator) -> None:
        t = self.scenario.traffic
        if t.vehicles:
            self._spawn_vehicles(t.vehicles, rng)
        if t.pedestrians:
            self._spawn_walkers(t.pedestrians, t.jaywalkers, rng)
        if t.parked:
            log.info("parked cars are not spawned on CARLA (its maps bring their own)")

    def _traffic_manager(self):
        """The Traffic Manager in synchronous mode, seeded; None where the server has none."""
        try:
            tm = self.client.get_trafficmanager(self.tm_port)
            tm.set_synchronous_mode(True)
            tm.set_random_device_seed(int(self.seed))
        except (RuntimeError, OverflowError) as e:
            log.warning("no Traffic Manager on %s (port %d: %s); not spawning the scenario's NPC "
                        "vehicles", self.where, self.tm_port, e)
            return None
        self._tm = tm
        return tm

    def _spawn_vehicles(self, n: int, rng: np.random.Generator) -> None:
        tm = self._traffic_manager()
        if tm is None:
            return
        lib = self.world.get_blueprint_library()
        bps = sorted((bp for bp in lib.filter("vehicle.*")
                      if _attr(bp, "number_of_wheels", "4") == "4"), key=lambda b: b.id)
        home = self._ego_spawn.location
        points = [p for p in self._spawn_points() if p.location.distance(home) > NPC_CLEARANCE]
        spawned = []
        for k in rng.permutation(len(points)):
            if len(spawned) >= n:
                break
            bp = bps[int(rng.integers(len(bps)))]
            _set_recommended(bp, "color", rng)
            if bp.has_attribute("role_name"):
                bp.set_attribute("role_name", "autopilot")
            actor = self._spawn(bp, points[k], required=False)
            if actor is not None:
                spawned.append(actor)
        for actor in spawned:
            actor.set_autopilot(True, tm.get_port())
        if len(spawned) < n:
            log.warning("spawned %d of %d NPC vehicles (free spawn points ran out)", len(spawned), n)

    def _spawn_walkers(self, n: int, jaywalkers: float, rng: np.random.Generator) -> None:
        carla = _carla()
        try:
            self.world.set_pedestrians_seed(int(self.seed))
            self.world.set_pedestrians_cross_factor(float(jaywalkers))
            spots = [self.world.get_random_location_from_navigation() for _ in range(n)]
        except RuntimeError as e:
            log.warning("the CARLA server at %s cannot place pedestrians (%s); running without NPC "
                        "pedestrians", self.where, e)
            return
        bps = sorted(self.world.get_blueprint_library().filter("walker.pedestrian.*"),
                     key=lambda b: b.id)
        spots = [s for s in spots if s is not None]
        if not spots or not bps:
            log.warning("the CARLA server at %s has no %s; running without NPC pedestrians",
                        self.where, "walker blueprints" if spots else "navigation mesh")
            return
        walkers = []
        for loc in spots:
            bp = bps[int(rng.integers(len(bps)))]
            if bp.has_attribute("is_invincible"):
                bp.set_attribute("is_invincible", "false")
            walker = self._spawn(bp, carla.Transform(loc + carla.Location(z=1.0)), required=False)
            if walker is not None:
                walkers.append(walker)
        if walkers:
            self._start_walkers(walkers, rng)

    def _start_walkers(self, walkers: list, rng: np.random.Generator) -> None:
        carla = _carla()
        self._tick_server()  # the walkers must exist on the server before their controllers
        bp = self._blueprint("controller.ai.walker", "NPC pedestrians")
        self._controllers = [self._spawn(bp, carla.Transform(), w) for w in walkers]
        self._tick_server()
        for c in self._controllers:
            c.start()
            c.go_to_location(self.world.get_random_location_from_navigation())
            c.set_max_speed(float(rng.uniform(1.0, 1.8)))

    def _find_lights(self) -> None:
        """Traffic lights with their stop lines; the route learns which it must stop at."""
        stops: dict[int, list[tuple[int, int, float, float]]] = {}
        try:
            lights = list(self.world.get_actors().filter("traffic.traffic_light*"))
        except RuntimeError:
            lights = []
        for tl in lights:
            try:
                wps = list(tl.get_stop_waypoints()) or list(tl.get_affected_lane_waypoints())
            except RuntimeError:
                continue
            if not wps:
                continue
            pts = [(w.road_id, w.lane_id, w.transform.location.x, w.transform.location.y)
                   for w in wps]
            stops[tl.id] = pts
            self._lights[tl.id] = (tl, (float(np.mean([p[2] for p in pts])),
                                        float(np.mean([p[3] for p in pts]))))
        self.route = attach_signals(self.route, stops)

    # ----- frames ---------------------------------------------------------------------------
    def _first_frame(self) -> Frame:
        self.control = Control()
        self.progress = 0.0
        self._off_road = False
        self._contacts: set[int] = set()
        self._pending: list[tuple[str, object]] = []
        self._frame0 = self._tick_server()
        self._t0 = float(self.world.get_snapshot().timestamp.elapsed_seconds)
        return self._collect(self._frame0)

    def _collect(self, n: int) -> Frame:
        """The frame for server frame `n`: every camera's images of that frame, events, actors."""
        snapshot = self.world.get_snapshot()
        cams = self._camera_data(n)
        ego = self._ego_state(snapshot)
        events = self._events(n) + self._off_road_events(n, ego.transform)
        return Frame(n - self._frame0, float(snapshot.timestamp.elapsed_seconds) - self._t0, ego,
                     cams, events, self._actor_states(snapshot, ego.transform), self._light_states())

    def _wait(self, sensor: _Sensor, n: int, deadline: float):
        """What `sensor` produced for server frame `n` (an `_Image` for cameras), dropping older
        frames."""
        while True:
            try:
                data = sensor.queue.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                raise DrivesimError(
                    f"{sensor.label} sent no data for frame {n - self._frame0} (server frame {n}) "
                    f"within {self.timeout:g} s; the server at {self.where} may be overloaded: "
                    "raise --timeout or lower the camera size") from None
            if data.frame == n:
                return data
            if data.frame > n:
                raise DrivesimError(f"{sensor.label} skipped server frame {n} (sent {data.frame}); "
                                    "is another client ticking the server?")

    def _camera_data(self, n: int) -> dict[str, CameraData]:
        deadline = time.monotonic() + self.timeout
        out: dict[str, CameraData] = {}
        by_camera: dict[str, dict[str, np.ndarray]] = {c.name: {} for c in self.cameras}
        poses: dict[str, Transform] = {}
        for sensor in self._sensors:
            if not sensor.camera:
                continue
            image = self._wait(sensor, n, deadline)
            if image.error:
                raise DrivesimError(f"{sensor.label} sent an unreadable image for frame "
                                    f"{n - self._frame0}: {image.error}")
            by_camera[sensor.camera][sensor.stream] = image.array
            poses.setdefault(sensor.camera, image.pose)
        for spec in self.cameras:
            out[spec.name] = CameraData(spec, poses.get(spec.name, spec.mount), **by_camera[spec.name])
        return out

    def _ego_state(self, snapshot) -> EgoState:
        a = snapshot.find(self.ego.id)
        if a is None:
            raise DrivesimError(f"the ego vehicle (actor {self.ego.id}) is gone from the CARLA "
                                f"server at {self.where}")
        tf, v = to_transform(a.get_transform()), a.get_velocity()
        self.progress = self.route.project(tf.x, tf.y, hint=self.progress)
        length = max(self.route.length, 1e-9)
        done = 1.0 if length - self.progress < ARRIVAL else self.progress / length
        return EgoState(tf, (float(v.x), float(v.y), float(v.z)), math.hypot(v.x, v.y, v.z),
                        self.control, self.progress, done, self._ego_extent)

    def _events(self, n: int) -> list[Event]:
        """Collision and lane-invasion events up to server frame `n`; anything newer waits for
        its own tick."""
        for s in self._sensors:
            if not s.camera:
                with contextlib.suppress(queue.Empty):
                    while True:
                        self._pending.append((s.stream, s.queue.get_nowait()))
        now = sorted((kd for kd in self._pending if kd[1].frame <= n), key=lambda kd: kd[1].frame)
        self._pending = [kd for kd in self._pending if kd[1].frame > n]
        lanes = [self._lane_event(d, n) for k, d in now if k == "lane_invasion"]
        return lanes + self._collisions([d for k, d in now if k == "collision"], n)

    def _collisions(self, hits: list, n: int) -> list[Event]:
        """One event per contact, at its onset (CARLA reports every physics step of a contact),
        with the contact's summed impulse, as the embedded world reports them."""
        touching: dict[int, tuple[str, float, object]] = {}
        for data in hits:
            other = data.other_actor
            key = other.id if other is not None else 0
            imp = data.normal_impulse
            _, total, first = touching.get(key, ("", 0.0, data))
            touching[key] = (other.type_id if other is not None else "static",
                             total + math.hypot(imp.x, imp.y, imp.z), first)
        events = [Event("collision", n - self._frame0, k, kind, impulse, _xy(d.transform))
                  for k, (kind, impulse, d) in sorted(touching.items()) if k not in self._contacts]
        self._contacts = set(touching)
        return events

    def _lane_event(self, data, n: int) -> Event:
        names = [marking_name(m) for m in data.crossed_lane_markings]
        return Event("lane_invasion", n - self._frame0, 0, names[0] if names else "none",
                     location=_xy(data.transform))

    def _off_road_events(self, n: int, tf: Transform) -> list[Event]:
        """An event when a wheel first leaves the drivable lanes of the map."""
        ex, ey = self._ego_extent[:2]
        m = tf.matrix()
        wheels = [m @ np.array([a * 0.62 * ex, b * 0.85 * ey, 0.0, 1.0])
                  for a, b in ((1, 1), (1, -1), (-1, 1), (-1, -1))]
        off = not all(self._on_road(*w[:3]) for w in wheels)
        was, self._off_road = self._off_road, off
        if off and not was:
            return [Event("off_road", n - self._frame0, 0, "off_road", location=(tf.x, tf.y))]
        return []

    def _on_road(self, x: float, y: float, z: float) -> bool:
        """Inside a drivable lane, or within a tyre's width of one, or on a junction's asphalt
        beside one (OpenDRIVE lanes do not cover the corners of a junction)."""
        carla = _carla()
        lanes = 0
        for name in DRIVABLE_LANES:
            lanes |= int(getattr(carla.LaneType, name))
        loc = carla.Location(float(x), float(y), float(z))
        if self.map.get_waypoint(loc, project_to_road=False, lane_type=lanes) is not None:
            return True
        near = self.map.get_waypoint(loc, project_to_road=True, lane_type=lanes)
        if near is None:
            return False
        slack = JUNCTION_SLACK if near.is_junction else EDGE_SLACK
        return near.transform.location.distance(loc) < near.lane_width / 2 + slack

    def _actor_states(self, snapshot, ego: Transform) -> list[ActorState]:
        """Vehicles and pedestrians within ACTOR_RADIUS of the ego."""
        unknown = [a.id for a in snapshot if a.id not in self._kinds]
        if unknown:
            self._learn(unknown)
        out = []
        for a in snapshot:
            info = self._kinds.get(a.id)
            if info is None or a.id == self.ego.id:
                continue
            tf = a.get_transform()
            if math.hypot(tf.location.x - ego.x, tf.location.y - ego.y) > ACTOR_RADIUS:
                continue
            v = a.get_velocity()
            out.append(ActorState(a.id, info[0], to_transform(tf),  # type: ignore[arg-type]
                                  (float(v.x), float(v.y), float(v.z)), info[1]))
        return out

    def _learn(self, ids: list[int]) -> None:
        """Remember the kind and size of actors seen for the first time."""
        for i in ids:
            self._kinds[i] = None
        try:
            actors = list(self.world.get_actors(ids))
        except RuntimeError as e:
            log.warning("the CARLA server at %s does not describe its actors (%s); Frame.actors "
                        "leaves them out", self.where, e)
            return
        for actor in actors:
            kind = ("vehicle" if actor.type_id.startswith("vehicle.") else
                    "pedestrian" if actor.type_id.startswith("walker.") else None)
            if kind is not None:
                e = actor.bounding_box.extent
                self._kinds[actor.id] = (kind, (float(e.x), float(e.y), float(e.z)))

    def _light_states(self) -> dict[int, TrafficLightState]:
        out = {}
        for k, (tl, stop) in self._lights.items():
            state = LIGHT_STATES.get(str(getattr(tl.state, "name", tl.state)), "off")
            out[k] = TrafficLightState(k, state, stop)  # type: ignore[arg-type]
        return out


def _xy(t) -> tuple[float, float]:
    return float(t.location.x), float(t.location.y)


def _attr(bp, name: str, default: str) -> str:
    return bp.get_attribute(name).as_str() if bp.has_attribute(name) else default


def _set_recommended(bp, name: str, rng: np.random.Generator) -> None:
    if bp.has_attribute(name):
        values = list(bp.get_attribute(name).recommended_values)
        if values:
            bp.set_attribute(name, values[int(rng.integers(len(values)))])


def _quietly(fn: Callable[[], object], what: str) -> bool | None:
    """Run a cleanup step; a failure is a warning, not an error. Returns None after a time-out
    (the server stopped answering), False after another failure, True on success."""
    try:
        fn()
        return True
    except Exception as e:  # noqa: BLE001 - cleanup goes on whatever one step raised
        log.warning("cleanup: could not %s: %s", what, e)
        return None if "time-out" in str(e) or "timeout" in str(e).lower() else False
