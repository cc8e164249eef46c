"""A planned route for the ego: waypoints with lane and turn information."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np


class RoadOption(str, Enum):
    """CARLA's RoadOption vocabulary (agents.navigation.local_planner)."""

    LANEFOLLOW = "lanefollow"
    STRAIGHT = "straight"
    LEFT = "left"
    RIGHT = "right"
    CHANGELANELEFT = "changelaneleft"
    CHANGELANERIGHT = "changelaneright"


@dataclass(frozen=True)
class Waypoint:
    x: float
    y: float
    yaw: float  # degrees, CARLA convention
    s: float  # metres along the route
    road_id: int
    lane_id: int
    segment: int  # lane segment id in the embedded town (-1 elsewhere)
    junction_id: int = -1
    option: RoadOption = RoadOption.LANEFOLLOW
    signal_id: int | None = None  # a traffic light whose stop line is at this waypoint
    speed_limit: float = 30.0 / 3.6


@dataclass
class Route:
    waypoints: list[Waypoint]

    def __post_init__(self) -> None:
        self.xy = np.array([(w.x, w.y) for w in self.waypoints], np.float64).reshape(-1, 2)
        self.s = np.array([w.s for w in self.waypoints], np.float64)

    @property
    def length(self) -> float:
        return float(self.s[-1]) if len(self.s) else 0.0

    def project(self, x: float, y: float, hint: float | None = None, window: float = 30.0) -> float:
        """Metres along the route of the point closest to (x, y).

        With `hint` (the previous progress), only the route within `window` metres of it is
        searched, so that a route that crosses itself cannot make progress jump.
        """
        if len(self.xy) < 2:
            return 0.0
        a, b = self.xy[:-1], self.xy[1:]
        lo, hi = 0, len(a)
        if hint is not None:
            lo = max(0, int(np.searchsorted(self.s, hint - window)) - 1)
            hi = min(len(a), int(np.searchsorted(self.s, hint + window)) + 1)
        a, b = a[lo:hi], b[lo:hi]
        ab = b - a
        t = np.clip(np.einsum("ij,ij->i", np.array([x, y]) - a, ab)
                    / np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-12), 0.0, 1.0)
        closest = a + t[:, None] * ab
        k = int(np.argmin(np.sum((closest - (x, y)) ** 2, axis=1)))
        seg = np.linalg.norm(ab[k])
        return float(self.s[lo + k] + t[k] * seg)

    def point_at(self, s: float) -> tuple[float, float, float]:
        """World x, y and heading (radians) at `s` metres along the route."""
        s = float(np.clip(s, 0.0, self.length))
        k = int(np.clip(np.searchsorted(self.s, s, side="right") - 1, 0, len(self.s) - 2))
        ds = max(self.s[k + 1] - self.s[k], 1e-9)
        t = (s - self.s[k]) / ds
        p = self.xy[k] + t * (self.xy[k + 1] - self.xy[k])
        d = self.xy[k + 1] - self.xy[k]
        return float(p[0]), float(p[1]), float(np.arctan2(d[1], d[0]))

    def index_at(self, s: float) -> int:
        return int(np.clip(np.searchsorted(self.s, s, side="right") - 1, 0, len(self.s) - 1))

    def command_at(self, s: float, lookahead: float = 10.0) -> RoadOption:
        """The navigation command at `s` metres along the route: the first turn or lane change
        within `lookahead` metres (CARLA's RoadOption), else LANEFOLLOW."""
        i = self.index_at(s)
        j = int(np.searchsorted(self.s, s + lookahead, side="right"))
        for w in self.waypoints[i:max(j, i + 1)]:
            if w.option != RoadOption.LANEFOLLOW:
                return w.option
        return RoadOption.LANEFOLLOW
