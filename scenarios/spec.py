"""Scenario specs: typed, validated YAML describing a world, its traffic, the ego and its cameras."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, field_validator

from ..configs import Strict, read_yaml_mapping, validate
from ..errors import DrivesimError
from ..types import STREAMS, CameraSpec, Transform

BUILTIN_DIR = Path(__file__).parent / "builtin"


class MountSpec(Strict):
    x: float = 1.5
    y: float = 0.0
    z: float = 1.7
    pitch: float = 0.0
    yaw: float = 0.0
    roll: float = 0.0


class CameraConfig(Strict):
    name: str = "front"
    width: int = Field(512, ge=16, le=8192)
    height: int = Field(256, ge=16, le=8192)
    fov: float = Field(90.0, ge=1.0, le=170.0)
    mount: MountSpec = MountSpec()
    streams: tuple[Literal["rgb", "semantic", "depth", "instance", "flow"], ...] = (
        "rgb", "semantic", "depth",
    )

    def to_spec(self, width: int | None = None, height: int | None = None) -> CameraSpec:
        m = self.mount
        return CameraSpec(
            name=self.name, width=width or self.width, height=height or self.height,
            fov=self.fov, mount=Transform(m.x, m.y, m.z, m.pitch, m.yaw, m.roll),
            streams=tuple(s for s in STREAMS if s in self.streams),
        )


class TownConfig(Strict):
    seed: int | None = None  # None: the run's seed
    blocks: tuple[int, int] = (3, 3)

    @field_validator("blocks")
    @classmethod
    def _blocks(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not (1 <= v[0] <= 8 and 1 <= v[1] <= 8):
            raise ValueError("blocks must be between 1 and 8 in each direction")
        return v


class TrafficConfig(Strict):
    vehicles: int = Field(20, ge=0, le=200)  # moving NPC vehicles
    parked: int = Field(30, ge=0, le=500)
    pedestrians: int = Field(40, ge=0, le=500)
    jaywalkers: float = Field(0.0, ge=0.0, le=1.0)  # share of pedestrians that cross roads


class EgoConfig(Strict):
    route_length: float = Field(300.0, gt=10.0, le=5000.0)  # metres of planned route
    target_speed: float = Field(30.0, gt=0.0, le=130.0)  # km/h, the autopilot's cruise speed


class Scenario(Strict):
    name: str = "custom"
    description: str = ""
    town: TownConfig = TownConfig()
    weather: str = "clear"
    style: str = "flat"
    fps: float = Field(20.0, gt=0.0, le=1000.0)  # ticks per simulated second (fixed delta 1/fps)
    frames: int = Field(1200, ge=1)  # default episode length when --frames is not given
    ego: EgoConfig = EgoConfig()
    traffic: TrafficConfig = TrafficConfig()
    cameras: tuple[CameraConfig, ...] = (CameraConfig(),)

    @field_validator("cameras")
    @classmethod
    def _unique_names(cls, v: tuple[CameraConfig, ...]) -> tuple[CameraConfig, ...]:
        names = [c.name for c in v]
        if len(set(names)) != len(names):
            raise ValueError(f"camera names must be unique, got {names}")
        return v

    def camera_specs(self, width: int | None = None, height: int | None = None) -> list[CameraSpec]:
        return [c.to_spec(width, height) for c in self.cameras]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A built-in scenario by name, or a YAML file. Errors are one line naming the problem."""
    text_source = str(name_or_path)
    path = Path(text_source)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise DrivesimError(f"scenario file not found: {path}; give an existing YAML file "
                                f"or a built-in name ({', '.join(builtin_names())})")
    else:
        path = BUILTIN_DIR / f"{text_source}.yaml"
        if not path.is_file():
            raise DrivesimError(f"unknown scenario '{text_source}'; built-in scenarios: "
                                f"{', '.join(builtin_names())} (or pass a YAML file)")
    data = read_yaml_mapping(path, "scenario")
    data.setdefault("name", path.stem)
    return parse_scenario(data, source=str(path))


def parse_scenario(data: dict, source: str = "scenario") -> Scenario:
    return validate(Scenario, data, source)
