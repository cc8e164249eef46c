"""CARLA 0.9.16's RPC types as msgpack values: checked readers for what a client sends, writers
for what the server answers.

Layouts were read off the `carla==0.9.16` wheel (`gdb ptype` on its debug info) and checked with
its client: a `Transform` is `[[x, y, z], [pitch, yaw, roll]]` (float32 on the client side),
an optional is `[false]` or `[true, value]`, every result is a `Response<T>`: `[[1, value]]` on
success, `[[0, [message]]]` on error; `Response<void>` is an optional error (`[[false]]`).
Readers raise `BadArgument` with a message that names what was wrong; nothing read from a socket
is used before it has passed one of them.
"""

from __future__ import annotations

import math
import struct
from dataclasses import astuple, dataclass, fields

from ..types import Control, Transform

STREAM_PORT_OFFSET = 1  # the streaming port is the RPC port + 1, as on a CARLA server
MAX_LIST = 100_000  # longest list accepted from a client (e.g. actor ids)
MAX_STR = 4096  # longest string accepted from a client


class BadArgument(ValueError):
    """An argument that does not have the type or shape the call needs."""


# ----- readers --------------------------------------------------------------------------------
def as_bool(v: object, what: str) -> bool:
    if not isinstance(v, bool):
        raise BadArgument(f"{what} must be a bool")
    return v


def as_int(v: object, what: str, lo: int = 0, hi: int = 2**32 - 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise BadArgument(f"{what} must be an integer in {lo}..{hi}")
    return v


def as_float(v: object, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise BadArgument(f"{what} must be a finite number")
    return float(v)


def as_str(v: object, what: str, max_len: int = MAX_STR) -> str:
    if not isinstance(v, str) or len(v) > max_len:
        raise BadArgument(f"{what} must be a string of at most {max_len} characters")
    return v


def as_list(v: object, what: str, n: int | None = None, max_len: int = MAX_LIST) -> list:
    if not isinstance(v, list) or len(v) > max_len or (n is not None and len(v) != n):
        size = f"{n} items" if n is not None else f"at most {max_len} items"
        raise BadArgument(f"{what} must be a list of {size}")
    return v


def floats(v: object, what: str, n: int) -> tuple[float, ...]:
    return tuple(as_float(x, what) for x in as_list(v, what, n))


def transform(v: object, what: str = "transform") -> Transform:
    loc, rot = as_list(v, what, 2)
    x, y, z = floats(loc, f"{what} location", 3)
    pitch, yaw, roll = floats(rot, f"{what} rotation", 3)
    return Transform(x, y, z, pitch, yaw, roll)


def location(v: object, what: str = "location") -> tuple[float, float, float]:
    return floats(v, what, 3)  # type: ignore[return-value]


def vehicle_control(v: object) -> Control:
    """`VehicleControl` = [throttle, steer, brake, hand_brake, reverse, manual_gear_shift, gear]."""
    items = as_list(v, "vehicle control", 7)
    throttle, steer, brake = (as_float(x, "vehicle control") for x in items[:3])
    hand_brake, reverse, _ = (as_bool(x, "vehicle control") for x in items[3:6])
    as_int(items[6], "vehicle control gear", -100, 100)
    return Control(throttle, steer, brake, hand_brake, reverse).clipped()


def id_list(v: object, what: str = "actor ids") -> list[int]:
    return [as_int(x, what) for x in as_list(v, what)]


@dataclass
class Description:
    """`ActorDescription` = [uid, id, [[attribute, type, value], ...]]."""

    uid: int
    id: str
    attributes: dict[str, str]


def description(v: object) -> Description:
    uid, type_id, attrs = as_list(v, "actor description", 3)
    out: dict[str, str] = {}
    for a in as_list(attrs, "actor description attributes", max_len=256):
        name, kind, value = as_list(a, "actor attribute", 3)
        as_int(kind, "actor attribute type", 0, 255)
        out[as_str(name, "actor attribute id", 256)] = as_str(value, "actor attribute value")
    return Description(as_int(uid, "blueprint uid"), as_str(type_id, "blueprint id", 256), out)


@dataclass
class EpisodeSettings:
    """`EpisodeSettings` of 0.9.16 (11 fields), with a CARLA server's defaults."""

    synchronous_mode: bool = False
    no_rendering_mode: bool = False
    fixed_delta_seconds: float | None = None
    substepping: bool = True
    max_substep_delta_time: float = 0.01
    max_substeps: int = 10
    max_culling_distance: float = 0.0
    deterministic_ragdolls: bool = True
    tile_stream_distance: float = 3000.0
    actor_active_distance: float = 2000.0
    spectator_as_ego: bool = True

    def pack(self) -> list:
        values = list(astuple(self))
        fixed = self.fixed_delta_seconds
        values[2] = [False] if fixed is None else [True, fixed]
        return values


def episode_settings(v: object) -> EpisodeSettings:
    items = as_list(v, "episode settings", len(fields(EpisodeSettings)))
    readers = {bool: as_bool, float: as_float, int: as_int}
    values = []
    for f, item in zip(fields(EpisodeSettings), items, strict=True):
        if f.name == "fixed_delta_seconds":
            values.append(optional_float(item, "fixed_delta_seconds"))
        else:
            values.append(readers[type(getattr(EpisodeSettings, f.name))](item, f.name))
    settings = EpisodeSettings(*values)
    fixed = settings.fixed_delta_seconds
    if fixed is not None and not 1e-4 <= fixed <= 1.0:
        raise BadArgument("fixed_delta_seconds must be between 0.0001 and 1 second")
    return settings


def optional_float(v: object, what: str) -> float | None:
    items = as_list(v, what, max_len=2)
    if items == [False]:
        return None
    if len(items) == 2 and items[0] is True:
        return as_float(items[1], what)
    raise BadArgument(f"{what} must be an optional number ([false] or [true, x])")


def optional_int(v: object, what: str) -> int | None:
    items = as_list(v, what, max_len=2)
    if items == [False]:
        return None
    if len(items) == 2 and items[0] is True:
        return as_int(items[1], what)
    raise BadArgument(f"{what} must be an optional integer ([false] or [true, n])")


WEATHER_FIELDS = ("cloudiness", "precipitation", "precipitation_deposits", "wind_intensity",
                  "sun_azimuth_angle", "sun_altitude_angle", "fog_density", "fog_distance",
                  "fog_falloff", "wetness", "scattering_intensity", "mie_scattering_scale",
                  "rayleigh_scattering_scale", "dust_storm")


def weather_parameters(v: object) -> dict[str, float]:
    """`WeatherParameters` (14 floats in 0.9.16) as a dict by field name."""
    values = floats(v, "weather parameters", len(WEATHER_FIELDS))
    return dict(zip(WEATHER_FIELDS, values, strict=True))


# ----- writers --------------------------------------------------------------------------------
def ok(value: object) -> list:
    """A successful `Response<T>`."""
    return [[1, value]]


def error(message: str) -> list:
    """A failed `Response<T>`."""
    return [[0, [message]]]


def ok_void() -> list:
    """A successful `Response<void>`."""
    return [[False]]


def error_void(message: str) -> list:
    """A failed `Response<void>`."""
    return [[True, [message]]]


def pack_transform(t: Transform) -> list:
    return [[t.x, t.y, t.z], [t.pitch, t.yaw, t.roll]]


def token(stream_id: int, port: int) -> bytes:
    """A 24-byte stream token: stream id, port, protocol tcp (1), no address (the client then
    connects to the host it reached the RPC port on)."""
    return struct.pack("<IHBB16s", stream_id, port, 1, 0, b"")


def pack_token(stream_id: int, port: int) -> list:
    """`streaming::Token` = [bin24]."""
    return [token(stream_id, port)]
