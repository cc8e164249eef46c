"""Driving metrics as a tap: distance, route completion, infractions."""

from __future__ import annotations

import math

from .taps import RunInfo, Step


class Metrics:
    """Accumulates what the run summary reports."""

    def __init__(self) -> None:
        self.info: RunInfo | None = None
        self.frames = 0
        self.distance = 0.0
        self.sim_seconds = 0.0
        self.route_completion = 0.0
        self.events = {"collision": 0, "lane_invasion": 0, "off_road": 0}
        self.collided_with: list[str] = []
        self.synth_ms = 0.0
        self._last: tuple[float, float] | None = None

    def on_reset(self, info: RunInfo) -> None:
        self.info = info

    def on_step(self, step: Step) -> None:
        f = step.frame
        pos = (f.ego.transform.x, f.ego.transform.y)
        if self._last is not None:
            self.distance += math.hypot(pos[0] - self._last[0], pos[1] - self._last[1])
        self._last = pos
        self.frames += 1
        self.sim_seconds = f.time
        self.route_completion = f.ego.route_completion
        self.synth_ms += step.synth_ms
        for e in f.events:
            self.events[e.kind] = self.events.get(e.kind, 0) + 1
            if e.kind == "collision":
                self.collided_with.append(e.other_type)

    def on_close(self) -> None:
        pass

    def summary(self) -> dict:
        info = self.info
        return {
            "frames": self.frames,
            "sim_seconds": round(self.sim_seconds, 6),
            "distance_m": round(self.distance, 4),
            "route_completion": round(self.route_completion, 6),
            "route_length_m": round(info.route.length, 3) if info else 0.0,
            "collisions": self.events["collision"],
            "collided_with": self.collided_with,
            "lane_invasions": self.events["lane_invasion"],
            "off_road": self.events["off_road"],
            "world": info.world if info else "",
            "map": info.map_name if info else "",
            "agent": info.agent if info else "",
            "synth": info.synth if info else "",
            "seed": info.seed if info else None,
            "style": info.style if info else "",
            "weather": info.weather if info else "",
            "synth_ms_mean": round(self.synth_ms / max(self.frames, 1), 3),
        }
