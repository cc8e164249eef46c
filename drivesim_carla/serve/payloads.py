"""Binary payloads of CARLA 0.9.16's streams: sensor header, camera images, episode state.

Every stream message is `SensorHeader` (48 bytes: sensor type u64, frame u64, timestamp f64,
sensor transform 6 x f32) followed by the serializer's data, little-endian, as in the wheel:
- cameras: `ImageHeader` (width u32, height u32, fov f32), then BGRA8 pixels; semantic tags in
  red; depth as 24 bits in R, G, B of (depth / 1000) * (2**24 - 1); instance: tag in red, object
  id in green (low byte) and blue (high byte); optical flow: two float32 per pixel, in
  normalised device units (x right, y up; the image spans 2 units);
- collision: msgpack of [self actor, other actor, normal impulse];
- episode state: a 36-byte header, then one packed 119-byte `ActorDynamicState` per actor.
Encoders are vectorised numpy and return buffers that go to the socket without another copy.
"""

from __future__ import annotations

import struct

import numpy as np

from ..types import CameraData, Transform

# The sensor's index in the wheel's serializer list (its `sensor_type`).
SENSOR_TYPE = {"collision": 0, "depth": 1, "lane_invasion": 6, "flow": 8, "rgb": 13,
               "semantic": 14, "instance": 15, "episode": 17}
HEADER = struct.Struct("<QQd6f")
IMAGE_HEADER = struct.Struct("<IIf")
EPISODE_HEADER = struct.Struct("<Qdf3iI")
DEPTH_FAR = 1000.0
_ALPHA = np.uint32(0xFF000000)

VEHICLE_DATA = np.dtype([
    ("throttle", "<f4"), ("steer", "<f4"), ("brake", "<f4"), ("hand_brake", "u1"),
    ("reverse", "u1"), ("manual_gear_shift", "u1"), ("gear", "<i4"), ("speed_limit", "<f4"),
    ("traffic_light_state", "u1"), ("has_traffic_light", "u1"), ("traffic_light_id", "<u4"),
    ("failure_state", "u1"), ("_pad", "V24")])
TRAFFIC_LIGHT_DATA = np.dtype([
    ("sign_id", "S32"), ("green_time", "<f4"), ("yellow_time", "<f4"), ("red_time", "<f4"),
    ("elapsed_time", "<f4"), ("pole_index", "<u4"), ("time_is_frozen", "u1"), ("state", "u1")])
ACTOR_STATE = np.dtype([
    ("id", "<u4"), ("actor_state", "u1"), ("location", "<f4", 3), ("rotation", "<f4", 3),
    ("velocity", "<f4", 3), ("angular_velocity", "<f4", 3), ("acceleration", "<f4", 3),
    ("data", "V54")])
assert VEHICLE_DATA.itemsize == TRAFFIC_LIGHT_DATA.itemsize == 54
assert ACTOR_STATE.itemsize == 119 and HEADER.size == 48 and EPISODE_HEADER.size == 36


def header(kind: str, frame: int, timestamp: float, pose: Transform) -> bytes:
    return HEADER.pack(SENSOR_TYPE[kind], frame, timestamp, pose.x, pose.y, pose.z, pose.pitch,
                       pose.yaw, pose.roll)


def camera(stream: str, data: CameraData) -> tuple[bytes, memoryview]:
    """The image header and pixel buffer of one camera stream."""
    spec = data.spec
    head = IMAGE_HEADER.pack(spec.width, spec.height, spec.fov)
    return head, memoryview(ENCODERS[stream](data)).cast("B")


def bgra_rgb(data: CameraData) -> np.ndarray:
    rgb = data.rgb
    out = np.empty(rgb.shape[:2] + (4,), np.uint8)
    out[..., 0] = rgb[..., 2]
    out[..., 1] = rgb[..., 1]
    out[..., 2] = rgb[..., 0]
    out[..., 3] = 255
    return out


def bgra_semantic(data: CameraData) -> np.ndarray:
    return (data.semantic.astype(np.uint32) << 16) | _ALPHA


def bgra_depth(data: CameraData) -> np.ndarray:
    """24-bit depth code with its low byte in red, its high byte in blue."""
    scale = np.float32((2**24 - 1) / DEPTH_FAR)
    code = np.rint(np.clip(data.depth, 0.0, DEPTH_FAR) * scale).astype(np.uint32)
    return ((code & 0xFF) << 16) | (code & 0xFF00) | (code >> 16) | _ALPHA


def bgra_instance(data: CameraData) -> np.ndarray:
    inst = data.instance.astype(np.uint32)
    return ((data.semantic.astype(np.uint32) << 16) | ((inst & 0xFF) << 8) | ((inst >> 8) & 0xFF)
            | _ALPHA)


def flow_ndc(data: CameraData) -> np.ndarray:
    """Pixels (du, dv) with v down -> normalised device units (x right, y up)."""
    spec = data.spec
    scale = np.array([2.0 / spec.width, -2.0 / spec.height], np.float32)
    return np.ascontiguousarray(data.flow * scale, np.float32)


ENCODERS = {"rgb": bgra_rgb, "semantic": bgra_semantic, "depth": bgra_depth,
            "instance": bgra_instance, "flow": flow_ndc}


def episode_header(episode: int, wall_time: float, delta: float, map_changed: bool) -> bytes:
    """Episode id, wall-clock time, delta seconds, map origin (0), simulation state (bit 0: the
    map changed)."""
    return EPISODE_HEADER.pack(episode, wall_time, delta, 0, 0, 0, int(map_changed))
