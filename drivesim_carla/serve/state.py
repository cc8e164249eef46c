"""What the episode stream reports: every actor's `ActorDynamicState`, and the `rpc::Actor`
descriptions of the actors the server itself runs (NPC vehicles, pedestrians, traffic lights).

Actor ids: the spectator is 1, client actors count up from 2, traffic light k is
1_000_000 + k, and NPCs get a fresh block of ids each time the episode restarts (so that a
client never sees an old description under a reused id).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..labels import Tag
from ..types import Control
from ..world.embedded.backend import PEDESTRIAN_HALF
from ..world.embedded.traffic import FIRST_ACTOR_ID, MAX_GREEN, YELLOW
from .blueprints import BY_ID, LIBRARY, NPC_TYPE
from .payloads import ACTOR_STATE, TRAFFIC_LIGHT_DATA, VEHICLE_DATA

if TYPE_CHECKING:
    from .simulation import Simulation

TRAFFIC_LIGHT_BASE = 1_000_000
NPC_BASE = 2_000_000
NPC_SPAN = 100_000  # ids per episode generation (vehicles + pedestrians + parked < this)
LIGHT_CODE = {"red": 0, "yellow": 1, "green": 2, "off": 3}
SPEED_LIMIT = 30.0  # km/h, the embedded town's streets
TRIGGER_BACK = 1.5  # m: a traffic light's trigger volume lies this far before its stop line


def npc_actor_id(generation: int, npc_id: int) -> int:
    return NPC_BASE + (generation % 40_000) * NPC_SPAN + npc_id - FIRST_ACTOR_ID


def light_actor_id(signal_id: int) -> int:
    return TRAFFIC_LIGHT_BASE + signal_id


def bbox(actor_id: int, half: tuple[float, float, float], z: float) -> list:
    """`BoundingBox` = [location, extent, rotation, actor id] (0.9.16 adds the actor id)."""
    return [[0.0, 0.0, z], [float(h) for h in half], [0.0, 0.0, 0.0], actor_id]


def _description(type_id: str, attributes: list) -> list:
    bp = BY_ID.get(type_id)
    return [LIBRARY.index(bp) if bp is not None else 0, type_id, attributes]


def npc_actors(sim: Simulation) -> dict[int, list]:
    """rpc::Actor of every NPC vehicle, pedestrian and traffic light, by actor id."""
    w, out = sim.world, {}
    for v in w.traffic.vehicles:
        i = npc_actor_id(sim.generation, v.id)
        color = ",".join(str(int(c)) for c in v.color)
        desc = _description(NPC_TYPE[v.kind], [["role_name", 4, "npc"], ["color", 5, color]])
        out[i] = [i, 0, desc, bbox(i, v.half, v.half[2]), bytes([v.tag]), b""]
    for p in w.traffic.pedestrians:
        i = npc_actor_id(sim.generation, p.id)
        desc = _description("walker.pedestrian.0001", [["role_name", 4, "npc"]])
        out[i] = [i, 0, desc, bbox(i, PEDESTRIAN_HALF, 0.0), bytes([Tag.PEDESTRIAN]), b""]
    for sig in w.town.signals.values():
        i = light_actor_id(sig.id)
        _, _, volume = light_pose(w, sig)
        out[i] = [i, 0, _description("traffic.traffic_light", []), volume,
                  bytes([Tag.TRAFFIC_LIGHT]), b""]
    return out


def light_pose(world, sig) -> tuple[tuple[float, float], float, list]:
    """A traffic light's pole (x, y), yaw (deg) and trigger volume, as CARLA lays them out: the
    light's forward axis runs across its lanes, and its bounding box (the trigger volume that
    `get_stop_waypoints()` samples along that axis) lies on those lanes just before the stop
    line (TRIGGER_BACK metres, so that it samples the approach, not the junction)."""
    pole = sig.lamp_centers[:, :2].mean(axis=0)
    yaw = sig.heading - math.pi / 2
    dx = sig.stop_line[0] - TRIGGER_BACK * math.cos(sig.heading) - pole[0]
    dy = sig.stop_line[1] - TRIGGER_BACK * math.sin(sig.heading) - pole[1]
    c, s = math.cos(yaw), math.sin(yaw)
    across = sum(world.town.lanes[k].width for k in sig.segments) / 2
    volume = [[c * dx + s * dy, -s * dx + c * dy, 1.0], [across, 1.0, 1.0], [0.0, 0.0, 0.0],
              light_actor_id(sig.id)]
    return (float(pole[0]), float(pole[1])), math.degrees(yaw), volume


class Kinematics:
    """Yaw rates and accelerations from one tick to the next, by actor id."""

    def __init__(self) -> None:
        self.prev: dict[int, tuple[float, float]] = {}  # id -> (speed m/s, yaw rad)

    def update(self, ids: list[int], speed: np.ndarray, yaw: np.ndarray, dt: float
               ) -> tuple[np.ndarray, np.ndarray]:
        """(n,) yaw rate in deg/s and (n,) acceleration along the heading in m/s^2."""
        prev = np.array([self.prev.get(i, (s, y)) for i, s, y in zip(ids, speed, yaw, strict=True)]
                        ).reshape(-1, 2)
        self.prev = {i: (float(s), float(y)) for i, s, y in zip(ids, speed, yaw, strict=True)}
        turn = np.remainder(yaw - prev[:, 1] + math.pi, 2 * math.pi) - math.pi
        return np.degrees(turn) / dt, (speed - prev[:, 0]) / dt


def actor_rows(sim: Simulation) -> np.ndarray:
    """(n,) ACTOR_STATE: spectator, client actors, NPC vehicles, pedestrians, traffic lights."""
    return np.concatenate([_spectator(sim), _client_rows(sim), _npc_vehicle_rows(sim),
                           _pedestrian_rows(sim), _light_rows(sim)])


def _fill(n: int, ids, x, y, z, yaw_deg, speed=None, yaw_rate=None, acc=None) -> np.ndarray:
    arr = np.zeros(n, ACTOR_STATE)
    arr["id"] = ids
    arr["actor_state"] = 1  # Active
    arr["location"] = np.stack([x, y, z], -1) if n else np.zeros((0, 3))
    arr["rotation"][:, 1] = yaw_deg
    if speed is not None:
        h = np.radians(yaw_deg)
        arr["velocity"][:, 0] = speed * np.cos(h)
        arr["velocity"][:, 1] = speed * np.sin(h)
        arr["angular_velocity"][:, 2] = yaw_rate
        arr["acceleration"][:, 0] = acc * np.cos(h)
        arr["acceleration"][:, 1] = acc * np.sin(h)
    return arr


def _spectator(sim: Simulation) -> np.ndarray:
    arr = np.zeros(1, ACTOR_STATE)
    t = sim.spectator
    arr["id"], arr["actor_state"] = 1, 1
    arr["location"][0] = (t.x, t.y, t.z)
    arr["rotation"][0] = (t.pitch, t.yaw, t.roll)
    return arr


def _client_rows(sim: Simulation) -> np.ndarray:
    """Client vehicles (with their controls) and sensors (at their world pose)."""
    actors, vehicles = list(sim.actors.values()), sim.world.vehicles
    poses = [sim.world.vehicle_pose(a.id) if a.id in vehicles else sim.sensor_pose(a)
             for a in actors]
    arr = np.zeros(len(actors), ACTOR_STATE)
    arr["id"], arr["actor_state"] = [a.id for a in actors], 1
    arr["location"] = np.array([(p.x, p.y, p.z) for p in poses]).reshape(-1, 3)
    arr["rotation"] = np.array([(p.pitch, p.yaw, p.roll) for p in poses]).reshape(-1, 3)
    rows = [k for k, a in enumerate(actors) if a.id in vehicles]
    cars = [vehicles[actors[k].id] for k in rows]
    speed = np.array([c.state.v for c in cars])
    yaw = np.array([c.state.yaw for c in cars])
    rate, acc = sim.kinematics.update([c.id for c in cars], speed, yaw, sim.delta)
    forward = np.stack([np.cos(yaw), np.sin(yaw), np.zeros_like(yaw)], -1)
    arr["velocity"][rows] = speed[:, None] * forward
    arr["angular_velocity"][rows, 2] = rate
    arr["acceleration"][rows] = acc[:, None] * forward
    arr["data"][rows] = [_vehicle_data(c.control) for c in cars]
    return arr


def _vehicle_data(control: Control) -> bytes:
    d = np.zeros(1, VEHICLE_DATA)
    d["throttle"], d["steer"], d["brake"] = control.throttle, control.steer, control.brake
    d["hand_brake"], d["reverse"] = control.hand_brake, control.reverse
    d["speed_limit"] = SPEED_LIMIT
    d["traffic_light_state"] = LIGHT_CODE["green"]
    return d.tobytes()


def _npc_vehicle_rows(sim: Simulation) -> np.ndarray:
    vs = sim.world.traffic.vehicles
    ids = [npc_actor_id(sim.generation, v.id) for v in vs]
    speed = np.array([v.v for v in vs])
    yaw = np.array([v.yaw for v in vs])
    rate, acc = sim.npc_kinematics.update(ids, speed, yaw, sim.delta)
    arr = _fill(len(vs), ids, [v.x for v in vs], [v.y for v in vs], np.zeros(len(vs)),
                np.degrees(yaw), speed, rate, acc)
    data = np.zeros(len(vs), VEHICLE_DATA)
    data["speed_limit"] = SPEED_LIMIT
    arr["data"] = data.view("V54")
    return arr


def _pedestrian_rows(sim: Simulation) -> np.ndarray:
    ps = sim.world.traffic.pedestrians
    ids = [npc_actor_id(sim.generation, p.id) for p in ps]
    n = len(ps)
    return _fill(n, ids, [p.x for p in ps], [p.y for p in ps], np.full(n, PEDESTRIAN_HALF[2]),
                 np.degrees([p.yaw for p in ps]), np.array([p.speed for p in ps]), np.zeros(n),
                 np.zeros(n))


def light_rows(world) -> np.ndarray:
    """The traffic lights' rows with everything but their state (which `actor_rows` fills)."""
    sigs = list(world.town.signals.values())
    n = len(sigs)
    poses = [light_pose(world, s)[:2] for s in sigs]
    xy = np.array([p[0] for p in poses]).reshape(-1, 2)
    arr = _fill(n, [light_actor_id(s.id) for s in sigs], xy[:, 0], xy[:, 1], np.zeros(n),
                [p[1] for p in poses])
    data = np.zeros(n, TRAFFIC_LIGHT_DATA)
    data["sign_id"] = [str(s.id).encode() for s in sigs]
    data["green_time"], data["yellow_time"], data["red_time"] = MAX_GREEN, YELLOW, MAX_GREEN
    arr["data"] = data.view("V54")
    return arr


def _light_rows(sim: Simulation) -> np.ndarray:
    traffic, sigs = sim.world.traffic, sim.world.town.signals.values()
    arr = sim.lights.copy()
    data = arr["data"].view(TRAFFIC_LIGHT_DATA)
    data["elapsed_time"] = [traffic.signals.timer[s.junction_id] for s in sigs]
    data["state"] = [LIGHT_CODE.get(traffic.light_state.get(s.id, "off"), 3) for s in sigs]
    return arr
