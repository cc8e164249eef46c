"""World backends: `embedded` (built in) and `carla` (a CARLA server)."""

from __future__ import annotations

from ..errors import DrivesimError
from ..scenarios import Scenario
from ..types import CameraSpec
from .base import World

WORLDS = ("embedded", "carla")


def make_world(name: str, scenario: Scenario, seed: int = 0, *,
               cameras: list[CameraSpec] | None = None, style: str | None = None,
               weather: str | None = None, host: str = "127.0.0.1", port: int = 2000,
               timeout: float = 10.0, carla_map: str | None = None) -> World:
    """Build a world backend by name.

    `host`, `port`, `timeout` (seconds) and `carla_map` (a map to load, None keeps the current
    one) only concern the `carla` backend.
    """
    if name == "embedded":
        from .embedded import EmbeddedWorld

        return EmbeddedWorld(scenario, seed, cameras=cameras, style=style, weather=weather)
    if name == "carla":
        from .carla_world import CarlaWorld  # imports `carla` lazily, only for this backend

        return CarlaWorld(scenario, seed, cameras=cameras, style=style, weather=weather, host=host,
                          port=port, timeout=timeout, carla_map=carla_map)
    raise DrivesimError(f"unknown world '{name}'; valid: {', '.join(WORLDS)}")


__all__ = ["WORLDS", "World", "make_world"]
