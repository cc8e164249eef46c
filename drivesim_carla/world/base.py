"""The `World` interface every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

from ..route import Route
from ..types import CameraSpec, Control, Frame


class World(ABC):
    """A simulator stepped in synchronous mode at a fixed delta.

    `reset` spawns the ego and plans its route; each `tick(control)` applies the control for one
    fixed step and returns the new frame. Use as a context manager so that `close` always runs.
    """

    name: str = "world"
    map_name: str = ""
    fps: float = 20.0
    cameras: list[CameraSpec]
    route: Route

    @abstractmethod
    def reset(self, seed: int | None = None) -> Frame: ...

    @abstractmethod
    def tick(self, control: Control) -> Frame: ...

    def close(self) -> None:
        """Release the simulator (restore settings, destroy actors)."""

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
