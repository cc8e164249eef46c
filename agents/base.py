"""The agent interface: `act(observation) -> Control`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from ..route import Route
from ..types import Control, Frame


@dataclass
class Observation:
    frame: Frame  # the world's frame (ground truth; privileged agents may use it)
    image: np.ndarray  # h w 3 uint8: what the agent sees (the synthesizer's output)
    route: Route


class Agent(ABC):
    """A driving agent. Subclasses set `name` and implement `act`."""

    name: str = "agent"

    def reset(self, route: Route, seed: int | None = None) -> None:
        """Called at the start of every episode."""

    @abstractmethod
    def act(self, obs: Observation) -> Control: ...

    def close(self) -> None:
        """Release resources (windows, models)."""
