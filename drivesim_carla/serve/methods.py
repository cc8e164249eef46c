"""The RPC calls `drivesim serve` answers: each call's argument readers and the simulation
operation behind it. `dispatch` turns any request into a CARLA `Response`, never an exception."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from . import protocol as p
from .simulation import EPISODE_STREAM, VERSION, Simulation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Method:
    readers: tuple[Callable[[object], object], ...]
    run: Callable[..., object]
    void: bool = False  # answers `Response<void>`
    optional: int = 0  # trailing arguments a client may leave out
    raw: bool = False  # answers its result as is, not wrapped in a `Response`


def _arg(reader: Callable, what: str) -> Callable[[object], object]:
    return lambda v: reader(v, what)


ACTOR = _arg(p.as_int, "actor id")
FLAG = _arg(p.as_bool, "flag")
TEXT = _arg(p.as_str, "text")


def _spawn_with_parent(sim: Simulation, d, tf, parent: int, attachment: int, _socket: str = ""):
    if attachment != 0:
        log.info("attachment type %d is served as a rigid attachment", attachment)
    return sim.spawn(d, tf, parent)


def _noop(sim: Simulation, *args) -> None:
    """Accepted and ignored (the embedded world has no such physics)."""


def _spawn_command(sim: Simulation, d, tf, parent, _attachment, _socket, after) -> int:
    """`command.SpawnActor`, then its `then(...)` commands with FutureActor (0) = the new id."""
    parent_id = p.optional_int(parent, "parent")
    actor = sim.spawn(d, tf, parent_id or 0)[0]
    for cmd in p.as_list(after, "do_after commands", max_len=64):
        _command(sim, cmd, future=actor)
    return actor


def _unsupported(name: str) -> Callable[..., int]:
    def run(sim: Simulation, *args) -> int:
        raise p.BadArgument(f"command {name} is not supported by drivesim serve")
    return run


# `rpc::Command` alternatives by variant index (0.9.16 wheel): readers, run -> actor id.
COMMANDS: dict[int, tuple[tuple[Callable, ...], Callable[..., object]]] = {
    0: ((p.description, p.transform, lambda v: v, lambda v: v, TEXT, lambda v: v),
        _spawn_command),
    1: ((ACTOR,), Simulation.destroy),
    2: ((ACTOR, p.vehicle_control), lambda sim, a, c: sim.apply_control(a, c)),
    6: ((ACTOR, p.transform), lambda sim, a, t: sim.set_transform(a, t)),
    8: ((ACTOR, p.location), lambda sim, a, v: sim.set_velocity(a, v)),
    14: ((ACTOR, FLAG), _noop),
    15: ((ACTOR, FLAG), _noop),
    16: ((ACTOR, FLAG, lambda v: v), _unsupported("SetAutopilot (no Traffic Manager)")),
    19: ((ACTOR, p.location), lambda sim, a, loc: sim.set_location(a, loc)),
}


def _command(sim: Simulation, cmd: object, future: int = 0) -> list:
    """One `rpc::Command` ([[index, [fields...]]]) -> its `CommandResponse` (actor id or error)."""
    try:
        (item,) = p.as_list(cmd, "command", 1)
        index, body = p.as_list(item, "command", 2)
        index = p.as_int(index, "command index", 0, 255)
        body = p.as_list(body, "command fields", max_len=16)
        if index not in COMMANDS:
            raise p.BadArgument(f"command #{index} is not supported by drivesim serve")
        readers, run = COMMANDS[index]
        if len(body) != len(readers):
            raise p.BadArgument(f"command #{index} needs {len(readers)} fields")
        if future and body and body[0] == 0:
            body = [future, *body[1:]]
        args = [read(v) for read, v in zip(readers, body, strict=True)]
        result = run(sim, *args)
        return p.ok(result if index == 0 else args[0])
    except p.BadArgument as e:
        return p.error(f"apply_batch: {e}")


def _apply_batch(sim: Simulation, commands: list, do_tick: bool = False) -> list:
    out = [_command(sim, c) for c in commands]
    if do_tick:
        sim.tick()
    return out


METHODS: dict[str, Method] = {
    "version": Method((), lambda sim: VERSION),
    "get_episode_info": Method((), lambda sim: [sim.episode, p.pack_token(EPISODE_STREAM,
                                                                           sim.stream_port)]),
    "get_sensor_token": Method((_arg(p.as_int, "stream id"),), Simulation.sensor_token),
    "get_episode_settings": Method((), lambda sim: sim.settings.pack()),
    "set_episode_settings": Method((p.episode_settings,), Simulation.set_settings),
    "get_required_files": Method((TEXT,), lambda sim, folder="": [], optional=1),
    "query_lights_state": Method((TEXT,), lambda sim, endpoint="": [], optional=1),
    "get_map_info": Method((), Simulation.map_info),
    "get_map_data": Method((), Simulation.map_data),
    "get_available_maps": Method((), Simulation.available_maps),
    "load_new_episode": Method((TEXT, FLAG, _arg(p.as_int, "map layers")),
                               lambda sim, name, reset=True, _layers=0:
                               sim.load_episode(name, reset), void=True, optional=2),
    "get_actor_definitions": Method((), Simulation.definitions),
    "get_spectator": Method((), Simulation.spectator_actor),
    "spawn_actor": Method((p.description, p.transform), Simulation.spawn),
    "spawn_actor_with_parent": Method(
        (p.description, p.transform, ACTOR, _arg(p.as_int, "attachment type"), TEXT),
        _spawn_with_parent, optional=1),
    "destroy_actor": Method((ACTOR,), Simulation.destroy),
    "get_actor_bounding_box": Method((ACTOR,), Simulation.bounding_box),
    "get_actors_by_id": Method((p.id_list,), Simulation.actors_by_id),
    "apply_control_to_vehicle": Method((ACTOR, p.vehicle_control), Simulation.apply_control,
                                       void=True),
    "set_actor_transform": Method((ACTOR, p.transform), Simulation.set_transform, void=True),
    "set_actor_location": Method((ACTOR, p.location), Simulation.set_location, void=True),
    "set_actor_target_velocity": Method((ACTOR, p.location), Simulation.set_velocity, void=True),
    "set_actor_simulate_physics": Method((ACTOR, FLAG), _noop, void=True),
    "set_actor_enable_gravity": Method((ACTOR, FLAG), _noop, void=True),
    "get_weather_parameters": Method((), lambda sim: [sim.weather_params[f]
                                                      for f in p.WEATHER_FIELDS]),
    "set_weather_parameters": Method((p.weather_parameters,), Simulation.set_weather, void=True),
    "tick_cue": Method((), Simulation.tick),
    "apply_batch": Method((_arg(p.as_list, "commands"), FLAG), _apply_batch, optional=1,
                          raw=True),
}

# Calls the 0.9.16 client makes that answer `Response<void>` (so that their errors parse).
VOID_CALLS = frozenset({
    "load_map_layer", "unload_map_layer", "copy_opendrive_to_file", "reset_all_traffic_lights",
    "apply_color_texture_to_objects", "apply_float_color_texture_to_objects",
    "apply_textures_to_objects", "set_actor_autopilot", "apply_control_to_walker",
    "set_traffic_light_state", "freeze_traffic_light", "freeze_all_traffic_lights",
    "draw_debug_shape", "set_actor_angular_velocity", "set_actor_target_angular_velocity",
    "add_actor_impulse", "add_actor_force", "add_actor_angular_impulse", "add_actor_torque",
    "apply_physics_control", "set_vehicle_light_state", "update_lights_state", "stop_recorder",
})


def dispatch(sim: Simulation, method: object, params: object) -> list:
    """The `Response` to one request; every failure becomes a CARLA-style error naming the call."""
    if not isinstance(method, str) or len(method) > 256:
        return p.error("malformed request: the method name must be a string")
    log.debug("call %s %.300r", method, params)
    spec = METHODS.get(method)
    void = spec.void if spec is not None else method in VOID_CALLS
    fail = p.error_void if void else p.error
    if spec is None:
        return fail(f"{method}: not supported by drivesim serve (the embedded world behind "
                    "CARLA's protocol); see docs/carla-server.md for what is")
    try:
        result = spec.run(sim, *_read_args(spec, params))
    except p.BadArgument as e:
        message = f"{method}: {e}"
    except Exception as e:  # noqa: BLE001 - one failed call must not stop the server
        log.exception("%s failed", method)
        message = f"{method}: internal error in drivesim serve ({type(e).__name__}: {e})"
    else:
        if spec.raw:
            return result
        return p.ok_void() if void else p.ok(result)
    return [fail(message)] if spec.raw else fail(message)


def _read_args(spec: Method, params: object) -> list:
    """Strip the client's `rpc::Metadata` ([is_async]) and check every argument."""
    if not isinstance(params, list):
        raise p.BadArgument("the parameters must be a list")
    if params and isinstance(params[0], list) and len(params[0]) == 1 and isinstance(
            params[0][0], bool):
        params = params[1:]
    n = len(spec.readers)
    if not n - spec.optional <= len(params) <= n:
        want = f"{n - spec.optional} to {n}" if spec.optional else f"{n}"
        raise p.BadArgument(f"expected {want} arguments, got {len(params)}")
    return [read(v) for read, v in zip(spec.readers, params, strict=False)]
