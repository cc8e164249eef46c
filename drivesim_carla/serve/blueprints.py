"""The blueprint library `drivesim serve` offers: the embedded world's vehicles (also under a few
names CARLA scripts ask for), the five cameras and the collision and lane-invasion sensors.

A definition packs as `ActorDefinition` = [uid, id, tags, [[id, type, value, recommended,
modifiable, restricted], ...]]; attribute types start at Bool = 1 in the 0.9.16 wheel.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ..labels import Tag
from ..world.embedded.traffic import PAINT, VEHICLE_TYPES
from .protocol import BadArgument, Description


class AttrType(IntEnum):
    BOOL = 1
    INT = 2
    FLOAT = 3
    STRING = 4
    RGB = 5


@dataclass(frozen=True)
class Attribute:
    id: str
    type: AttrType
    value: str
    recommended: tuple[str, ...] = ()
    modifiable: bool = True
    restricted: bool = False

    def pack(self) -> list:
        return [self.id, int(self.type), self.value, list(self.recommended), self.modifiable,
                self.restricted]


@dataclass(frozen=True)
class Blueprint:
    id: str
    attributes: tuple[Attribute, ...]
    kind: str = ""  # embedded vehicle kind (vehicle.car ...), camera stream, or event
    tag: int = 0  # semantic tag of the actor

    @property
    def tags(self) -> str:
        return ",".join(self.id.split("."))

    def pack(self, uid: int) -> list:
        return [uid, self.id, self.tags, [a.pack() for a in self.attributes]]


def _attr(name: str, kind: AttrType, value: str, *recommended: str, fixed: bool = False) -> Attribute:
    return Attribute(name, kind, value, recommended, not fixed)


COLORS = tuple(",".join(str(int(c)) for c in rgb) for rgb in PAINT)
ROLE = _attr("role_name", AttrType.STRING, "autopilot")


def _vehicle(name: str, kind: str, base: str, tag: int) -> Blueprint:
    f = AttrType
    attrs = (ROLE, _attr("color", f.RGB, COLORS[0], *COLORS),
             _attr("number_of_wheels", f.INT, "4", fixed=True),
             _attr("base_type", f.STRING, base, fixed=True),
             _attr("generation", f.INT, "2", fixed=True),
             _attr("object_type", f.STRING, "", fixed=True),
             _attr("special_type", f.STRING, "", fixed=True),
             _attr("has_dynamic_doors", f.BOOL, "false", fixed=True),
             _attr("has_lights", f.BOOL, "true", fixed=True),
             _attr("sticky_control", f.BOOL, "true", "true", "false"),
             _attr("terramechanics", f.BOOL, "false", "true", "false"))
    return Blueprint(name, attrs, kind, tag)


CAMERA_STREAMS = {
    "sensor.camera.rgb": "rgb",
    "sensor.camera.semantic_segmentation": "semantic",
    "sensor.camera.depth": "depth",
    "sensor.camera.instance_segmentation": "instance",
    "sensor.camera.optical_flow": "flow",
}
# Attributes every camera has; the rgb camera's look attributes are accepted and have no effect.
_CAMERA = (("image_size_x", AttrType.INT, "800"), ("image_size_y", AttrType.INT, "600"),
           ("fov", AttrType.FLOAT, "90.0"), ("sensor_tick", AttrType.FLOAT, "0.0"),
           ("lens_circle_falloff", AttrType.FLOAT, "5.0"),
           ("lens_circle_multiplier", AttrType.FLOAT, "0.0"), ("lens_k", AttrType.FLOAT, "-1.0"),
           ("lens_kcube", AttrType.FLOAT, "0.0"), ("lens_x_size", AttrType.FLOAT, "0.08"),
           ("lens_y_size", AttrType.FLOAT, "0.08"))
_RGB_LOOK = (("gamma", AttrType.FLOAT, "2.2"), ("enable_postprocess_effects", AttrType.BOOL, "true"),
             ("motion_blur_intensity", AttrType.FLOAT, "0.45"),
             ("motion_blur_max_distortion", AttrType.FLOAT, "0.35"),
             ("motion_blur_min_object_screen_size", AttrType.FLOAT, "0.1"),
             ("bloom_intensity", AttrType.FLOAT, "0.675"), ("exposure_mode", AttrType.STRING, "histogram"),
             ("exposure_compensation", AttrType.FLOAT, "0.0"), ("exposure_min_bright", AttrType.FLOAT, "10.0"),
             ("exposure_max_bright", AttrType.FLOAT, "12.0"), ("exposure_speed_up", AttrType.FLOAT, "3.0"),
             ("exposure_speed_down", AttrType.FLOAT, "1.0"), ("calibration_constant", AttrType.FLOAT, "16.0"),
             ("focal_distance", AttrType.FLOAT, "1000.0"), ("blur_amount", AttrType.FLOAT, "1.0"),
             ("blur_radius", AttrType.FLOAT, "0.0"), ("shutter_speed", AttrType.FLOAT, "200.0"),
             ("iso", AttrType.FLOAT, "100.0"), ("fstop", AttrType.FLOAT, "1.4"),
             ("min_fstop", AttrType.FLOAT, "1.2"), ("blade_count", AttrType.INT, "5"),
             ("lens_flare_intensity", AttrType.FLOAT, "0.1"),
             ("chromatic_aberration_intensity", AttrType.FLOAT, "0.0"),
             ("chromatic_aberration_offset", AttrType.FLOAT, "0.0"),
             ("temp", AttrType.FLOAT, "6500.0"), ("tint", AttrType.FLOAT, "0.0"),
             ("slope", AttrType.FLOAT, "0.88"), ("toe", AttrType.FLOAT, "0.55"),
             ("shoulder", AttrType.FLOAT, "0.26"), ("black_clip", AttrType.FLOAT, "0.0"),
             ("white_clip", AttrType.FLOAT, "0.04"))


def _camera(name: str) -> Blueprint:
    look = _RGB_LOOK if name == "sensor.camera.rgb" else ()
    attrs = tuple(_attr(a, t, v) for a, t, v in _CAMERA + look)
    return Blueprint(name, (_attr("role_name", AttrType.STRING, "front"), *attrs),
                     CAMERA_STREAMS[name])


def _event_sensor(name: str, kind: str) -> Blueprint:
    return Blueprint(name, (_attr("role_name", AttrType.STRING, kind),), kind)


def _library() -> tuple[Blueprint, ...]:
    tags = {"vehicle.car": Tag.CAR, "vehicle.van": Tag.TRUCK, "vehicle.bus": Tag.BUS}
    out = [_vehicle(f"vehicle.embedded.{kind.split('.')[1]}", kind, kind.split(".")[1], int(tags[kind]))
           for kind, *_ in VEHICLE_TYPES]
    out += [_vehicle(alias, "vehicle.car", "car", int(Tag.CAR))
            for alias in ("vehicle.tesla.model3", "vehicle.lincoln.mkz_2020", "vehicle.audi.a2")]
    out += [_camera(name) for name in CAMERA_STREAMS]
    out += [_event_sensor("sensor.other.collision", "collision"),
            _event_sensor("sensor.other.lane_invasion", "lane_invasion")]
    return tuple(out)


LIBRARY = _library()
BY_ID = {bp.id: bp for bp in LIBRARY}
PACKED = [bp.pack(uid) for uid, bp in enumerate(LIBRARY)]
NPC_TYPE = {kind: f"vehicle.embedded.{kind.split('.')[1]}" for kind, *_ in VEHICLE_TYPES}


def resolve(d: Description) -> tuple[Blueprint, dict[str, str]]:
    """The blueprint a description names and its attribute values (defaults filled in, each value
    checked against the attribute's type)."""
    bp = BY_ID.get(d.id)
    if bp is None or not 0 <= d.uid < len(LIBRARY) or LIBRARY[d.uid].id != d.id:
        raise BadArgument(f"unknown blueprint '{d.id}' (uid {d.uid})")
    known = {a.id: a for a in bp.attributes}
    values = {a.id: a.value for a in bp.attributes}
    for name, value in d.attributes.items():
        attr = known.get(name)
        if attr is None:
            raise BadArgument(f"blueprint '{bp.id}' has no attribute '{name}'")
        _check(attr, value)
        values[name] = value
    return bp, values


def _check(attr: Attribute, value: str) -> None:
    try:
        if attr.type == AttrType.BOOL and value.lower() not in ("true", "false"):
            raise ValueError
        if attr.type == AttrType.INT:
            int(value)
        if attr.type == AttrType.FLOAT and not abs(float(value)) < 1e30:
            raise ValueError
        if attr.type == AttrType.RGB:
            rgb = [int(c) for c in value.split(",")]
            if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
                raise ValueError
    except ValueError:
        raise BadArgument(f"attribute '{attr.id}': '{value[:40]}' is not a valid "
                          f"{attr.type.name.lower()}") from None
