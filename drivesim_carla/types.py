"""The data model that flows around the closed loop.

Coordinates follow CARLA: metres, a left-handed world with x forward, y right, z up; angles in
degrees (pitch up, yaw from x towards y, roll). A camera sees along its own +x, with +y to the
right of the image and +z up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

STREAMS = ("rgb", "semantic", "depth", "instance", "flow")
Stream = Literal["rgb", "semantic", "depth", "instance", "flow"]


@dataclass(frozen=True)
class Transform:
    """A CARLA-style pose: location in metres, rotation in degrees."""

    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    pitch: float = 0.0
    yaw: float = 0.0
    roll: float = 0.0

    def matrix(self) -> np.ndarray:
        """4x4 local -> world matrix (CARLA's rotation order: yaw, then pitch, then roll)."""
        cy, sy = math.cos(math.radians(self.yaw)), math.sin(math.radians(self.yaw))
        cp, sp = math.cos(math.radians(self.pitch)), math.sin(math.radians(self.pitch))
        cr, sr = math.cos(math.radians(self.roll)), math.sin(math.radians(self.roll))
        m = np.eye(4)
        m[:3, 0] = (cp * cy, cp * sy, sp)
        m[:3, 1] = (cy * sp * sr - sy * cr, sy * sp * sr + cy * cr, -cp * sr)
        m[:3, 2] = (-cy * sp * cr - sy * sr, -sy * sp * cr + cy * sr, cp * cr)
        m[:3, 3] = (self.x, self.y, self.z)
        return m

    def compose(self, child: Transform) -> Transform:
        """The world pose of `child`, given relative to this pose (e.g. a camera mount)."""
        return Transform.from_matrix(self.matrix() @ child.matrix())

    @staticmethod
    def from_matrix(m: np.ndarray) -> Transform:
        pitch = math.degrees(math.asin(max(-1.0, min(1.0, m[2, 0]))))
        yaw = math.degrees(math.atan2(m[1, 0], m[0, 0]))
        roll = math.degrees(math.atan2(-m[2, 1], m[2, 2]))
        return Transform(float(m[0, 3]), float(m[1, 3]), float(m[2, 3]), pitch, yaw, roll)

    def as_array(self) -> np.ndarray:
        """(6,) = x, y, z, pitch, yaw, roll: the layout of the recorders' transform tables."""
        return np.array([self.x, self.y, self.z, self.pitch, self.yaw, self.roll], np.float64)


@dataclass(frozen=True)
class Control:
    """What an agent applies to the ego vehicle, as `carla.VehicleControl`."""

    throttle: float = 0.0
    steer: float = 0.0
    brake: float = 0.0
    hand_brake: bool = False
    reverse: bool = False

    def clipped(self) -> Control:
        return replace(
            self,
            throttle=float(np.clip(self.throttle, 0.0, 1.0)),
            steer=float(np.clip(self.steer, -1.0, 1.0)),
            brake=float(np.clip(self.brake, 0.0, 1.0)),
        )

    def as_array(self) -> np.ndarray:
        """(3,) = throttle, steer, brake."""
        return np.array([self.throttle, self.steer, self.brake], np.float32)


@dataclass(frozen=True)
class CameraSpec:
    """A camera mounted on the ego vehicle."""

    name: str = "front"
    width: int = 512
    height: int = 256
    fov: float = 90.0  # horizontal, degrees
    mount: Transform = Transform(x=1.5, z=1.6)  # relative to the ego's origin
    streams: tuple[str, ...] = ("rgb", "semantic", "depth")

    def __post_init__(self) -> None:
        from .errors import DrivesimError

        if not (16 <= self.width <= 8192 and 16 <= self.height <= 8192):
            raise DrivesimError(
                f"camera '{self.name}': invalid size {self.width}x{self.height}; "
                "width and height must be between 16 and 8192 pixels"
            )
        if not 1.0 <= self.fov <= 170.0:
            raise DrivesimError(f"camera '{self.name}': invalid fov {self.fov}; use 1..170 degrees")
        unknown = [s for s in self.streams if s not in STREAMS]
        if unknown:
            raise DrivesimError(
                f"camera '{self.name}': unknown stream(s) {unknown}; valid: {', '.join(STREAMS)}"
            )

    @property
    def focal(self) -> float:
        """Focal length in pixels (CARLA's pinhole: f = w / (2 tan(fov/2)))."""
        return self.width / (2.0 * math.tan(math.radians(self.fov) / 2.0))

    def intrinsics(self) -> np.ndarray:
        """3x3 K in the OpenCV convention (u right, v down)."""
        f = self.focal
        return np.array([[f, 0, self.width / 2.0], [0, f, self.height / 2.0], [0, 0, 1.0]])


@dataclass
class CameraData:
    """One camera's images for one frame. Arrays are numpy, (h w [c])."""

    spec: CameraSpec
    transform: Transform  # world pose of the camera at this frame
    rgb: np.ndarray | None = None  # h w 3 uint8
    semantic: np.ndarray | None = None  # h w uint8, CARLA tags
    depth: np.ndarray | None = None  # h w float32, metres along the optical axis
    instance: np.ndarray | None = None  # h w int32, 0 = no object
    flow: np.ndarray | None = None  # h w 2 float32 pixels: (du, dv) that moved here since the last frame

    @property
    def intrinsics(self) -> np.ndarray:
        return self.spec.intrinsics()

    @property
    def extrinsics(self) -> np.ndarray:
        """4x4 ego -> camera-local matrix (inverse of the mount)."""
        return np.linalg.inv(self.spec.mount.matrix())


@dataclass(frozen=True)
class Event:
    """Something that happened to the ego during the last tick."""

    kind: Literal["collision", "lane_invasion", "off_road"]
    frame: int
    other_id: int = 0  # actor or object id (collisions)
    other_type: str = ""  # e.g. "vehicle", "pedestrian", "static.pole"; marking type for lanes
    impulse: float = 0.0  # N*s, collisions only
    location: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class ActorState:
    """Another actor, as ground truth (what a privileged agent or metric may use)."""

    id: int
    kind: Literal["vehicle", "pedestrian"]
    transform: Transform
    velocity: tuple[float, float, float]
    extent: tuple[float, float, float]  # half sizes along the actor's x, y, z


@dataclass(frozen=True)
class TrafficLightState:
    id: int
    state: Literal["red", "yellow", "green", "off"]
    stop_line: tuple[float, float]  # world x, y of the stop line's centre


@dataclass(frozen=True)
class EgoState:
    transform: Transform
    velocity: tuple[float, float, float]  # m/s, world frame
    speed: float  # m/s
    control: Control  # the control applied in the tick that produced this frame
    route_progress: float = 0.0  # metres along the planned route
    route_completion: float = 0.0  # 0..1
    extent: tuple[float, float, float] = (2.35, 1.0, 0.8)


@dataclass
class Frame:
    """Everything a world reports for one tick."""

    frame: int
    time: float  # simulated seconds since reset
    ego: EgoState
    cameras: dict[str, CameraData]
    events: list[Event] = field(default_factory=list)
    actors: list[ActorState] = field(default_factory=list)
    traffic_lights: dict[int, TrafficLightState] = field(default_factory=dict)

    @property
    def camera(self) -> CameraData:
        """The first (primary) camera."""
        return next(iter(self.cameras.values()))
