"""A CARLA server as a world: `CarlaWorld` (`backend`), routes planned on the client's own map
(`route`) and sensor decoding (`decode`). The `carla` module is imported lazily, in `backend` only."""

from .backend import CarlaWorld

__all__ = ["CarlaWorld"]
