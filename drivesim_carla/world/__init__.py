"""World backends, as a registry: `embedded` (built in) and `carla` (a CARLA server).

A backend is a class taking `(scenario, seed, *, cameras, style, weather, **endpoint)`; a new one
joins by adding its `module:Class` to `WORLDS`. `make_world("name:ARG", ...)` passes `ARG` (e.g. a
model directory) to backends that take one as `source`.
"""

from __future__ import annotations

import inspect
from importlib import import_module

from ..errors import DrivesimError
from ..scenarios import Scenario
from ..types import CameraSpec
from .base import World

# name -> (module:Class, takes the server endpoint)
WORLDS: dict[str, tuple[str, bool]] = {
    "embedded": ("drivesim_carla.world.embedded.backend:EmbeddedWorld", False),
    "carla": ("drivesim_carla.world.carla.backend:CarlaWorld", True),  # imports `carla` lazily
}


def make_world(name: str, scenario: Scenario, seed: int = 0, *,
               cameras: list[CameraSpec] | None = None, style: str | None = None,
               weather: str | None = None, host: str = "127.0.0.1", port: int = 2000,
               timeout: float = 10.0, carla_map: str | None = None) -> World:
    """Build a world backend by registry name.

    `host`, `port`, `timeout` (seconds) and `carla_map` (a map to load, None keeps the current
    one) only concern backends on a server (`carla`).
    """
    key, _, source = name.partition(":")
    if key not in WORLDS:
        raise DrivesimError(f"unknown world '{name}'; valid: {', '.join(WORLDS)}")
    path, served = WORLDS[key]
    module, _, attr = path.partition(":")
    cls = getattr(import_module(module), attr)
    kwargs: dict = {"cameras": cameras, "style": style, "weather": weather}
    if served:
        kwargs.update(host=host, port=port, timeout=timeout, carla_map=carla_map)
    if source:
        if "source" not in inspect.signature(cls).parameters:
            raise DrivesimError(f"world '{key}' takes no ':{source}' argument; write --world {key}")
        kwargs["source"] = source
    return cls(scenario, seed, **kwargs)


__all__ = ["WORLDS", "World", "make_world"]
